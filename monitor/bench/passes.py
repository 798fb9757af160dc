"""Micro-benchmark of a timer pass of the metrics engine: milliseconds per changed model.

Loads ``--models`` models (a reference each) with ``--months`` months of synthetic records through
the worker's own BatchProcessor into a throwaway redis-server (or ``--redis URL``), runs a first
pass, then ``--rounds`` times: adds ``--records`` records to the *first* month of every model (so
every window of every month changes, the most a pass can have to do) and times
``MetricsUpdater.run_once``. It reports the best round, with the pauses between models off (the
CPU and Redis cost of the pass) and on (the wall time of a pass in the worker, about twice as long:
see ``monitor.worker.engine.PASS_PAUSE_RATIO``), and the event-loop lag measured during the passes by the
worker's own probe (``monitor.worker.looplag``: max and p99 over every round). ``--last-month`` adds the
round's records to the *last* month instead (live traffic: only that month's windows change).
Figures only, no assertion on them.

    python -m monitor.bench.passes [--models 30] [--months 2] [--records 3000] [--rounds 3] [--last-month]
    python -m monitor.bench.passes --models 1 --months 1000 --records 1000   # many months (issue 18)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import orjson

from monitor.bench.redis_server import redis_url_or_server
from monitor.months import add as add_months
from monitor.ops.reference import save_reference
from monitor.settings import Settings
from monitor.state import Store, state_epoch
from monitor.worker.engine import PASS_PAUSE_RATIO, MetricsUpdater
from monitor.worker.looplag import LoopLagProbe, favour_the_loop, percentile
from monitor.worker.pipeline import BatchProcessor, RawMessage
from producers.synthetic import Scenario, generate, reference_frame

START_MONTH = "1940-01"  # many months end before today: the event-time window and month cap are off


async def measure(settings: Settings, models: int, months: int, records: int, rounds: int,
                  last_month: bool = False) -> dict[str, float]:
    names = [f"pass-{i:02d}" for i in range(models)]
    ref = reference_frame(Scenario(name="passes", seed=29))
    for name in names:
        await save_reference(settings, name, "1", ref["score"].to_numpy(), ref["TARGET"].to_numpy(), source="bench")
    store = Store.connect(settings)

    async def refuse(msg, reason: str) -> None:
        raise RuntimeError(f"a synthetic record was refused: {reason}")

    processor = BatchProcessor(store, refuse, await asyncio.to_thread(state_epoch, settings))
    offset = 0

    async def add(first_month: str, n_months: int, volume: int, seed: int) -> None:
        nonlocal offset
        batch = []
        spec = Scenario(name="passes", start_month=first_month, months=n_months, monthly_volume=volume, seed=seed)
        for i, record in enumerate(generate(spec)):
            record["model"] = names[i % models]
            batch.append(RawMessage(settings.records_topic, 0, offset, orjson.dumps(record)))
            offset += 1
        for i in range(0, len(batch), 500):
            await processor.process(batch[i:i + 500])

    try:
        await add(START_MONTH, months, 500 * models, seed=1)
        updater = MetricsUpdater(store, settings)
        probe = LoopLagProbe()
        probing = asyncio.create_task(probe.run())
        start = time.perf_counter()
        await updater.run_once(None)
        best: dict[str, float] = {"first pass (every window)": time.perf_counter() - start}
        changed = add_months(START_MONTH, months - 1) if last_month else START_MONTH
        for r in range(rounds):
            for label, ratio in (("pauses off", 0.0), ("pauses on", PASS_PAUSE_RATIO)):
                await add(changed, 1, records, seed=100 + 2 * r + (ratio > 0))
                updater.pause_ratio = ratio
                start = time.perf_counter()
                await updater.run_once(None)
                best[label] = min(best.get(label, float("inf")), time.perf_counter() - start)
        probing.cancel()
        lags = list(probe.recent)
        best["loop lag max"], best["loop lag p99"] = probe.max, percentile(lags, 99)
        return best
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.bench.passes", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--months", type=int, default=2)
    parser.add_argument("--records", type=int, default=3000, help="records added to the first month per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--last-month", action="store_true", help="add the round's records to the last month")
    parser.add_argument("--redis", default=None, help="Redis URL (default: a throwaway redis-server)")
    opts = parser.parse_args(argv)
    previous_interval = favour_the_loop()  # as the worker does
    try:
        with redis_url_or_server(opts.redis) as url:
            settings = Settings(redis_url=url, key_prefix=f"bench-passes-{uuid.uuid4().hex[:6]}",
                                max_event_age_days=0, max_event_future_days=0, max_months_per_model=0)
            best = asyncio.run(measure(settings, opts.models, opts.months, opts.records, opts.rounds,
                                       opts.last_month))
    finally:
        sys.setswitchinterval(previous_interval)
    what = "the last month" if opts.last_month else "every month"
    print(f"{opts.models} models x {opts.months} months, {what} changed, best of {opts.rounds}")
    for label, seconds in best.items():
        if label.startswith("loop lag"):
            print(f"  {label:<32} {seconds * 1000:8.1f} ms")
        else:
            print(f"  pass, {label:<26} {seconds * 1000:8.1f} ms  {seconds * 1000 / opts.models:6.2f} ms per changed model")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
