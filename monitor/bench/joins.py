"""Micro-benchmark of the outcome join: the longest script call, by Redis's own SLOWLOG.

Loads ``--months`` months of ``--per-month`` unlabelled records each (one model) through the worker's
own BatchProcessor, in calls as large as the worker makes them (the batch script's longest call is
reported too) into a throwaway redis-server (or ``--redis URL``), then hands all their outcomes,
shuffled, to one ``OutcomeProcessor.process`` call (as one Kafka message: one batch of the worker).
With ``slowlog-log-slower-than`` at 1 ms Redis logs every script call with its duration (``LATENCY
LATEST`` is a second witness); the report gives the outcome script's calls (count, longest, median,
total, in ms) and Redis commands per outcome (``INFO commandstats``). Redis answers ``BUSY`` to every
other client while one script runs longer than ``lua-time-limit`` (5 s), so the longest call is the
figure to keep well under it. Figures only.

    python -m monitor.bench.joins [--months 1000] [--per-month 12] [--resolution 0.0001] [--per-call 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid

import orjson

from monitor.bench.redis_server import redis_url_or_server
from monitor.months import month_range
from monitor.settings import Settings
from monitor.state.probe import Probe
from monitor.worker import outcomes as outcome_join
from monitor.worker.outcomes import OutcomeProcessor
from monitor.worker.pipeline import MAX_RECORDS_PER_CALL, BatchProcessor, RawMessage

SLOWLOG_THRESHOLD_US = 1_000


def month_labels(n: int, first_year: int = 1940) -> list[str]:
    """``n`` consecutive months from January of ``first_year``.

    >>> month_labels(13)[-1]
    '1941-01'
    """
    return month_range(f"{first_year:04d}-01", n)


async def _refuse(msg, reason: str) -> None:
    raise RuntimeError(f"a benchmark message was refused: {reason}")


async def measure(settings: Settings, months: int, per_month: int) -> dict[str, float]:
    """Load the records, join all their outcomes in one batch; the outcome script's calls by SLOWLOG."""
    # No client-side timeout: a long script call is what is measured, not a reason to retry it.
    probe = Probe(settings, socket_timeout=None)
    store = probe.store(settings)
    rng = random.Random(5)  # noqa: S311 - benchmark jitter/data, not security
    try:
        records = [{"record_id": f"r-{m}-{i:03d}", "model": "bench", "ref_date": f"{m}-{1 + i % 28:02d}",
                    "score": round(rng.random(), 4), "target": None}
                   for m in month_labels(months) for i in range(per_month)]
        batches = BatchProcessor(store, _refuse, "bench")
        # The records go in messages of MAX_RECORDS_PER_CALL, so each batch script call is as large as
        # one can be, and spans many months: its longest call is the batch script's worst case.
        await probe.slowlog_from(SLOWLOG_THRESHOLD_US)
        size = MAX_RECORDS_PER_CALL
        for offset, start in enumerate(range(0, len(records), size)):
            await batches.process([RawMessage("records", 0, offset, orjson.dumps(records[start:start + size]))])
        batch_calls = await probe.script_durations(store.scripts.apply_batch.sha.encode())
        outcomes = [{"record_id": r["record_id"], "model": "bench", "target": int(rng.random() < 0.2)}
                    for r in records]
        rng.shuffle(outcomes)
        processor = OutcomeProcessor(store, _refuse)
        await probe.preload("apply_outcomes")  # no NOSCRIPT round in the figures
        # Redis 7 logs the commands a script runs too: a 1 ms threshold keeps the script calls (each
        # over 1 ms at these sizes) and drops the thousands of quick inner commands, which would push
        # the first calls out of the log. LATENCY's "command" event is a second witness.
        await probe.slowlog_from(SLOWLOG_THRESHOLD_US, max_len=10_000)
        await probe.latency_from(1)
        await probe.reset_stats()
        started = time.perf_counter()
        totals = await processor.process([RawMessage("outcomes", 0, 0, orjson.dumps(outcomes))])
        wall = time.perf_counter() - started
        calls = await probe.command_calls()
        durations = await probe.script_durations(store.scripts.apply_outcomes.sha.encode())
        latest = await probe.latency_latest()
        script_calls = calls.get("evalsha", 0)
        if len(durations) != script_calls:
            raise RuntimeError(f"{script_calls} script calls, {len(durations)} of them over "
                               f"{SLOWLOG_THRESHOLD_US} us in the slowlog: the longest may be missing")
        n = len(outcomes)
        commands = sum(v for c, v in calls.items() if c not in ("evalsha", "eval", "info", "config|resetstat"))
        return {"months": months, "outcomes": n, "joined": totals["joined"], "script_calls": script_calls,
                "latency_max_ms": latest.get(b"command", latest.get("command", 0)),
                "worst_call_ms": max(durations) / 1000,
                "median_call_ms": sorted(durations)[len(durations) // 2] / 1000,
                "total_script_ms": sum(durations) / 1000,
                "wall_s": wall, "commands_per_outcome": commands / n,
                "batch_calls": len(batch_calls), "batch_worst_call_ms": max(batch_calls, default=0) / 1000,
                "lookups_per_outcome": sum(calls.get(c, 0) for c in ("hget", "hexists", "hsetnx")) / n}
    finally:
        await probe.restore_logs()
        await probe.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.bench.joins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", type=int, default=1_000)
    parser.add_argument("--per-month", type=int, default=12, help="records (and outcomes) per month")
    parser.add_argument("--resolution", type=float, default=Settings().resolution,
                        help="histogram bin width (the default makes 80 KB histograms: ~240 MB at 1,000 months)")
    parser.add_argument("--per-call", type=int, default=outcome_join.OUTCOMES_PER_CALL,
                        help="outcomes per script call (monitor.worker.outcomes.OUTCOMES_PER_CALL; a huge value: one call)")
    parser.add_argument("--redis", default=None, help="Redis URL (default: a throwaway redis-server)")
    args = parser.parse_args(argv)
    outcome_join.OUTCOMES_PER_CALL = args.per_call
    with redis_url_or_server(args.redis) as url:
        # Months from 1940: a replay of history, with the event-time window and the month cap off.
        settings = Settings(redis_url=url, key_prefix=f"bench-{uuid.uuid4().hex[:8]}", resolution=args.resolution,
                            max_event_age_days=0, max_event_future_days=0, max_months_per_model=0)
        got = asyncio.run(measure(settings, args.months, args.per_month))
    print(f"outcome join, {got['outcomes']:,} outcomes of a model with {got['months']:,} months "
          f"(resolution {args.resolution}, {os.cpu_count()} cores):")
    print(f"  joined {got['joined']:,} in {got['script_calls']} script call(s) of at most {args.per_call:,}; "
          f"longest call {got['worst_call_ms']:.1f} ms, median {got['median_call_ms']:.1f} ms, "
          f"all calls {got['total_script_ms']:.1f} ms, wall {got['wall_s']:.2f} s")
    print(f"  loading the records: {got['batch_calls']} batch script call(s) of up to {MAX_RECORDS_PER_CALL:,} records "
          f"over up to {got['months']:,} months; longest {got['batch_worst_call_ms']:.1f} ms")
    print(f"  LATENCY LATEST max of the 'command' event: {got['latency_max_ms']} ms")
    print(f"  per outcome: {got['lookups_per_outcome']:.2f} hash lookups, {got['commands_per_outcome']:.2f} Redis commands")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
