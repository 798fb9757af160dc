"""Micro-benchmark of the fold alone when a batch's records are spread over many models: records/s.

Live traffic of many models mixed makes every worker batch one write per model. This folds
``--batches`` batches of 500 messages (JSON arrays of ``--per-message`` records, the models taken in
turn, one month) through the worker's own BatchProcessor into a throwaway redis-server (or
``--redis URL``), after one batch to warm up (the first write of each model reads its offsets), and
reports the records/s and the event-loop lag measured meanwhile by the worker's own probe. No metrics
pass runs: the scale benchmark (``monitor bench --scale``) measures the two together. Figures only.

    python -m monitor.bench.mixed [--models 1000] [--batches 5] [--per-message 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import orjson

from monitor.bench.redis_server import redis_url_or_server
from monitor.settings import Settings
from monitor.state import Store, state_epoch
from monitor.worker.looplag import LoopLagProbe, percentile
from monitor.worker.pipeline import BatchProcessor, RawMessage

MESSAGES_PER_BATCH = 500  # the worker's MONITOR_BATCH_SIZE default


def mixed_batches(models: int, batches: int, per_message: int, topic: str) -> list[list[RawMessage]]:
    """``batches`` + 1 batches of messages whose records take the models in turn (month 2026-10).

    >>> b = mixed_batches(3, 1, 2, "t")
    >>> len(b), len(b[0]), sorted({r["model"] for r in orjson.loads(b[0][0].value) + orjson.loads(b[0][1].value)})
    (2, 500, ['mixed-0000', 'mixed-0001', 'mixed-0002'])
    """
    from producers.synthetic import Scenario, generate

    n = (batches + 1) * MESSAGES_PER_BATCH * per_message
    records = generate(Scenario(name="mixed", start_month="2026-10", months=1, monthly_volume=n, seed=7))
    messages = []
    for offset in range((batches + 1) * MESSAGES_PER_BATCH):
        chunk = []
        for i in range(per_message):
            record = next(records)
            record["model"] = f"mixed-{(offset * per_message + i) % models:04d}"
            chunk.append(record)
        messages.append(RawMessage(topic, 0, offset, orjson.dumps(chunk)))
    return [messages[i:i + MESSAGES_PER_BATCH] for i in range(0, len(messages), MESSAGES_PER_BATCH)]


async def measure(settings: Settings, models: int, batches: int, per_message: int) -> dict[str, float]:
    store = Store.connect(settings)

    async def refuse(msg, reason: str) -> None:
        raise RuntimeError(f"a synthetic record was refused: {reason}")

    try:
        processor = BatchProcessor(store, refuse, await asyncio.to_thread(state_epoch, settings))
        warm, *timed = mixed_batches(models, batches, per_message, settings.records_topic)
        await processor.process(warm)
        probe = LoopLagProbe()
        probing = asyncio.create_task(probe.run())
        start, records = time.perf_counter(), 0
        for batch in timed:
            records += (await processor.process(batch)).records
        elapsed = time.perf_counter() - start
        probing.cancel()
        return {"records": records, "seconds": elapsed, "lag_max": probe.max, "lag_p99": percentile(list(probe.recent), 99)}
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.bench.mixed", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=5, help="timed batches of 500 messages")
    parser.add_argument("--per-message", type=int, default=50, help="records per message (a JSON array)")
    parser.add_argument("--redis", default=None, help="Redis URL (default: a throwaway redis-server)")
    opts = parser.parse_args(argv)
    with redis_url_or_server(opts.redis) as url:
        settings = Settings(redis_url=url, key_prefix=f"bench-mixed-{uuid.uuid4().hex[:6]}",
                            max_event_age_days=0, max_event_future_days=0, max_months_per_model=0)
        got = asyncio.run(measure(settings, opts.models, opts.batches, opts.per_message))
    print(f"{opts.models} models mixed, {opts.batches} batches of {MESSAGES_PER_BATCH} messages x {opts.per_message} records")
    print(f"  fold       {got['records']:>10,} records in {got['seconds']:.2f} s: {got['records'] / got['seconds']:,.0f} records/s")
    print(f"  loop lag   max {got['lag_max'] * 1000:.1f} ms, p99 {got['lag_p99'] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
