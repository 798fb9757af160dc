"""An outcome's cost does not grow with the model's months: a model of 1,000 months, 12,000 outcomes.

Measured by Redis's own command counts (``INFO commandstats``), not by time: the number of lookups
per outcome is bounded by a constant, the batch is cut into several script calls, and every record's
month gets exactly its counts.
"""

from __future__ import annotations

import random

import orjson
import pytest

from monitor.months import month_range
from monitor.worker.outcomes import OutcomeProcessor, outcome_counters
from monitor.worker.pipeline import BatchProcessor, RawMessage
from monitor.stats import ScoreHistogram

pytestmark = pytest.mark.integration

MONTHS = 1_000
PER_MONTH = 12
RESOLUTION = 0.01
"""Coarse bins (101): 1,000 months of histograms stay small (808 bytes each)."""
MAX_LOOKUPS_PER_OUTCOME = 6
"""HGET / HEXISTS / HSETNX per outcome: a few probes of the join buffer, whatever the months."""
MAX_COMMANDS_PER_OUTCOME = 12
MAX_OUTCOMES_PER_CALL = 1_000


class DeadLetters(list):
    async def __call__(self, msg: RawMessage, reason: str) -> None:
        self.append((msg.offset, reason))


def month_labels(n: int, first_year: int = 1940) -> list[str]:
    """``n`` consecutive months from January of ``first_year``.

    >>> month_labels(14)[-2:]
    ['1941-01', '1941-02']
    """
    return month_range(f"{first_year:04d}-01", n)


def dataset() -> list[dict]:
    rng = random.Random(11)
    return [{"record_id": f"r-{month}-{i:02d}", "model": "m", "ref_date": f"{month}-{1 + i:02d}",
             "score": round(rng.random(), 2), "target": int(rng.random() < 0.3)}
            for month in month_labels(MONTHS) for i in range(PER_MONTH)]


async def command_calls(redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT, by Redis's own count."""
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_outcome_lookups_do_not_grow_with_the_months(settings):
    # 1,000 months from 1940: a replay of history, with the event-time window and the month cap off.
    settings = settings.model_copy(update={"resolution": RESOLUTION, "max_event_age_days": 0,
                                           "max_event_future_days": 0, "max_months_per_model": 0})
    from monitor.state import Store

    records = dataset()
    store = Store.connect(settings)
    try:
        unlabelled = [{**r, "target": None} for r in records]
        messages = [RawMessage("records", 0, i, orjson.dumps(unlabelled[j:j + 1_000]))
                    for i, j in enumerate(range(0, len(unlabelled), 1_000))]
        await BatchProcessor(store, DeadLetters(), "e1").process(messages)
        assert len(await store.months("m", "1")) == MONTHS

        outcomes = RawMessage("outcomes", 0, 0, orjson.dumps(
            [{"record_id": r["record_id"], "model": "m", "target": r["target"]} for r in records]))
        await store.redis.config_resetstat()
        got = await OutcomeProcessor(store, DeadLetters()).process([outcomes])
        calls = await command_calls(store.redis)
        n = len(records)
        lookups = sum(calls.get(c, 0) for c in ("hget", "hexists", "hsetnx", "hmget"))
        scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
        commands = sum(v for c, v in calls.items() if c not in ("evalsha", "eval", "info", "config|resetstat"))
        print(f"\n{n} outcomes over {MONTHS} months: {lookups / n:.2f} lookups and {commands / n:.2f} commands "
              f"per outcome, {scripts} script calls")
        assert lookups <= MAX_LOOKUPS_PER_OUTCOME * n
        assert commands <= MAX_COMMANDS_PER_OUTCOME * n
        assert scripts >= -(-n // MAX_OUTCOMES_PER_CALL)

        # Every join exact: each month's counts and histograms moved once, to the right label.
        assert (got["joined"], got["pending"], got["duplicates"]) == (n, 0, 0)
        assert (await outcome_counters(store, "m", "1"))["joined"] == n
        months = month_labels(MONTHS)
        hists = await store.histograms("m", "1", months)
        for month in months:
            of_month = [r for r in records if r["ref_date"].startswith(month)]
            bad = [r["score"] for r in of_month if r["target"] == 1]
            good = [r["score"] for r in of_month if r["target"] == 0]
            assert await store.counts("m", "1", month) == {"n": PER_MONTH, "bad": len(bad), "good": len(good),
                                                           "unlabeled": 0}, month
            assert hists[month].pos == ScoreHistogram.from_scores(bad, RESOLUTION), month
            assert hists[month].neg == ScoreHistogram.from_scores(good, RESOLUTION), month
            assert hists[month].unlabeled.n == 0
    finally:
        await store.close()
