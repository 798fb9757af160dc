"""Fill Redis with a synthetic scenario without a broker: the worker's own code (BatchProcessor, then
MetricsUpdater month after month, so alerts fire as in a live stream: provisionally on the month
being read, finally once the next month closes it; each month is whole when read, so it settles at
once). For tests, the benchmark and trying the API out.

    python -m monitor.api.sample --scenario demo     # into MONITOR_REDIS_URL / MONITOR_KEY_PREFIX
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson

from monitor.ops.reference import save_reference
from monitor.settings import Settings
from monitor.state import Store, state_epoch
from monitor.worker.engine import MetricsUpdater
from monitor.worker.pipeline import BatchProcessor, KafkaMessage, RawMessage

MESSAGES_PER_BATCH = 200


async def load_scenario(settings: Settings, scenario, *, reference_n: int = 10_000, per_message: int = 20,
                        with_reference: bool = True) -> dict[str, int]:
    """Fold the scenario's records into Redis as the worker would (offsets on partition 0 of the records
    topic), computing metrics and judging alerts after each month. Returns the records per month."""
    from producers.synthetic import generate, monthly_counts, reference_frame

    if with_reference:
        ref = reference_frame(scenario, n=reference_n)
        await save_reference(settings, scenario.model, scenario.model_version, ref["score"].to_numpy(),
                             ref["TARGET"].to_numpy(), source=f"synthetic reference of {scenario.name!r}")
    store = Store.connect(settings)
    dead: list[str] = []

    async def dead_letter(msg: KafkaMessage, reason: str) -> None:
        dead.append(reason)

    async def discard(raw: bytes) -> None:  # alert events stay in the history; nothing to publish to
        return None

    try:
        epoch = await asyncio.to_thread(state_epoch, settings)  # the one the worker would use
        processor = BatchProcessor(store, dead_letter, epoch)
        updater = MetricsUpdater(store, settings.model_copy(update={"month_settle_s": 0.0}))
        records = list(generate(scenario))
        offset = 0
        for month in scenario.month_labels():
            mine = [r for r in records if r["ref_date"].startswith(month)]
            messages = []
            for i in range(0, len(mine), per_message):
                messages.append(RawMessage(settings.records_topic, 0, offset, orjson.dumps(mine[i:i + per_message])))
                offset += 1
            for i in range(0, len(messages), MESSAGES_PER_BATCH):
                await processor.process(messages[i:i + MESSAGES_PER_BATCH])
            await updater.run_once(discard)
        if dead:
            raise RuntimeError(f"{len(dead)} synthetic messages were dead-lettered: {dead[0]}")
    finally:
        await store.close()
    return {m: n for m, n in monthly_counts(scenario).items() if n}


def main() -> None:  # pragma: no cover - a convenience for trying the API out
    import argparse

    from monitor.settings import get_settings
    from producers.synthetic import SCENARIOS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="demo", choices=sorted(SCENARIOS))
    parser.add_argument("--model", help="model name (default: the scenario's)")
    args = parser.parse_args()
    scenario = SCENARIOS[args.scenario]
    if args.model:
        scenario = replace(scenario, model=args.model)
    counts = asyncio.run(load_scenario(get_settings(), scenario))
    print(f"{scenario.model}:{scenario.model_version}: {sum(counts.values())} records in {len(counts)} months")


if __name__ == "__main__":  # pragma: no cover
    main()
