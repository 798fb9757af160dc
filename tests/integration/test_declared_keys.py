"""Every key a Lua script touches is declared in the KEYS of its call (the Redis Cluster contract).

Redis documents that a script must receive every key it accesses in KEYS: a cluster client routes a
call by its declared keys, and Redis itself only checks their slots. Checked on a real redis-server by
what it ran: a MONITOR connection sees each EVALSHA with its KEYS, then (Redis 7.0: after it) the
commands the script ran, marked ``[0 lua]``; ``COMMAND GETKEYS`` on a second connection names the keys
of each of those commands (no per-command parsing here). The workloads go through the real Store.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import orjson
import pytest
import redis

from monitor.state import JOIN_PERIOD_S, Store
from monitor.worker.outcomes import OutcomeProcessor, outcome_counters
from monitor.worker.pipeline import BatchProcessor, RawMessage

pytestmark = pytest.mark.integration

SCRIPT_CALLS = {b"evalsha", b"eval", b"evalsha_ro", b"eval_ro"}
ARGUMENT = re.compile(rb'"((?:[^"\\]|\\.)*)"')
ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b'"': b'"', b"\\": b"\\"}


def unescape(text: bytes) -> bytes:
    r"""One MONITOR argument as Redis quoted it (sdscatrepr).

    >>> unescape(rb'a\"b\\c\x00\n')
    b'a"b\\c\x00\n'
    """
    out, i = bytearray(), 0
    while i < len(text):
        if text[i:i + 1] == b"\\":
            nxt = text[i + 1:i + 2]
            if nxt == b"x":
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            out += ESCAPES.get(nxt, nxt)
            i += 2
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def parse_line(line: bytes) -> tuple[bool, list[bytes]]:
    """(ran by a script, the command's arguments) of one MONITOR line."""
    head, _, rest = line.partition(b"] ")
    return head.endswith(b" lua"), [unescape(a) for a in ARGUMENT.findall(rest)]


def command_keys(client: redis.Redis, args: list[bytes]) -> list[bytes]:
    """The keys of one command by COMMAND GETKEYS; a command without key positions (TIME) has none."""
    try:
        return list(client.execute_command("COMMAND", "GETKEYS", *args))
    except redis.ResponseError:
        info = client.execute_command("COMMAND", "INFO", args[0])
        first_key = info[0][3] if info and info[0] else None
        if first_key == 0:
            return []
        raise


def script_calls(lines: list[bytes]) -> list[tuple[list[bytes], list[list[bytes]]]]:
    """(declared KEYS, commands it ran) of each script call, in order. Redis 7.0.15 writes the EVALSHA
    line before the lines of the commands its script runs (checked: the inner lines follow it), and the
    calls are made one at a time, so each ``lua`` line belongs to the latest script call before it."""
    calls: list[tuple[list[bytes], list[list[bytes]]]] = []
    for line in lines:
        by_script, args = parse_line(line)
        if by_script:
            assert calls, f"a script's command before any script call: {line!r}"
            calls[-1][1].append(args)
        elif args and args[0].lower() in SCRIPT_CALLS:
            numkeys = int(args[2])
            calls.append((args[3:3 + numkeys], []))
    return calls


def undeclared_keys(lines: list[bytes], client: redis.Redis) -> list[tuple[bytes, bytes]]:
    """(command, key) of every key a script touched without declaring it in its call's KEYS."""
    missing = []
    for declared, commands in script_calls(lines):
        allowed = set(declared)
        for args in commands:
            missing += [(args[0], key) for key in command_keys(client, args) if key not in allowed]
    return missing


class Monitor:
    """A MONITOR connection: every command Redis runs from now on, read back as raw lines."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url)
        self.connection = self.client.connection_pool.get_connection()
        self.connection.send_command("MONITOR")
        assert self.connection.read_response() in (b"OK", "OK")
        self.mark = 0

    def lines(self) -> list[bytes]:
        """The lines up to now: a marker command is sent, and lines read until it shows."""
        self.mark += 1
        marker = f"declared-keys-marker-{self.mark}"
        self.client.echo(marker)
        out = []
        while True:
            line = self.connection.read_response()
            line = line if isinstance(line, bytes) else line.encode()
            if marker.encode() in line and b'"ECHO"' in line.upper():
                return out
            out.append(line)

    def close(self) -> None:
        self.connection.disconnect()
        self.client.close()


class DeadLetters(list):
    async def __call__(self, msg: RawMessage, reason: str) -> None:
        self.append((msg.offset, reason))


def records(prefix: str, months: tuple[str, ...], per_month: int) -> list[dict]:
    return [{"record_id": f"{prefix}-{month}-{i:04d}", "model": "m", "ref_date": f"{month}-{1 + i % 28:02d}",
             "score": round((i * 37 % 100) / 100, 4), "target": None}
            for month in months for i in range(per_month)]


def record_message(offset: int, batch: list[dict]) -> RawMessage:
    return RawMessage("records", 0, offset, orjson.dumps(batch))


def outcome_message(offset: int, batch: list[dict], target: Callable[[int], int] = lambda i: i % 2) -> RawMessage:
    return RawMessage("outcomes", 0, offset, orjson.dumps(
        [{"record_id": r["record_id"], "model": "m", "target": target(i)} for i, r in enumerate(batch)]))


def writes(client: redis.Redis, command: bytes, known: dict[bytes, bool] = {}) -> bool:  # noqa: B006 - a cache
    """Does this command write (its COMMAND INFO flags)?"""
    name = command.lower()
    if name not in known:
        info = client.execute_command("COMMAND", "INFO", name)[0]
        known[name] = b"write" in info[2]
    return known[name]


class Checks:
    """Runs workloads one at a time; per workload, the keys its script calls touched undeclared and how
    many script calls ran (a call refused by NOSCRIPT, which redis-py then loads, runs nothing)."""

    def __init__(self, monitor: Monitor, getkeys: redis.Redis):
        self.monitor, self.getkeys = monitor, getkeys
        self.undeclared: dict[str, list[tuple[bytes, bytes]]] = {}
        self.runs: dict[str, int] = {}
        self.wrote: dict[str, list[bool]] = {}  # per script call that ran: did it write anything
        self.clock_offset_learnt: float | None = None

    async def __call__(self, name: str, work: Awaitable) -> None:
        self.monitor.lines()  # drop what came before
        await work
        lines = self.monitor.lines()
        ran = [commands for _, commands in script_calls(lines) if commands]
        self.runs[name] = len(ran)
        self.wrote[name] = [any(writes(self.getkeys, args[0]) for args in commands) for commands in ran]
        assert self.runs[name], f"{name}: no script ran"
        self.undeclared[name] = undeclared_keys(lines, self.getkeys)


async def workloads(store: Store, check: Checks) -> None:
    """Every kind of script call of the Store, each checked on its own."""
    batches = BatchProcessor(store, DeadLetters(), "e1")
    outcomes = OutcomeProcessor(store, DeadLetters())
    offset = iter(range(1000))

    # Records first, unlabelled, over several months; then their outcomes (joined), then again (duplicates).
    first = records("a", ("2024-01", "2024-02", "2024-03"), 40)
    await check("records", batches.process([record_message(next(offset), first)]))
    await check("outcomes joined", outcomes.process([outcome_message(0, first)]))
    await check("duplicates", outcomes.process([outcome_message(1, first[:30])]))

    # Outcomes before their records (pending), then the records (joined by the batch), then again.
    early = records("b", ("2024-02", "2024-04"), 30)
    await check("outcomes pending", outcomes.process([outcome_message(2, early)]))
    # By another worker (its own Store: it has not learnt the pending periods yet, the script tells it).
    other = Store.connect(store.settings)
    try:
        await check("records join pending", BatchProcessor(other, DeadLetters(), "e1").process(
            [record_message(next(offset), early + records("c", ("2024-05",), 10))]))
    finally:
        await other.close()
    await check("late duplicates", outcomes.process([outcome_message(3, early[:10])]))

    # A client clock a period behind (then ahead of) Redis's: the calls still succeed, declaring Redis's period.
    skewed = records("d", ("2024-06",), 20)
    store.join_clock_offset = -JOIN_PERIOD_S
    await check("skewed pending", outcomes.process([outcome_message(4, skewed[:10])]))
    check.clock_offset_learnt = getattr(store, "join_clock_offset", None)  # asserted at the end
    store.join_clock_offset = -JOIN_PERIOD_S
    await check("skewed records", batches.process([record_message(next(offset), skewed)]))
    store.join_clock_offset = JOIN_PERIOD_S
    await check("skewed outcomes", outcomes.process([outcome_message(5, skewed)]))

    # The other scripts.
    await check("adopt epoch", store.adopt_model("m", "1", "e1", "e2"))
    await check("reset source", store.reset_source("m", "1", "records:0", 0, None, b"{}"))
    await check("transition", store.transition_alert("m", "1", "psi|month|2024-01", b"", b"{}", b"{}", 10))
    await check("lease", store.take_lease("m", "1", "w1", 1000))


def test_every_key_a_script_touches_is_declared_in_its_keys(settings):
    monitor = Monitor(settings.redis_url)
    getkeys = redis.Redis.from_url(settings.redis_url)
    getkeys.set_response_callback("COMMAND", lambda reply, **options: reply)  # raw GETKEYS / INFO replies
    store = Store.connect(settings)

    async def run():
        try:
            await workloads(store, check)
            counters = await outcome_counters(store, "m", "1")
            months = {m: await store.counts("m", "1", m) for m in ("2024-01", "2024-04", "2024-06")}
            return counters, months
        finally:
            await store.close()

    check = Checks(monitor, getkeys)
    try:
        counters, months = asyncio.run(run())
    finally:
        monitor.close()
        getkeys.close()
    undeclared = {name: f"{len(set(keys))} keys, e.g. {sorted(set(keys))[:2]}"
                  for name, keys in check.undeclared.items() if keys}
    assert not undeclared, f"keys touched by scripts without being declared in KEYS: {undeclared}"
    # One round trip where the Store knew what to declare (the common case); one more for each thing it
    # learnt: Redis's period, the live pending periods (another worker's Store), a model's months.
    runs = check.runs
    assert runs["records"] == runs["outcomes pending"] == runs["duplicates"] == runs["late duplicates"] == 1, runs
    assert runs["outcomes joined"] == runs["records join pending"] == runs["skewed pending"] == 2, runs
    assert runs["skewed outcomes"] == 3, runs  # the period, then the month 2024-06
    assert abs(check.clock_offset_learnt or 0) < 5, "the script's reply set the Store's clock right"
    # A call refused for its declaration wrote nothing (the checks come before any write).
    assert check.wrote["outcomes joined"] == check.wrote["records join pending"] == [False, True], check.wrote
    assert check.wrote["skewed pending"] == [False, True] and check.wrote["skewed outcomes"] == [False, False, True]
    # ... as does one refused for a stale offset (the other worker moved it), then for the period.
    assert check.wrote["skewed records"] == [False, False, True], check.wrote
    # The workloads did what they say (the counts are read after adopt_epoch dropped them: none left).
    assert counters["joined"] == 120 + 10 and counters["pending"] == 60 + 10
    assert counters["pending_joined"] == 60 + 10 and counters["duplicates"] == 30 + 10 + 10
    assert all(c["n"] == 0 for c in months.values())
