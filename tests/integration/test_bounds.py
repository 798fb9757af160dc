"""Bounded input on a real redis-server: floods of months, models and categories stay within the
settings' bounds, each refused message is dead-lettered with its own reason, and the memory they
can take is measured (MEMORY USAGE of every key of the test's prefix)."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from monitor.worker.pipeline import BatchProcessor, RawMessage
from monitor.state import Store
from monitor.stats import (
    CategoricalReference,
    FeatureProfile,
    NumericReference,
    ScoreHistogram,
    feature_drift,
)
from monitor.stats.features import OTHER, UNSEEN_NAMES_PART
from tests.conftest import unique_settings

pytestmark = pytest.mark.integration
TODAY = dt.date(2026, 11, 30)  # the window 2006-11-30 .. 2026-12-07 holds 241 month starts


class DeadLetters(list):
    async def __call__(self, msg: RawMessage, reason: str) -> None:
        self.append((msg.offset, reason))

    def reasons(self, setting: str) -> int:
        return sum(setting in reason for _, reason in self)


def record(i: int, ref_date: str = "2024-05-10", model: str = "m", target: int | None = 1, **fields) -> dict:
    return {"record_id": f"r{i}", "model": model, "ref_date": ref_date, "score": (i % 97) / 100, "target": target,
            **fields}


def message(offset: int, *records: dict, partition: int = 0) -> RawMessage:
    return RawMessage("records", partition, offset, orjson.dumps(list(records) if len(records) > 1 else records[0]))


async def process_in_batches(processor: BatchProcessor, messages: list[RawMessage], size: int = 500):
    total = None
    for start in range(0, len(messages), size):
        result = await processor.process(messages[start:start + size])
        total = result if total is None else total.__iadd__(result)
    return total


async def memory_of_prefix(store: Store) -> tuple[int, int]:
    """Bytes (MEMORY USAGE summed) and number of the keys under this test's prefix."""
    total = keys = 0
    async for key in store.redis.scan_iter(match=f"{store.prefix}:*", count=1000):
        total += await store.redis.memory_usage(key, samples=0) or 0
        keys += 1
    return total, keys


def month_starts(first: dt.date, n: int) -> list[str]:
    """The first day of n consecutive months from ``first``'s month."""
    out, year, month = [], first.year, first.month
    for _ in range(n):
        out.append(f"{year:04d}-{month:02d}-01")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


async def test_dates_outside_the_window_are_dead_lettered_with_their_reason(servers):
    store = Store.connect(unique_settings(servers))
    try:
        dead = DeadLetters()
        processor = BatchProcessor(store, dead, "e1")
        batch = [message(0, record(0)), message(1, record(1, "9999-12-31")), message(2, record(2, "1900-01-01")),
                 message(3, record(3), record(4, "2024-06-01"), record(5, "9999-01-01")), message(4, record(6))]
        result = await processor.process(batch)
        assert (result.records, result.dead_lettered) == (2, 3)
        reasons = dict(dead)
        assert reasons[1].startswith("record 0: ref_date 9999-12-31 is more than 7 days after today")
        assert reasons[1].endswith("(MONITOR_MAX_EVENT_FUTURE_DAYS)")
        assert reasons[2].startswith("record 0: ref_date 1900-01-01 is more than 7305 days before today")
        assert reasons[3].startswith("record 2: ref_date 9999-01-01")      # the whole message, not its first two
        assert await store.months("m", "1") == ["2024-05"]
        assert (await store.counts("m", "1", "2024-05"))["n"] == 2
        again = await processor.process(batch)                            # exactly once still holds
        assert (again.records, again.duplicates_skipped, again.dead_lettered) == (0, 2, 3)
    finally:
        await store.close()


async def test_a_flood_of_distinct_months_stays_within_the_month_cap(servers):
    """The issue's flood: one message per month, each opening the month's three histograms."""
    settings = unique_settings(servers)
    store = Store.connect(settings)
    try:
        dead = DeadLetters()
        processor = BatchProcessor(store, dead, "e1", today=lambda: TODAY)
        days = month_starts(dt.date(1950, 1, 1), 1000)                   # 1950-01 .. 2033-04
        flood = [message(i, record(3 * i, d, target=1), record(3 * i + 1, d, target=0), record(3 * i + 2, d, target=None))
                 for i, d in enumerate(days)]
        result = await process_in_batches(processor, flood)
        months = await store.months("m", "1")
        cap = settings.max_months_per_model
        assert len(months) == cap == 240
        assert result.records == 3 * cap and result.dead_lettered == len(flood) - cap
        assert dead.reasons("MONITOR_MAX_EVENT_AGE_DAYS") and dead.reasons("MONITOR_MAX_EVENT_FUTURE_DAYS")
        assert dead.reasons("MONITOR_MAX_MONTHS_PER_MODEL") == 1        # 2026-12: the 241st month in the window
        used, keys = await memory_of_prefix(store)
        per_month = 3 * store.hist_bytes
        print(f"\nmonths flood: {len(flood)} messages of 3 records -> {len(months)} months, {keys} keys, "
              f"{used / 1e6:.1f} MB ({used / len(months) / 1024:.0f} KB a month; histograms alone "
              f"{per_month / 1024:.0f} KB); dead-lettered {result.dead_lettered}")
        assert used <= cap * per_month * 1.5                              # one model's worst case, generous margin
    finally:
        await store.close()


async def test_a_flood_of_model_names_stays_within_the_model_cap(servers):
    settings = unique_settings(servers, max_models=50)
    store = Store.connect(settings)
    try:
        dead = DeadLetters()
        result = await process_in_batches(BatchProcessor(store, dead, "e1"),
                                          [message(i, record(i, model=f"flood-{i}")) for i in range(500)])
        assert len(await store.models()) == 50
        assert (result.records, result.dead_lettered) == (50, 450)
        assert dead.reasons("MONITOR_MAX_MODELS") == 450
        assert dead[0][1] == "record 0: model flood-50:1 is new and 50 models are already known (MONITOR_MAX_MODELS)"
        used, keys = await memory_of_prefix(store)
        print(f"\nmodels flood: 500 one-record messages -> 50 models, {keys} keys, {used / 1e6:.2f} MB "
              f"({used / 50 / 1024:.0f} KB a model)")
        assert used <= 50 * (store.hist_bytes + 8192) * 1.5
        # A known model still takes new records and months.
        more = await BatchProcessor(store, dead, "e1").process([message(500, record(500, "2024-07-01", model="flood-7"))])
        assert more.records == 1
    finally:
        await store.close()


async def test_require_reference_takes_only_models_with_a_loaded_reference(servers):
    store = Store.connect(unique_settings(servers, require_reference=True))
    try:
        await store.save_reference("m", "1", ScoreHistogram.from_scores([0.1, 0.5, 0.9]), {"n": 3})
        dead = DeadLetters()
        result = await BatchProcessor(store, dead, "e1").process(
            [message(0, record(0)), message(1, record(1, model="unknown")), message(2, record(2))])
        assert (result.records, result.dead_lettered) == (2, 1)
        assert dead == [(1, "record 0: model unknown:1 has no reference loaded (MONITOR_REQUIRE_REFERENCE)")]
        assert await store.models() == [("m", "1")]
    finally:
        await store.close()


async def test_unseen_categories_are_capped_across_batches_and_drift_stays_exact(servers):
    settings = unique_settings(servers)
    store = Store.connect(settings)
    try:
        profile = FeatureProfile({"purpose": CategoricalReference({"car": 5, "home": 5}),
                                  "income": NumericReference((10.0,), (5, 5))})
        await store.save_reference("m", "1", ScoreHistogram.from_scores([0.1, 0.5]), {"n": 2}, profile)
        dead = DeadLetters()
        processor = BatchProcessor(store, dead, "e1")
        offset = 0
        for batch in range(20):                                           # 20 batches of 50 new 200-char names
            messages = []
            for j in range(50):
                name = f"{batch:02d}{j:02d}" + "x" * 196
                messages.append(message(offset, record(offset, features={"purpose": name, "income": 3.0})))
                offset += 1
            messages.append(message(offset, record(offset, features={"purpose": "car", "income": 20.0})))
            offset += 1
            result = await processor.process(messages)
            assert result.records == 51
        long_values = [message(offset + k, record(offset + k, features={"purpose": "y" * 5000})) for k in range(5)]
        result = await processor.process(long_values)
        assert result.dead_lettered == 5 and dead.reasons("MONITOR_MAX_FEATURE_VALUE_CHARS") == 5
        key = store.features_key("m", "1", "2024-05")
        fields = await store.redis.hgetall(key)
        names = [f for f in fields if f.startswith(b"purpose|") and f not in (
            f"purpose|{OTHER}".encode(), f"purpose|{UNSEEN_NAMES_PART}".encode(), b"purpose|car")]
        assert len(names) == settings.max_unseen_categories == 100
        assert int(fields[f"purpose|{UNSEEN_NAMES_PART}".encode()]) == 100
        assert int(fields[f"purpose|{OTHER}".encode()]) == 900
        counter = (await store.feature_counts("m", "1", ["2024-05"], profile))["2024-05"]
        drift = feature_drift(counter, profile)["purpose"]
        assert (counter.total("purpose"), drift.unseen, counter.counts("purpose")["car"]) == (1020, 1000, 20)
        assert counter.counts("income") == [1000, 20]
        used = await store.redis.memory_usage(key, samples=0)
        print(f"\ncategories flood: 1,000 unseen 200-char names in 20 batches -> {len(fields)} fields, "
              f"{used / 1024:.0f} KB in the month's feature hash")
        assert used <= settings.max_unseen_categories * (settings.max_feature_value_chars + 128) * 1.5
    finally:
        await store.close()


async def test_two_workers_see_each_others_months(servers):
    """A worker rereads the stored months whenever a batch brings a month it does not know."""
    store = Store.connect(unique_settings(servers, max_months_per_model=6))
    try:
        a, b = BatchProcessor(store, DeadLetters(), "e1"), BatchProcessor(store, DeadLetters(), "e1")
        days = month_starts(dt.date(2020, 1, 1), 10)
        await a.process([message(i, record(i, days[i])) for i in range(4)])
        await b.process([message(0, record(0, days[0]), partition=1)])
        await a.process([message(4 + i, record(4 + i, days[4 + i])) for i in range(2)])
        late = await b.process([message(1 + i, record(10 + i, days[6 + i]), partition=1) for i in range(4)])
        assert (late.records, late.dead_lettered) == (0, 4)
        assert len(await store.months("m", "1")) == 6
    finally:
        await store.close()


async def test_the_worker_dead_letters_out_of_bounds_messages_with_their_reasons(settings, worker_process):
    """End to end: the settings reach the worker process, the reasons reach the dead-letter topic."""
    from producers.publish import kafka_producer
    from tests.integration.test_worker import consume_all

    s = settings.model_copy(update={"max_models": 2, "max_months_per_model": 3})
    worker_process(s)
    valid = [record(0, "2024-01-05"), record(1, "2024-02-05"), record(2, "2024-03-05"), record(3, "2024-03-09"),
             record(4, "2024-01-05", model="b")]
    refused = {"MONITOR_MAX_MONTHS_PER_MODEL": record(10, "2024-04-05"),
               "MONITOR_MAX_EVENT_FUTURE_DAYS": record(11, "9999-12-31"),
               "MONITOR_MAX_MODELS": record(12, "2024-01-05", model="c"),
               "MONITOR_MAX_FEATURE_VALUE_CHARS": record(13, "2024-01-05", features={"purpose": "z" * 5000})}
    producer = kafka_producer(s)
    await producer.start()
    try:
        for value in [*valid, *refused.values()]:                  # one partition: in this order
            await producer.send_and_wait(s.records_topic, value=orjson.dumps(value), key=b"k", partition=0)
    finally:
        await producer.stop()
    dead = await consume_all(s, s.dead_letter_topic, len(refused), timeout_s=90)
    reasons = {orjson.loads(m.value)["record_id"]: dict(m.headers)["dlq.reason"].decode() for m in dead}
    assert {rid: [name for name in refused if name in reason] for rid, reason in reasons.items()} == {
        value["record_id"]: [name] for name, value in refused.items()}
    store = Store.connect(s)
    try:
        assert (await store.worker_counters())["records"] == len(valid)
        assert await store.models() == [("b", "1"), ("m", "1")]
        assert await store.months("m", "1") == ["2024-01", "2024-02", "2024-03"]
    finally:
        await store.close()
