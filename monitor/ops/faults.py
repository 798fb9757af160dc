"""Fault runs on the real broker and real Redis: nothing lost, nothing counted twice.

``monitor faults`` (or ``python -m monitor.ops.faults``) starts its own broker and redis-server on
free loopback ports, publishes a synthetic stream (single records, JSON arrays and malformed
messages), runs ``monitor worker`` processes, injects a fault, waits for the worker to finish
and compares every month's histograms with the input, bin by bin:

- ``kills``: kill -9 the worker K times at random moments, restarting it each time;
- ``takeover``: two workers in one group, one killed for good; the other takes its partitions;
- ``redis-restart``: Redis shut down (appendonly) and restarted during the stream;
- ``redis-flush``: FLUSHALL during the stream; the workers rebuild the state from the topic;
- ``broker-restart``: the broker restarted during the stream. Tansu keeps topics in memory only,
  so this one runs on ``noida-db`` (PyPI), a Kafka-protocol broker that persists its log.

Hostile streams and failing calls (every message applied or dead-lettered, never skipped):

- ``oversized-invalid``: invalid messages of 1.2 MB among the valid ones, over what a producer
  or broker takes by default: they reach the dead-letter topic truncated, nothing behind them is lost;
- ``redis-busy``: another client runs a script of 6 s (past Redis's 5 s busy-reply-threshold) twice
  during the stream: every call of the worker is answered BUSY meanwhile, and waits;
- ``broker-lost-log``: the broker stopped and started with the worker running (Tansu, memory
  storage: every topic, record and group offset is gone, as after ``monitor infra down && up``),
  the topics created again and the second half of the stream published into the new, empty logs:
  at offsets the worker had already applied in the old ones. Every record counted (a source reset
  per partition, ``cm:worker`` ``source_resets``); the dead letters of both halves are counted;
- ``fold-exception``: Redis refuses the worker's scripts (an ACL change, ``NOPERM``) for longer than
  the worker's retries: it exits unacknowledged (status 70) and is restarted, as a supervisor would,
  until Redis takes the scripts again;
- ``cardinality-flood``: well-formed messages that would make Redis grow without bound (far months,
  new model names, new months of one model, long feature values) among the valid ones, whose own
  features carry thousands of unseen categories; the worker runs with caps of
  ``FLOOD_CAPS`` (20 models, 24 months a model): what the caps admit is applied, the rest is
  dead-lettered with the setting it broke, and the report gives Redis's memory growth.

Workers that exit are restarted (as docker-compose's ``restart: unless-stopped`` does); the report
counts the restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from monitor.connect import kafka_consumer, kafka_producer
from monitor.ops import infra
from monitor.ops.processes import start_worker, stop_process
from monitor.retry import is_transient
from monitor.settings import Settings
from monitor.state import LABELS, Store
from monitor.state.admin import busy_script, flush_all, model_master_port, refuse_scripts, shutdown_redis
from monitor.stats import ScoreHistogram
from producers.synthetic import Scenario, generate

SCENARIOS = ("kills", "takeover", "redis-restart", "redis-flush", "broker-restart", "oversized-invalid",
             "redis-busy", "fold-exception", "cardinality-flood", "broker-lost-log", "failover")
MID_STREAM = ("broker-restart", "redis-restart", "redis-flush", "redis-busy", "fold-exception", "failover")
CLUSTER_SCENARIOS = ("failover",)
"""Scenarios run on a local Redis Cluster (3 masters with a replica each, monitor.ops.redis_cluster)."""
NOT_ON_CLUSTER = ("redis-restart", "redis-busy", "fold-exception")
"""Scenarios whose fault is one redis-server's (its restart, a long script on it, its ACL): not run
with ``--redis-cluster``; every other scenario can run on the cluster."""
_CLUSTERS: dict[str, Any] = {}  # redis_url -> the LocalCluster of a running cluster scenario
"""Scenarios whose fault lands mid-stream: half the messages published before it, half after."""


@dataclass
class FaultReport:
    scenario: str
    input_records: int
    final_records: int = 0
    lost: int = 0
    double_counted: int = 0
    malformed: int = 0
    dead_lettered_distinct: int = 0
    # Bad messages whose dead-letter record the broker acknowledged, by the workers' logs: more than
    # the topic holds only if the broker lost acknowledged writes (noida-db across a restart: 2 runs in 4 under load).
    dead_letters_acked: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0
    admitted_hostile: int = 0  # well-formed hostile messages the bounds admit (applied, not dead-lettered)
    redis_growth: int | None = None  # bytes of the run's keys (MEMORY USAGE), when measured
    redis_bound: int | None = None  # what the bounds allow this run's input to take

    @property
    def exact(self) -> bool:
        return (self.lost == 0 and self.double_counted == 0 and self.final_records == self.input_records
                and self.dead_lettered_distinct == self.malformed
                and (self.redis_bound is None or (self.redis_growth or 0) <= self.redis_bound))


# ---- input ----------------------------------------------------------------------------------
def valid_records(n: int, seed: int = 11) -> list[dict]:
    months = 10
    spec = Scenario(name="faults", model="faults", months=months, monthly_volume=-(-n // months), seed=seed,
                    label_fraction=0.7)
    return list(generate(spec))[:n]


def malformed_messages(k: int, seed: int = 5) -> list[bytes]:
    """Every kind of bad input a producer can send, ``k`` in all, deterministic."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fault scenario, not security
    good = {"record_id": "x", "model": "faults", "ref_date": "2024-01-15", "score": 0.4, "target": 0}
    kinds: list[Callable[[int], bytes]] = [
        lambda i: rng.randbytes(rng.randint(1, 200)),                                    # random bytes
        lambda i: orjson.dumps({**good, "score": "high"}),                                # wrong type
        lambda i: orjson.dumps(good).replace(b'"score":0.4', b'"score":NaN'),           # NaN
        lambda i: orjson.dumps({**good, "score": rng.choice([1.5, -0.2, 1e300])}),       # out of range
        lambda i: orjson.dumps(_without(good, rng.choice(["score", "model", "ref_date", "record_id"]))),
        lambda i: orjson.dumps({**good, "target": rng.choice([2, -1, "1", 0.5])}),       # bad label
        lambda i: orjson.dumps({**good, "ref_date": "2024-02-31"}),                       # impossible date
        lambda i: orjson.dumps([good, {**good, "score": None}]),                          # one bad element
        lambda i: b"[" * 3000 + b"]" * 3000,                                              # deeply nested
        lambda i: orjson.dumps({**good, "features": {"x": {"y": [1, 2]}}}),               # nested feature
        lambda i: orjson.dumps([{**good, "model": ""}] * 2000),                           # large (~200 KB)
    ]
    return [kinds[i % len(kinds)](i) for i in range(k)]


OVERSIZED_BYTES = 1_200_000


def oversized_messages(k: int) -> list[bytes]:
    """``k`` invalid messages of 1.2 MB: over faust's producer limit (1,000,000 bytes) and Apache
    Kafka's default message.max.bytes, so they cannot be dead-lettered whole."""
    good = {"record_id": "x", "model": "faults", "ref_date": "2024-01-15", "score": 0.4, "target": 0}
    kinds = [lambda: b"{" + b"x" * (OVERSIZED_BYTES - 1),                                     # not JSON
             lambda: orjson.dumps([good] * (OVERSIZED_BYTES // 80) + [{**good, "score": 2}])]  # one bad record
    return [kinds[i % len(kinds)]() for i in range(k)]


FLOOD_CAPS = {"max_models": 20, "max_months_per_model": 24}
"""The bounds of the cardinality-flood run (small, so that a flood reaches them quickly)."""
FLOOD_MONTHS_MODEL = "faults-months"
"""A model with a loaded reference (so known from the start) whose months the flood multiplies."""


def cardinality_flood(k: int, today: dt.date) -> tuple[list[bytes], int]:
    """``k`` well-formed hostile messages of each kind, and how many of them FLOOD_CAPS admit.

    Far months (out of the event-time window), new model names, new months of FLOOD_MONTHS_MODEL
    (in the window) and long string feature values, one record each.
    """
    good = {"record_id": "x", "model": "faults", "ref_date": "2024-01-15", "score": 0.4, "target": 0}
    far = [orjson.dumps({**good, "record_id": f"far-{i}",
                         "ref_date": f"{1000 + i % 900:04d}-01-15" if i % 2 else f"{9000 + i % 999:04d}-06-15"})
           for i in range(k)]
    models = [orjson.dumps({**good, "record_id": f"mod-{i}", "model": f"flood-model-{i}"}) for i in range(k)]
    months = []
    year, month = today.year, today.month
    for i in range(k):  # back from this month: all in the window while k <= 240
        months.append(orjson.dumps({**good, "record_id": f"mon-{i}", "model": FLOOD_MONTHS_MODEL,
                                    "ref_date": f"{year:04d}-{month:02d}-01"}))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    long_values = [orjson.dumps({**good, "record_id": f"long-{i}", "features": {"purpose": "z" * (300 + i)}})
                   for i in range(k)]
    # "faults" and FLOOD_MONTHS_MODEL have a reference: the model flood gets the other places.
    admitted = min(k, FLOOD_CAPS["max_months_per_model"]) + min(k, FLOOD_CAPS["max_models"] - 2)
    return far + models + months + long_values, admitted


def with_unseen_categories(records: list[dict]) -> list[dict]:
    """Every other record with a purpose of its own (200 characters, never seen in the reference):
    still valid, still counted, and its feature hash stays bounded."""
    out = []
    for i, r in enumerate(records):
        if i % 2 == 0 and r.get("features"):
            r = {**r, "features": {**r["features"], "purpose": f"unseen-{i:07d}-" + "u" * 185}}
        out.append(r)
    return out


async def load_flood_references(settings: Settings) -> None:
    """References for the models the flood must not crowd out (as an operator loads them)."""
    from monitor.ops.reference import save_reference
    from producers.synthetic import reference_frame

    frame = reference_frame(Scenario(name="faults", model="faults"), n=5000)
    await save_reference(settings, "faults", "1", frame["score"].to_numpy(), frame["TARGET"].to_numpy(),
                         source="faults", features=frame.drop(columns=["score", "TARGET"]))
    await save_reference(settings, FLOOD_MONTHS_MODEL, "1", frame["score"].to_numpy(), source="faults")


async def redis_footprint(settings: Settings) -> tuple[int, int, int]:
    """Bytes (MEMORY USAGE) of the run's keys, months stored over all models, and the most
    unseen-category fields a feature hash holds for one feature."""
    store = Store.connect(settings)
    try:
        months = 0
        total, unseen = await store.footprint()
        for model, version in await store.models():
            months += len(await store.months(model, version))
        return total, months, unseen
    finally:
        await store.close()


def _without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


def interleave(valid: list[dict], bad: list[bytes], per_array: int = 10, seed: int = 3) -> list[bytes]:
    """Valid records as single messages and as JSON arrays, with the malformed spread among them."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fault scenario, not security
    messages, i = [], 0
    while i < len(valid):
        if rng.random() < 0.5:
            messages.append(orjson.dumps(valid[i]))
            i += 1
        else:
            messages.append(orjson.dumps(valid[i:i + per_array]))
            i += per_array
    for msg in bad:
        messages.insert(rng.randrange(len(messages) + 1), msg)
    return messages


async def publish_messages(settings: Settings, messages: list[bytes]) -> None:
    producer = kafka_producer(settings, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(settings.records_topic, value=m, key=str(i).encode())
                   for i, m in enumerate(messages)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def expected_histograms(records: list[dict], resolution: float) -> dict[tuple[str, str], ScoreHistogram]:
    by_key: dict[tuple[str, str], list[float]] = {}
    for r in records:
        label = LABELS[2] if r["target"] is None else LABELS[0] if r["target"] == 1 else LABELS[1]
        by_key.setdefault((r["ref_date"][:7], label), []).append(r["score"])
    return {k: ScoreHistogram.from_scores(np.array(v), resolution) for k, v in by_key.items()}


# ---- checking -------------------------------------------------------------------------------
async def total_records(settings: Settings) -> int:
    store = Store.connect(settings)
    try:
        months = await store.months("faults", "1")
        return sum([(await store.counts("faults", "1", m))["n"] for m in months])
    finally:
        await store.close()


async def compare(settings: Settings, expected: dict, report: FaultReport) -> None:
    store = Store.connect(settings)
    try:
        months = sorted({m for m, _ in expected})
        stored = await store.histograms("faults", "1", months)
        lost = double = final = 0
        for month in months:
            hists = stored[month]
            for label, got in zip(LABELS, (hists.pos, hists.neg, hists.unlabeled), strict=True):
                want = expected.get((month, label), ScoreHistogram(settings.resolution))
                bins = np.union1d(want.bins, got.bins)
                diff = _dense(got, bins) - _dense(want, bins)
                double += int(diff[diff > 0].sum())
                lost += int(-diff[diff < 0].sum())
                final += got.n
            counts = await store.counts("faults", "1", month)
            if counts["n"] != hists.n:  # the counters and the histograms are written together
                report.faults.append(f"counter mismatch in {month}: {counts['n']} != {hists.n}")
        report.final_records, report.lost, report.double_counted = final, lost, double
    finally:
        await store.close()


def _dense(h: ScoreHistogram, bins: np.ndarray) -> np.ndarray:
    out = np.zeros(bins.size, dtype=np.int64)
    out[np.searchsorted(bins, h.bins)] = h.counts
    return out


def acked_dead_letters(log_dir: Path, topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of every message of ``topic`` that a worker logged as dead-lettered: the
    worker logs it once the broker acknowledged the dead-letter record (monitor.worker.deadletter)."""
    line = re.compile(rf"dead-lettered {re.escape(topic)}:(\d+)@(\d+)")
    return {(int(p), int(o)) for log in log_dir.glob("worker-*.log")
            for p, o in line.findall(log.read_text(errors="replace"))}


def reason_kind(reason: str) -> str:
    """A dead-letter reason without the details that vary from message to message.

    >>> reason_kind("record 3: score: Input should be less than or equal to 1")
    'record: score: Input should be less than or equal to 1'
    >>> reason_kind("not JSON: unexpected character: line 1 column 2 (char 1)")
    'not JSON'
    >>> reason_kind("record 0: ref_date 9999-12-31 is more than 7 days after today 2026-11-30 (MONITOR_MAX_EVENT_FUTURE_DAYS)")
    'out of bounds: MONITOR_MAX_EVENT_FUTURE_DAYS'
    """
    bound = re.search(r"\((MONITOR_[A-Z_]+)\)$", reason)
    if bound:
        return f"out of bounds: {bound.group(1)}"
    head, _, rest = reason.partition(": ")
    if head.startswith("record "):
        return "record: " + rest
    return head


async def dead_letters(settings: Settings, expected: int, timeout_s: float = 60) -> dict[tuple[bytes, bytes], str]:
    """The dead-letter records found, by (partition, offset) of the original message: the kind of
    their reason (:func:`reason_kind`), marked when the record was truncated."""
    consumer = kafka_consumer(settings, settings.dead_letter_topic,
                                group_id=f"dlq-check-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
                                enable_auto_commit=False, session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
                                heartbeat_interval_ms=300, max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    seen: dict[tuple[bytes, bytes], str] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    headers = dict(m.headers)
                    if headers.get("dlq.reason"):
                        reason = reason_kind(headers["dlq.reason"].decode())
                        if headers.get("dlq.truncated") == b"true":
                            reason += " (dead-lettered truncated)"
                        seen[(headers["dlq.partition"], headers["dlq.offset"])] = reason
    finally:
        await consumer.stop()
    return seen


# ---- servers and workers ----------------------------------------------------------------------
@contextmanager
def servers(broker: str, run_dir: Path, cluster: bool = False):
    """A broker (tansu or noida) and a redis-server with appendonly, on free ports; with ``cluster``
    a local Redis Cluster of 3 masters with a replica each instead of the redis-server."""
    if cluster:
        with cluster_servers(broker, run_dir) as settings:
            yield settings
        return
    base = Settings(kafka_bootstrap=f"127.0.0.1:{infra.free_port()}",
                    redis_url=f"redis://127.0.0.1:{infra.free_port()}/0", run_dir=run_dir,
                    broker=broker, broker_session_timeout_s=6.0 if broker == "noida" else 3.0,
                    key_prefix=f"faults-{uuid.uuid4().hex[:8]}", consumer_group=f"faults-{uuid.uuid4().hex[:8]}",
                    metrics_interval_s=1.0)
    with infra.running(base):
        asyncio.run(infra.create_topics(base))
        yield base


@contextmanager
def cluster_servers(broker: str, run_dir: Path):
    """The broker and a local Redis Cluster (``redis+cluster://`` URL in the settings)."""
    from monitor.ops.redis_cluster import LocalCluster

    cluster = LocalCluster(run_dir / "redis-cluster", masters=3, replicas=1)
    try:
        url = cluster.start()
        base = Settings(kafka_bootstrap=f"127.0.0.1:{infra.free_port()}", redis_url=url, run_dir=run_dir,
                        broker=broker, key_prefix=f"faults-{uuid.uuid4().hex[:8]}",
                        consumer_group=f"faults-{uuid.uuid4().hex[:8]}", metrics_interval_s=1.0)
        broker_svc = infra.Service("broker", *infra.kafka_address(base), "MONITOR_KAFKA_BOOTSTRAP", run_dir, broker)
        broker_svc.start(timeout_s=60)
        _CLUSTERS[url] = cluster
        try:
            asyncio.run(infra.create_topics(base))
            yield base
        finally:
            _CLUSTERS.pop(url, None)
            broker_svc.stop()
    finally:
        cluster.stop()


class Workers:
    def __init__(self, settings: Settings, log_dir: Path):
        self.settings, self.log_dir = settings, log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        proc = start_worker(self.settings, self.log_dir / f"worker-{len(self.procs)}.log", loglevel="warning")
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs.remove(proc)

    def revive(self) -> int:
        """Restart the workers that exited by themselves (a supervisor's job); how many."""
        exited = [p for p in self.procs if p.poll() is not None]
        for proc in exited:
            self.procs.remove(proc)
            self.start()
        return len(exited)

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process(proc)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2,
             workers: "Workers | None" = None, report: FaultReport | None = None) -> None:
    """Poll ``predicate``; meanwhile restart the ``workers`` that exit (counted in the report)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if workers is not None:
            restarted = workers.revive()
            if report is not None:
                report.restarts += restarted
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def progress(settings: Settings) -> int:
    try:
        return asyncio.run(total_records(settings))
    except Exception as exc:  # Redis down or busy during a fault
        if not is_transient(exc):
            raise
        return -1


def wait_for_all(settings: Settings, records: int, stall_s: float = 60, timeout_s: float = 600, **supervise) -> None:
    """Wait until every record is counted, or the count has not moved for ``stall_s`` (records
    lost: the report says how many)."""
    box = {"n": -1, "moved": time.monotonic()}

    def done() -> bool:
        n = progress(settings)
        if n != box["n"]:
            box["n"], box["moved"] = n, time.monotonic()
        return n >= records or time.monotonic() - box["moved"] > stall_s

    wait_for(done, timeout_s, f"all {records} records counted", **supervise)


def wait_for_progress(settings: Settings, beyond: int, timeout_s: float = 90, **supervise) -> int:
    box = {}

    def moved() -> bool:
        box["n"] = progress(settings)
        return box["n"] > beyond

    wait_for(moved, timeout_s, f"the worker to count beyond {beyond} records", **supervise)
    return box["n"]


# ---- scenarios --------------------------------------------------------------------------------
def scenario_input(scenario: str, records: int, malformed: int) -> tuple[list[dict], list[bytes], FaultReport]:
    """The valid records, the hostile messages (malformed; oversized or a cardinality flood for those
    scenarios) and the report that expects them."""
    valid = valid_records(records)
    bad = malformed_messages(malformed)
    admitted = 0
    if scenario == "oversized-invalid":
        bad += oversized_messages(4)
    if scenario == "cardinality-flood":
        valid = with_unseen_categories(valid)
        flood, admitted = cardinality_flood(max(1, malformed // 4), dt.datetime.now(dt.timezone.utc).date())
        bad += flood
    report = FaultReport(scenario, records, malformed=len(bad) - admitted, admitted_hostile=admitted)
    if scenario == "oversized-invalid":
        report.faults.append(f"4 invalid messages of {OVERSIZED_BYTES:,} bytes among the valid ones")
    return valid, bad, report


def kill_workers(scenario: str, settings: Settings, workers: "Workers", report: FaultReport, say: Callable[[str], None],
                 rng: random.Random, records: int, kills: int) -> None:
    """Start a worker on the published stream; ``takeover``: a second one, killed for good a fifth of the
    way; ``kills``: kill -9 the current worker ``kills`` times at random moments, restarting it each time."""
    first = workers.start()
    if scenario == "takeover":
        second = workers.start()
        wait_for_progress(settings, records // 5)
        workers.kill(second)
        report.faults.append("killed one of two workers for good (kill -9)")
        say(report.faults[-1])
    elif scenario == "kills":
        current = first
        # Random moments spread over the replay: each kill once the count passes a
        # random point, and after the restarted worker has counted again.
        targets = sorted(rng.uniform(0.05, 0.9) * records for _ in range(kills))
        for k, target in enumerate(targets):
            wait_for_progress(settings, max(int(target), progress(settings)))
            workers.kill(current)
            report.faults.append(f"kill -9 #{k + 1} at {progress(settings):,} records counted")
            say(report.faults[-1])
            current = workers.start()


def run(scenario: str, records: int = 200_000, kills: int = 5, malformed: int = 10_000, seed: int = 1,
        work_dir: Path | None = None, say: Callable[[str], None] = print, cluster: bool = False) -> FaultReport:
    """Run one fault scenario end to end; ``cluster``: on a local Redis Cluster instead of one
    redis-server (always for ``failover``; not for :data:`NOT_ON_CLUSTER`)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown fault scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    cluster = cluster or scenario in CLUSTER_SCENARIOS
    if cluster and scenario in NOT_ON_CLUSTER:
        raise ValueError(f"fault scenario {scenario!r} is one redis-server's: not run on a Redis Cluster")
    rng = random.Random(seed)  # noqa: S311 - reproducible fault scenario, not security
    started = time.monotonic()
    valid, bad, report = scenario_input(scenario, records, malformed)
    messages = interleave(valid, bad)
    broker = "noida" if scenario == "broker-restart" else "tansu"
    with tempfile.TemporaryDirectory(prefix="faults-", dir=work_dir) as tmp, servers(broker, Path(tmp), cluster=cluster) as settings:
        expected = expected_histograms(valid, settings.resolution)
        if scenario == "cardinality-flood":
            settings = settings.model_copy(update=FLOOD_CAPS)
            asyncio.run(load_flood_references(settings))
            before = asyncio.run(redis_footprint(settings))[0]
        workers = Workers(settings, Path(tmp))
        supervise: dict[str, Any] = {"workers": workers, "report": report}
        try:
            if scenario == "broker-lost-log":
                found = lost_log(settings, valid, bad, workers, report, say, supervise)
            elif scenario in MID_STREAM:
                # Half the stream before the fault, half after: the fault lands mid-stream.
                half = len(messages) // 2
                asyncio.run(publish_messages(settings, messages[:half]))
                workers.start()
                wait_for_progress(settings, records // 10, **supervise)
                inject(scenario, settings, report, say)
                asyncio.run(publish_messages(settings, messages[half:]))
            else:
                asyncio.run(publish_messages(settings, messages))
                kill_workers(scenario, settings, workers, report, say, rng, records, kills)
            wait_for_all(settings, records, **supervise)
            time.sleep(2 * settings.metrics_interval_s)
            asyncio.run(compare(settings, expected, report))
            if scenario != "broker-lost-log":
                found = asyncio.run(dead_letters(settings, len(bad)))
            else:
                found.update(asyncio.run(dead_letters(settings, len(bad) - len(found))))
            report.dead_lettered_distinct = len(found)
            report.dead_letters_acked = len(acked_dead_letters(Path(tmp), settings.records_topic))
            report.dead_letter_reasons = dict(Counter(found.values()))
            if scenario == "cardinality-flood":
                measure_flood(settings, report, before, say)
        finally:
            workers.stop_all()
            if not report.exact:  # the run's directory goes: keep what explains it
                kept = Path(work_dir or tempfile.gettempdir()) / f"faults-{scenario}-logs-{uuid.uuid4().hex[:6]}"
                shutil.copytree(tmp, kept, ignore=shutil.ignore_patterns("*.aof", "*.rdb", "appendonlydir", "data*"),
                                dirs_exist_ok=True)
                say(f"not exact: worker and server logs kept in {kept}")
    report.seconds = time.monotonic() - started
    return report


def lost_log(settings: Settings, valid: list[dict], bad: list[bytes], workers: "Workers", report: FaultReport,
             say: Callable[[str], None], supervise: dict) -> dict:
    """``broker-lost-log`` up to the second half published: returns the first half's dead letters
    (their topic is lost with the broker), keyed apart from the second half's (same offsets)."""
    half, bad_half = len(valid) // 2, len(bad) // 2
    asyncio.run(publish_messages(settings, interleave(valid[:half], bad[:bad_half])))
    workers.start()
    wait_for_all(settings, half, **supervise)
    first = asyncio.run(dead_letters(settings, bad_half))
    broker = infra.services(settings)[0]
    broker.stop()
    broker.start(timeout_s=60)
    asyncio.run(infra.create_topics(settings))
    report.faults.append(f"broker stopped and started (Tansu, memory storage: every log lost) after "
                         f"{progress(settings):,} records counted; topics created again")
    say(report.faults[-1])
    asyncio.run(publish_messages(settings, interleave(valid[half:], bad[bad_half:], seed=4)))
    wait_for_all(settings, len(valid), **supervise)
    resets = asyncio.run(worker_counter(settings, "source_resets"))
    report.faults.append(f"source resets counted by the worker: {resets}")
    say(report.faults[-1])
    return {(b"old log", *key): reason for key, reason in first.items()}


async def worker_counter(settings: Settings, name: str) -> int:
    store = Store.connect(settings)
    try:
        return (await store.worker_counters()).get(name, 0)
    finally:
        await store.close()


def measure_flood(settings: Settings, report: FaultReport, before: int, say: Callable[[str], None]) -> None:
    """Redis's growth in the cardinality flood, against what the bounds allow: every month stored
    (at most max_models x max_months_per_model) at 3 histograms plus a feature hash of at most
    max_unseen_categories names of max_feature_value_chars, and the join buffer of the records."""
    after, months, unseen = asyncio.run(redis_footprint(settings))
    hist = (int(round(1 / settings.resolution)) + 1) * 8
    per_month = 3 * hist + 2 * settings.max_unseen_categories * (settings.max_feature_value_chars + 64) + 8192
    report.redis_growth = after - before
    report.redis_bound = (settings.max_models * settings.max_months_per_model * per_month
                          + 400 * report.input_records)
    report.faults.append(f"flood: {months} months stored over all models (caps {settings.max_models} models x "
                         f"{settings.max_months_per_model} months), at most {unseen} fields for one feature in a "
                         f"month's feature hash (cap {settings.max_unseen_categories} unseen names)")
    say(report.faults[-1])


def inject(scenario: str, settings: Settings, report: FaultReport, say: Callable[[str], None]) -> None:
    if scenario == "failover":
        cluster = _CLUSTERS[settings.redis_url]
        master = model_master_port(settings, "faults", "1")
        at = progress(settings)
        replica = cluster.failover(master)
        report.faults.append(f"redis cluster: master {master} (the model's slot) failed over to its replica "
                             f"{replica} (CLUSTER FAILOVER) at {at:,} records counted")
        say(report.faults[-1])
        return
    # The local servers (one redis-server: not on a cluster, whose URL names no single server).
    svcs = {svc.name: svc for svc in infra.services(settings)} if scenario in ("broker-restart", "redis-restart") else {}
    if scenario == "broker-restart":
        svcs["broker"].stop()
        time.sleep(2)
        svcs["broker"].start(timeout_s=60)
        report.faults.append("broker stopped and restarted (noida-db, persistent log)")
    elif scenario == "redis-restart":
        shutdown_redis(settings)  # appendonly: the AOF is fsynced on a clean shutdown
        svcs["redis"].pid_file.unlink(missing_ok=True)
        time.sleep(2)
        svcs["redis"].start()
        report.faults.append("redis shut down and restarted from its appendonly file")
    elif scenario == "redis-flush":
        flush_all(settings)
        report.faults.append("redis FLUSHALL: every key gone mid-stream")
    elif scenario == "redis-busy":
        for _ in range(2):
            busy_script(settings, seconds=6)
        report.faults.append("redis busy: a 6 s script of another client, twice (BUSY answered meanwhile)")
    elif scenario == "fold-exception":
        refuse_scripts(settings, seconds=12)
        report.faults.append("redis refused the worker's scripts (ACL -@scripting, NOPERM) for 12 s")
    say(report.faults[-1])


def format_report(r: FaultReport) -> str:
    verdict = "EXACT" if r.exact else "NOT EXACT"
    restarts = f"  restarts {r.restarts}" if r.restarts else ""
    if r.dead_letters_acked > r.dead_lettered_distinct:
        restarts += f"  (the broker lost {r.dead_letters_acked - r.dead_lettered_distinct} acknowledged)"
    hostile = f"  hostile admitted {r.admitted_hostile:,}" if r.admitted_hostile else ""
    memory = (f"  redis +{r.redis_growth / 1e6:.1f} MB (bound {r.redis_bound / 1e6:.0f} MB)"
              if r.redis_growth is not None and r.redis_bound is not None else "")
    return (f"{r.scenario:17} input {r.input_records:>9,}  applied {r.final_records:>9,}  lost {r.lost}  "
            f"double-counted {r.double_counted}  bad {r.malformed:,} -> dead-letter {r.dead_lettered_distinct:,}"
            f"{hostile}{memory}{restarts}  {r.seconds:6.1f} s  {verdict}")


def format_reasons(r: FaultReport) -> str:
    """The dead-letter reasons of a run, most frequent first."""
    return "\n".join(f"  {n:>7,}  {reason}" for reason, n in sorted(r.dead_letter_reasons.items(), key=lambda kv: -kv[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="monitor faults", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="kills")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--malformed", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-cluster", action="store_true",
                        help="run on a local Redis Cluster (3 masters, a replica each) instead of one redis-server; "
                             f"with --scenario all, every scenario but {', '.join(NOT_ON_CLUSTER)}")
    args = parser.parse_args(argv)
    # A terminated run stops what it started (servers, workers) on its way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    chosen: tuple[str, ...] = SCENARIOS if args.scenario == "all" else (args.scenario,)
    if args.redis_cluster and args.scenario == "all":
        chosen = tuple(s for s in chosen if s not in NOT_ON_CLUSTER)
    reports = [run(s, args.records, args.kills, args.malformed, args.seed, cluster=args.redis_cluster) for s in chosen]
    print()
    for r in reports:
        print(format_report(r))
    for r in reports:
        print(f"\n{r.scenario}: dead-letter reasons\n{format_reasons(r)}")
    return 0 if all(r.exact for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
