"""Scale benchmark: many (model, version) pairs with months of history, live traffic spread over them.

``python -m monitor.bench.scale`` (or ``monitor bench --scale``) starts its own broker and redis-server
(or takes ``--redis`` / ``--cluster`` / ``--bootstrap``) and:

1. loads a reference for each of ``--models`` models and folds ``--months`` months of history,
   ``--history`` records per model-month, through the worker's own BatchProcessor (no broker in the
   way: the history is state, not what is measured); Redis memory is read before and after, so the
   cost of a model-month is measured, not estimated;
2. starts ``--workers`` workers and times their first pass: until every model has the metrics of its
   last history month;
3. publishes ``--rate`` records/s for ``--seconds`` in arrays of ``--per-message``, the background
   spread over every model (the month after the history), while each of ``--sentinels`` models (no
   background) gets at spread-out moments ``min_records`` records whose scores are shifted: its
   month window must fire. From the send of an episode's last record: publish-to-state (Redis counts
   it, polled) and publish-to-alert (its firing event on the alerts topic) p50/p99;
4. reports records/s folded, the workers' event-loop lag (p99 and max, from what each worker writes
   to Redis for ``GET /metrics``), Redis memory total and per model-month, and the machine.

Figures only, no assertion on them (targets are printed next to them: publish-to-alert p99 <= 1 s,
loop lag p99 <= 50 ms). Full size by hand (docs/benchmarks.md); CI runs it small
(tests/integration/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from monitor.bench import report
from monitor.bench.runner import (
    DRIFT_SCORE_SHIFT,
    Bench,
    Episodes,
    Options,
    PhaseError,
    RssTracker,
    latency_messages,
)
from monitor.months import add as add_months
from monitor.settings import Settings

ALERT_P99_TARGET_MS = 1000.0
LOOP_LAG_P99_TARGET_MS = 50.0
LIVE_MONTH = "2026-10"
"""The month the live traffic is dated in; the history is the ``--months`` months before it."""


@dataclass
class ScaleOptions:
    models: int = 1000
    months: int = 24
    history: int = 50
    rate: float = 5000.0
    seconds: float = 30.0
    per_message: int = 50
    sentinels: int = 20
    workers: int = 1
    redis_url: str | None = None
    cluster: bool = False
    bootstrap: str | None = None
    json_path: Path | None = None


def model_names(n: int) -> list[str]:
    """``scale-0000`` ... (zero-padded so that they sort)."""
    return [f"scale-{i:04d}" for i in range(n)]


def live_stream(background: list[str], sentinels: list[str], n: int, episode: int,
                month: str = LIVE_MONTH) -> list[tuple[int, dict]]:
    """``n`` records ``(episode index or -1, record)``: the background round robin over ``background``,
    sentinel k's episode (``episode`` records with shifted scores) from ``(k + 0.25) * n / len(sentinels)``.

    >>> stream = live_stream(["a", "b"], ["s"], 12, 4)
    >>> [k for k, _ in stream], sorted({r["model"] for k, r in stream if k < 0})
    ([-1, -1, -1, 0, 0, 0, 0, -1, -1, -1, -1, -1], ['a', 'b'])
    """
    from producers.synthetic import Scenario, generate

    bg = generate(Scenario(name="scale-bg", model="x", start_month=month, months=1, monthly_volume=n, seed=41))
    drifted = generate(Scenario(name="scale-drift", model="x", start_month=month, months=1,
                                monthly_volume=episode * max(1, len(sentinels)), seed=43, drift_start=0,
                                score_shift=DRIFT_SCORE_SHIFT))
    episode_of = [-1] * n
    for k in range(len(sentinels)):
        start = int((k + 0.25) * n / len(sentinels))
        episode_of[start:start + episode] = [k] * len(episode_of[start:start + episode])
    out, i = [], 0
    for k in episode_of:
        if k >= 0:
            rec = next(drifted)
            rec["model"] = sentinels[k]
        else:
            rec = next(bg)
            rec["model"] = background[i % len(background)]
            i += 1
        out.append((k, rec))
    return out


async def load_references(settings: Settings, models: list[str]) -> None:
    """The same reference (an undrifted synthetic sample) for every model."""
    from monitor.ops.reference import save_reference
    from producers.synthetic import Scenario, reference_frame

    ref = reference_frame(Scenario(name="scale", seed=29))
    scores, targets = ref["score"].to_numpy(), ref["TARGET"].to_numpy()
    for name in models:
        await save_reference(settings, name, "1", scores, targets, source="bench")


async def seed_history(settings: Settings, models: list[str], months: int, per_month: int) -> int:
    """``months`` months of ``per_month`` records per model, folded by the worker's BatchProcessor on a
    topic of their own (the workers' offsets start clean); returns the records."""
    from monitor.state import Store, state_epoch
    from monitor.worker.pipeline import BatchProcessor, RawMessage
    from producers.synthetic import Scenario, generate

    store = Store.connect(settings)

    async def refuse(msg, reason: str) -> None:
        raise PhaseError(f"a history record was refused: {reason}")

    processor = BatchProcessor(store, refuse, await asyncio.to_thread(state_epoch, settings))
    spec = Scenario(name="scale-history", start_month=add_months(LIVE_MONTH, -months), months=months,
                    monthly_volume=per_month * len(models), seed=1, label_fraction=1.0)
    topic, offset, chunk = f"{settings.records_topic}-history", 0, []

    async def fold(records: list[dict]) -> None:
        # A model's records together: one script call per model and batch, as a backfill by model would be
        nonlocal offset
        records.sort(key=lambda r: r["model"])
        for start in range(0, len(records), 5000):
            batch = []
            for record in records[start:start + 5000]:
                batch.append(RawMessage(topic, 0, offset, orjson.dumps(record)))
                offset += 1
            await processor.process(batch)

    try:
        for i, record in enumerate(generate(spec)):
            record["model"] = models[i % len(models)]
            chunk.append(record)
            if len(chunk) == 100 * len(models):
                await fold(chunk)
                chunk = []
        if chunk:
            await fold(chunk)
    finally:
        await store.close()
    return offset


async def wait_first_pass(settings: Settings, models: list[str], month: str, workers: list[subprocess.Popen],
                          timeout_s: float) -> tuple[float, float]:
    """Seconds until the first model has the metrics of ``month`` (the workers started and joined)
    and then until every model has them (the first pass over all months of all models)."""
    from monitor.state import Store

    store = Store.connect(settings)
    started, first, waiting = time.monotonic(), None, list(models)
    try:
        while waiting:
            if any(w.poll() is not None for w in workers):
                raise PhaseError("a worker exited during its first pass")
            if time.monotonic() - started > timeout_s:
                raise PhaseError(f"first pass: {len(waiting)} models without metrics after {timeout_s:.0f} s")
            done = [await store.metrics_of(m, "1", [month]) for m in waiting[:200]]  # one connection
            waiting = [m for m, got in zip(waiting[:200], done, strict=True) if not got.get(month)] + waiting[200:]
            if first is None and len(waiting) < len(models):
                first = time.monotonic()
            await asyncio.sleep(0.2)
        end = time.monotonic()
        return (first or end) - started, end - (first or end)
    finally:
        await store.close()


async def redis_memory(bench: Bench) -> int:
    """Bytes Redis uses (``used_memory``, summed over a cluster's masters)."""
    return int((await bench.probe.info("memory"))["used_memory"])


async def live_phase(bench: Bench, settings: Settings, opts: ScaleOptions, models: list[str],
                     workers: list[subprocess.Popen]) -> dict:
    """Stream at the rate; follow the alerts; poll the sentinels' counts; until all are in (or 60 s)."""
    from monitor.connect import kafka_consumer, kafka_producer

    sentinels, background = models[:opts.sentinels], models[opts.sentinels:]
    episode = settings.min_records
    n = int(opts.rate * opts.seconds)
    msgs = latency_messages(live_stream(background, sentinels, n, episode), opts.per_message)
    episodes = Episodes(sentinels, drift_month=LIVE_MONTH)
    consumer = kafka_consumer(settings, settings.alerts_topic, group_id=f"scale-alerts-{uuid.uuid4().hex[:6]}",
                              auto_offset_reset="latest", enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    producer = kafka_producer(settings)
    await producer.start()
    follower = asyncio.create_task(bench._follow_alerts(consumer, episodes))
    poller = asyncio.create_task(bench._poll_episode_state(settings, episodes, episode))
    before = await bench._counted(settings)
    try:
        first, last = await bench._send_paced(producer, settings, msgs, workers[0], "scale",
                                              RssTracker(workers[0].pid, n), episodes.on_sent)
        caught_up = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (caught_up is not None and episodes.done()):
            if caught_up is None and await bench._counted(settings) - before >= n:
                caught_up = time.time() - last
            await asyncio.sleep(0.05)
        folded = await bench._counted(settings) - before
    finally:
        for task in (follower, poller):
            task.cancel()
        await asyncio.gather(follower, poller, return_exceptions=True)
        await consumer.stop()
        await producer.stop()
    return {"records": n, "sent_s": last - first, "sent_per_s": report.rate(n, last - first),
            "folded": folded, "folded_per_s": report.rate(folded, last - first + (caught_up or 0.0)),
            "caught_up_after_s": caught_up, **episodes.summary()}


async def loop_lag(settings: Settings) -> dict:
    """The workers' event-loop lag as each wrote it to Redis: the worst p99 and max, in ms."""
    from monitor.state import Store
    from monitor.state.reads import worker_loop_lag

    store = Store.connect(settings)
    try:
        snapshots = await worker_loop_lag(store)
    finally:
        await store.close()
    if not snapshots:
        return {"workers": 0}
    return {"workers": len(snapshots), "p99_ms": max(s.get("p99", 0.0) for s in snapshots.values()) * 1000,
            "max_ms": max(s.get("max", 0.0) for s in snapshots.values()) * 1000,
            "samples": sum(s.get("count", 0) for s in snapshots.values()),
            "gc_max_ms": max(s.get("gc_max", 0.0) for s in snapshots.values()) * 1000,
            "gc_full_collections": sum(s.get("gc_full_collections", 0) for s in snapshots.values())}


async def run_scale(opts: ScaleOptions, settings: Settings, tmp: Path, say: Callable[[str], None]) -> dict:
    """The whole benchmark on running servers; returns the figures."""
    from monitor.ops.infra import create_topics
    from monitor.ops.processes import start_worker, stop_process

    models = model_names(opts.models)
    await create_topics(settings)
    bench = Bench(Options(latency_rate=opts.rate, poll_s=0.02), settings, tmp, say)
    async with bench:
        empty = await redis_memory(bench)
        await load_references(settings, models)
        references = await redis_memory(bench) - empty
        started = time.monotonic()
        seeded = await seed_history(settings, models, opts.months, opts.history)
        seed_s = time.monotonic() - started
        held = await redis_memory(bench) - empty - references
        say(f"history: {seeded:,} records in {opts.models} x {opts.months} model-months folded in {seed_s:.1f} s; "
            f"Redis +{held / 2**20:.1f} MiB")
        workers = [start_worker(settings, tmp / f"worker-{i}.log") for i in range(opts.workers)]
        try:
            start_s, first_pass_s = await wait_first_pass(settings, models[opts.sentinels:],
                                                          add_months(LIVE_MONTH, -1), workers, timeout_s=900)
            say(f"workers up and first metrics after {start_s:.1f} s; first pass over {opts.models} models x "
                f"{opts.months} months: {first_pass_s:.1f} s")
            live = await live_phase(bench, settings, opts, models, workers)
            lag = await loop_lag(settings)
            total = await redis_memory(bench) - empty
        finally:
            for w in workers:
                await asyncio.to_thread(stop_process, w)
    return {"history_records": seeded, "history_fold_s": seed_s, "first_pass_s": first_pass_s,
            "workers_start_s": start_s, "redis_bytes_references": references, "redis_bytes_history": held, "redis_bytes_after_live": total,
            "bytes_per_model_month": held / (opts.models * opts.months), "live": live, "loop_lag": lag}


def summary_lines(opts: ScaleOptions, result: dict) -> list[str]:
    """The printed report: the figures, each target beside its measure."""
    live, lag = result["live"], result["loop_lag"]
    alert = live["alert_ms"]
    p99 = alert.get("p99")
    lag_p99 = lag.get("p99_ms")
    return [
        f"scale: {opts.models} models x {opts.months} months of history ({opts.history} records each), "
        f"{'a 3-master Redis Cluster' if opts.cluster else 'one redis-server'}, {opts.workers} worker(s), live {opts.rate:,.0f} records/s for {opts.seconds:.0f} s in arrays of "
        f"{opts.per_message}",
        f"  history folded            {result['history_records']:>12,} records in {result['history_fold_s']:.1f} s",
        f"  Redis, references         {result['redis_bytes_references'] / 2**20:>12.1f} MiB  "
        f"({result['redis_bytes_references'] / opts.models / 1024:.1f} KiB per model)",
        f"  Redis, history            {result['redis_bytes_history'] / 2**20:>12.1f} MiB  "
        f"({result['bytes_per_model_month'] / 1024:.1f} KiB per model-month)",
        f"  Redis, all after live     {result['redis_bytes_after_live'] / 2**20:>12.1f} MiB  (with the metrics)",
        f"  first pass (all months)   {result['first_pass_s']:>12.1f} s",
        f"  live sent                 {live['sent_per_s']:>12,.0f} records/s",
        f"  live folded               {live['folded_per_s']:>12,.0f} records/s "
        f"({live['folded']:,} of {live['records']:,}; caught up {_fmt_s(live['caught_up_after_s'])} after the last send)",
        f"  publish-to-state p50/p99  {_fmt_ms(live['state_ms'])}",
        f"  publish-to-alert p50/p99  {_fmt_ms(alert)}  target p99 <= {ALERT_P99_TARGET_MS:.0f} ms: "
        f"{report.fmt_met(None if p99 is None else p99 <= ALERT_P99_TARGET_MS)}"
        + (f"; missing alerts: {len(live['missing_alerts'])}" if live["missing_alerts"] else ""),
        f"  worker loop lag p99 / max {_fmt(lag_p99)} / {_fmt(lag.get('max_ms'))} ms over {lag.get('samples', 0)} "
        f"samples  target p99 <= {LOOP_LAG_P99_TARGET_MS:.0f} ms: "
        f"{report.fmt_met(None if lag_p99 is None else lag_p99 <= LOOP_LAG_P99_TARGET_MS)}",
        f"  worker GC pause max       {_fmt(lag.get('gc_max_ms'))} ms ({lag.get('gc_full_collections', 0)} full "
        f"collections)",
    ]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _fmt_s(value: float | None) -> str:
    return "never (within 60 s)" if value is None else f"{value:.1f} s"


def _fmt_ms(summary: dict) -> str:
    return f"{_fmt(summary.get('p50')):>7} / {_fmt(summary.get('p99'))} ms (n={summary.get('n', 0)})"


def parse_args(argv: list[str] | None = None) -> ScaleOptions:
    parser = argparse.ArgumentParser(prog="python -m monitor.bench.scale", description=__doc__.split("\n")[0])
    defaults = ScaleOptions()
    parser.add_argument("--models", type=int, default=defaults.models)
    parser.add_argument("--months", type=int, default=defaults.months)
    parser.add_argument("--history", type=int, default=defaults.history, help="records per model-month of history")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="live records/s")
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="live traffic duration")
    parser.add_argument("--per-message", type=int, default=defaults.per_message, help="records per Kafka message")
    parser.add_argument("--sentinels", type=int, default=defaults.sentinels, help="models given a drift episode")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--redis", dest="redis_url", default=None,
                        help="Redis URL, redis+cluster:// for a cluster (default: a throwaway redis-server)")
    parser.add_argument("--cluster", action="store_true",
                        help="on a throwaway local Redis Cluster of 3 masters (monitor/ops/redis_cluster.py)")
    parser.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: a throwaway local broker)")
    parser.add_argument("--json", dest="json_path", type=Path, default=None, help="also write the figures here")
    opts = ScaleOptions(**vars(parser.parse_args(argv)))
    if opts.sentinels >= opts.models:
        parser.error("--sentinels must be fewer than --models")
    return opts


def main(argv: list[str] | None = None) -> int:
    from monitor.ops.redis_cluster import LocalCluster

    opts = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="credit-monitor-scale-"))

    def say(message: str) -> None:
        print(f"[scale] {message}", flush=True)

    say(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; logs in {tmp}")
    cluster = LocalCluster(tmp / "redis-cluster", masters=3, replicas=0) if opts.cluster else None
    try:
        if cluster is not None:
            say(f"redis cluster: {cluster.start()}")
        result = run_on_servers(opts, tmp, cluster.url if cluster is not None else opts.redis_url, say)
    finally:
        if cluster is not None:
            cluster.stop()
    print("\n".join(summary_lines(opts, result)))
    if opts.json_path is not None:
        opts.json_path.write_text(json.dumps({"options": {k: str(v) for k, v in asdict(opts).items()},
                                              "machine": {"cpus": os.cpu_count()}, **result}, indent=2, default=str))
    return 0


def run_on_servers(opts: ScaleOptions, tmp: Path, redis_url: str | None, say: Callable[[str], None]) -> dict:
    """Fresh topics, group and key prefix; the broker and a redis-server started unless given."""
    from monitor.ops import infra

    name = f"scale-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        kafka_bootstrap=opts.bootstrap or f"127.0.0.1:{infra.free_port()}",
        redis_url=redis_url or f"redis://127.0.0.1:{infra.free_port()}/0", run_dir=tmp,
        records_topic=f"{name}-records", outcomes_topic=f"{name}-outcomes", alerts_topic=f"{name}-alerts",
        dead_letter_topic=f"{name}-dead-letter", consumer_group=name, key_prefix=name)
    services = [svc for svc in infra.services(settings)
                if not ((svc.name == "broker" and opts.bootstrap) or (svc.name == "redis" and redis_url))]
    try:
        for svc in services:
            say(f"{svc.name}: {svc.start()}")
        return asyncio.run(run_scale(opts, settings, tmp, say))
    finally:
        if opts.redis_url:  # the user's Redis: the run's keys (GBs at full size) go with the run
            say(f"deleting the run's keys (prefix {settings.key_prefix!r})")
            asyncio.run(wipe(settings))
        for svc in reversed(services):
            svc.stop()


async def wipe(settings: Settings) -> None:
    """Delete every key of the run's prefix (SCAN on every master of a cluster)."""
    from monitor.state import Store

    store = Store.connect(settings)
    try:
        await store.wipe()
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())
