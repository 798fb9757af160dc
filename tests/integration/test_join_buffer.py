"""The delayed-label join buffer on a real redis-server: bucketed hashes, compact, exactly-once joins."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from monitor.worker.outcomes import OutcomeProcessor, outcome_counters
from monitor.worker.pipeline import BatchProcessor, RawMessage
from monitor.state import (
    JOIN_BUCKETS,
    JOIN_PERIOD_S,
    Store,
    join_bucket,
    join_month_bin,
    join_period,
    join_value,
)
from monitor.stats import ScoreHistogram

pytestmark = pytest.mark.integration

MONTHS = ("2024-04", "2024-05")
PER_MONTH = 20_000
"""Waiting records per month. Dense enough for the buckets' per-key cost (~100 bytes) to be shared:
at 1,500 per month (most of the 4,096 buckets holding one record) a record costs ~110 bytes."""
EARLY = 1_000
"""Records of the second month whose outcome comes before them (pending)."""


class DeadLetters(list):
    async def __call__(self, msg: RawMessage, reason: str) -> None:
        self.append((msg.offset, reason))


def dataset() -> list[dict]:
    rng = random.Random(7)
    return [{"record_id": f"rec-{month}-{i:06d}", "model": "m", "ref_date": f"{month}-{1 + i % 28:02d}",
             "score": round(rng.random(), 4), "target": int(rng.random() < 0.2)}
            for month in MONTHS for i in range(PER_MONTH)]


def chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def record_messages(records: list[dict], per_message: int = 500) -> list[RawMessage]:
    unlabelled = [{**r, "target": None} for r in records]
    return [RawMessage("records", 0, offset, orjson.dumps(chunk))
            for offset, chunk in enumerate(chunks(unlabelled, per_message))]


def outcome_messages(records: list[dict], per_message: int = 1_000) -> list[RawMessage]:
    return [RawMessage("outcomes", 0, offset, orjson.dumps(
        [{"record_id": r["record_id"], "model": "m", "target": r["target"]} for r in chunk]))
        for offset, chunk in enumerate(chunks(records, per_message))]


async def process_outcomes(outcomes: OutcomeProcessor, messages: list[RawMessage]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for batch in chunks(messages, 5):
        for name, n in (await outcomes.process(batch)).items():
            totals[name] = totals.get(name, 0) + n
    return totals


async def keys_of(store: Store, pattern: str) -> list[bytes]:
    return [k async for k in store.redis.scan_iter(match=f"{store.base('m', '1')}:{pattern}", count=1000)]


async def redis_period(store: Store) -> int:
    """The join buffer's write period now, by Redis's clock."""
    return join_period((await store.redis.time())[0])


def deadlines(periods: range, ttl: int) -> set[int]:
    """When the buckets written in these periods expire (EXPIRETIME): the period's end plus the TTL."""
    return {(p + 1) * JOIN_PERIOD_S + ttl for p in periods}


async def old_layout_bytes(store: Store, records: list[dict]) -> float:
    """MEMORY USAGE per record of the previous layout (one ``score:<record_id>`` string each), for the report."""
    base, ttl = store.base("m", "1"), store.settings.label_ttl_days * 86400
    keys = [f"{base}:score:{r['record_id']}" for r in records[:200]]
    pipe = store.redis.pipeline(transaction=False)
    for key, r in zip(keys, records):
        pipe.set(key, f"{r['ref_date'][:7]}|{round(r['score'] / store.settings.resolution)}", ex=ttl)
    for key in keys:
        pipe.memory_usage(key)
    used = (await pipe.execute())[len(keys):]
    await store.redis.delete(*keys)
    return sum(used) / len(keys)


async def test_the_join_buffer_is_compact_and_joins_each_record_once(settings):
    records = dataset()
    n = len(records)
    early = records[-EARLY:]                   # the second month's last records: outcomes first
    late = records[:-EARLY]
    store = Store.connect(settings)
    try:
        batches = BatchProcessor(store, DeadLetters(), "e1")
        outcomes = OutcomeProcessor(store, DeadLetters())
        ttl = settings.label_ttl_days * 86400
        first_period = await redis_period(store)

        # Outcomes before their records: they wait in this period's pending buckets, each expiring at
        # the period's end plus the TTL (a period or two, if the test runs across a boundary).
        got = await process_outcomes(outcomes, outcome_messages(early))
        assert (got["pending"], got["joined"], got["duplicates"]) == (EARLY, 0, 0)
        pending_keys = await keys_of(store, "pending:[0-9]*")
        assert 0 < len(pending_keys) <= 2 * JOIN_BUCKETS
        for key in pending_keys:
            assert await store.redis.type(key) == b"hash"
            assert await store.redis.expiretime(key) in deadlines(range(first_period, first_period + 2), ttl)
        assert sum(int(v) for v in (await store.redis.hgetall(f"{store.base('m', '1')}:pending:periods")).values()) \
            == EARLY

        for batch in chunks(record_messages(records), 10):
            await batches.process(batch)
        labelled_early = sum(r["target"] for r in early)
        counts = [await store.counts("m", "1", m) for m in MONTHS]
        assert counts[0] == {"n": PER_MONTH, "bad": 0, "good": 0, "unlabeled": PER_MONTH}
        assert counts[1] == {"n": PER_MONTH, "bad": labelled_early, "good": EARLY - labelled_early,
                             "unlabeled": PER_MONTH - EARLY}
        assert await keys_of(store, "pending:*") == []          # every pending outcome was joined

        # (a) no key per record; (b) compact hashes of the write period, each with a fixed expiry;
        # (c) small per record.
        assert await keys_of(store, "score:*") == []
        join_keys = await keys_of(store, "join:*")
        periods = range(first_period, await redis_period(store) + 1)
        per_period = {p: [k for k in join_keys if k.decode().split(":join:")[1].startswith(f"{p}:")] for p in periods}
        assert sum(map(len, per_period.values())) == len(join_keys)
        assert all(len(keys) <= JOIN_BUCKETS for keys in per_period.values())
        pipe = store.redis.pipeline(transaction=False)
        for key in join_keys:
            pipe.object("encoding", key)
            pipe.expiretime(key)
            pipe.memory_usage(key)
            pipe.hlen(key)
        replies = await pipe.execute()
        encodings, ttls, usage, fields = replies[0::4], replies[1::4], replies[2::4], replies[3::4]
        assert set(encodings) == {b"listpack"}
        assert set(ttls) <= deadlines(periods, ttl)
        assert sum(fields) == n
        first, bins = records[0], store.hist_bytes // 8
        kept = await store.redis.hget(f"{store.base('m', '1')}:join:{first_period}:{join_bucket(first['record_id'])}",
                                      first["record_id"])
        score_bin = round(first["score"] / settings.resolution)
        assert int(kept) == join_value(MONTHS[0], score_bin, bins)
        assert join_month_bin(int(kept), bins) == (MONTHS[0], score_bin)
        new_bytes = sum(usage) / n
        old_bytes = await old_layout_bytes(store, records)
        print(f"\njoin buffer, {n} waiting records over {len(MONTHS)} months in {len(join_keys)} keys: "
              f"{new_bytes:.1f} bytes per record by MEMORY USAGE (previous layout: {old_bytes:.1f} per record, "
              f"plus ~64 of key and expiry dictionaries)")
        assert new_bytes < 60

        # (d) the outcomes of the others join them once, each in its record's month.
        got = await process_outcomes(outcomes, outcome_messages(late))
        assert (got["joined"], got["pending"], got["duplicates"]) == (len(late), 0, 0)
        for month in MONTHS:
            month_records = [r for r in records if r["ref_date"].startswith(month)]
            bad = sum(r["target"] for r in month_records)
            assert await store.counts("m", "1", month) == {"n": PER_MONTH, "bad": bad, "good": PER_MONTH - bad,
                                                           "unlabeled": 0}
            hists = (await store.histograms("m", "1", [month]))[month]
            assert hists.pos == ScoreHistogram.from_scores([r["score"] for r in month_records if r["target"] == 1])
            assert hists.neg == ScoreHistogram.from_scores([r["score"] for r in month_records if r["target"] == 0])
            assert hists.unlabeled.n == 0

        # A second round of every outcome: all duplicates, nothing moves.
        before = [await store.counts("m", "1", m) for m in MONTHS]
        got = await process_outcomes(outcomes, outcome_messages(records))
        assert (got["joined"], got["pending"], got["duplicates"]) == (0, 0, n)
        assert [await store.counts("m", "1", m) for m in MONTHS] == before
        assert await outcome_counters(store, "m", "1") == {"joined": len(late), "pending": EARLY,
                                                           "pending_joined": EARLY, "duplicates": n, "orphans": 0}
        assert await keys_of(store, "pending:*") == []
        for key in await keys_of(store, "join:*"):
            assert await store.redis.expiretime(key) in deadlines(periods, ttl)
    finally:
        await store.close()


async def test_a_zero_ttl_keeps_no_join_buffer(settings):
    settings = settings.model_copy(update={"label_ttl_days": 0})
    store = Store.connect(settings)
    try:
        records = [{"record_id": f"r{i}", "model": "m", "ref_date": "2024-05-10", "score": 0.5, "target": 1}
                   for i in range(10)]
        await BatchProcessor(store, DeadLetters(), "e1").process(record_messages(records, per_message=5))
        assert await keys_of(store, "join:*") == []
        assert (await store.counts("m", "1", "2024-05"))["unlabeled"] == 10
        # Outcomes find nothing to join: they wait (a day), as orphans.
        got = await OutcomeProcessor(store, DeadLetters()).process(outcome_messages(records))
        assert (got["joined"], got["pending"]) == (0, 10)
        assert (await store.counts("m", "1", "2024-05"))["unlabeled"] == 10
        period = await redis_period(store)
        for key in await keys_of(store, "pending:*"):
            assert await store.redis.expiretime(key) in deadlines(range(period - 1, period + 1), 86400)
    finally:
        await store.close()


def same_bucket_ids(n: int) -> list[str]:
    """``n`` record ids that share one join bucket."""
    by_bucket: dict[int, list[str]] = {}
    for i in range(100_000):
        ids = by_bucket.setdefault(join_bucket(f"t{i}"), [])
        ids.append(f"t{i}")
        if len(ids) == n:
            return ids
    raise AssertionError("unreachable")


async def test_a_trickle_does_not_keep_a_bucket_alive(settings):
    store = Store.connect(settings)
    try:
        ttl = settings.label_ttl_days * 86400
        first, second, third, fourth = same_bucket_ids(4)
        bucket = join_bucket(first)
        batches, outcomes = BatchProcessor(store, DeadLetters(), "e1"), OutcomeProcessor(store, DeadLetters())
        rec = {"model": "m", "ref_date": "2024-05-10", "score": 0.5, "target": None}
        await batches.process(record_messages([{**rec, "record_id": first}]))
        await outcomes.process(outcome_messages([{"record_id": third, "target": 1}]))
        period = await redis_period(store)
        base = store.base("m", "1")
        join_key, pending_key = f"{base}:join:{period}:{bucket}", f"{base}:pending:{period}:{bucket}"
        expiry = {key: await store.redis.expiretime(key) for key in (join_key, pending_key, f"{base}:pending:periods")}
        assert set(expiry.values()) == deadlines(range(period, period + 1), ttl)
        await asyncio.sleep(1.1)  # a later write, a second later by Redis's clock
        await batches.process([RawMessage("records", 0, 1, orjson.dumps({**rec, "record_id": second}))])
        await outcomes.process(outcome_messages([{"record_id": fourth, "target": 0}]))
        if await redis_period(store) == period:  # else the writes went to the next period's buckets
            assert {key: await store.redis.expiretime(key) for key in expiry} == expiry
            assert await store.redis.hlen(join_key) == 2 and await store.redis.hlen(pending_key) == 2
    finally:
        await store.close()


async def move_field(store: Store, source: str, target: str, field: str, expire_at: int) -> None:
    """Move a buffer entry to another period's bucket, as if it had been written then."""
    value = await store.redis.hget(source, field)
    pipe = store.redis.pipeline(transaction=True)
    pipe.hdel(source, field)
    pipe.hset(target, field, value)
    pipe.expireat(target, expire_at)
    await pipe.execute()


async def test_entries_of_older_periods_join_and_expired_ones_are_forgotten(settings):
    store = Store.connect(settings)
    try:
        ttl = settings.label_ttl_days * 86400
        base = store.base("m", "1")
        batches, outcomes = BatchProcessor(store, DeadLetters(), "e1"), OutcomeProcessor(store, DeadLetters())
        rec = {"model": "m", "ref_date": "2024-05-10", "score": 0.25, "target": None}
        old_record, early, expired = "old-record", "early-outcome", "expired-outcome"
        periods_key = f"{base}:pending:periods"

        # A record written two periods ago (its bucket is older than the current one) still joins.
        await batches.process(record_messages([{**rec, "record_id": old_record}]))
        period = await redis_period(store)
        bucket = join_bucket(old_record)
        older = period - 2
        await move_field(store, f"{base}:join:{period}:{bucket}", f"{base}:join:{older}:{bucket}", old_record,
                         (older + 1) * JOIN_PERIOD_S + ttl)
        got = await outcomes.process(outcome_messages([{"record_id": old_record, "target": 1}]))
        assert (got["joined"], got["pending"]) == (1, 0)
        assert await store.counts("m", "1", "2024-05") == {"n": 1, "bad": 1, "good": 0, "unlabeled": 0}
        assert await store.redis.hget(f"{base}:join:{older}:{bucket}", old_record) == b"j"

        # An outcome waiting since three periods ago: a second one is a duplicate; its record joins it.
        # One waiting since long expired (its bucket is gone): forgotten, its record stays unlabelled.
        await outcomes.process(outcome_messages([{"record_id": early, "target": 0},
                                                 {"record_id": expired, "target": 1}]))
        for rid, back in ((early, 3), (expired, 30)):
            moved = period - back
            await move_field(store, f"{base}:pending:{period}:{join_bucket(rid)}",
                             f"{base}:pending:{moved}:{join_bucket(rid)}", rid, (moved + 1) * JOIN_PERIOD_S + ttl)
            await store.redis.hincrby(periods_key, period, -1)
            await store.redis.hincrby(periods_key, moved, 1)
        await store.redis.hdel(periods_key, period)
        got = await outcomes.process(outcome_messages([{"record_id": early, "target": 1}]))
        assert (got["joined"], got["pending"], got["duplicates"]) == (0, 0, 1)
        assert await store.redis.hgetall(periods_key) == {str(period - 3).encode(): b"1"}  # the expired: forgotten
        await batches.process([RawMessage("records", 0, 1, orjson.dumps(
            [{**rec, "record_id": early}, {**rec, "record_id": expired}]))])
        assert await store.counts("m", "1", "2024-05") == {"n": 3, "bad": 1, "good": 1, "unlabeled": 1}
        assert await store.redis.exists(periods_key) == 0
        assert await outcome_counters(store, "m", "1") == {"joined": 1, "pending": 2, "pending_joined": 1,
                                                           "duplicates": 1, "orphans": 1}
    finally:
        await store.close()
