"""Fold a batch of raw Kafka messages into the Redis state, exactly once.

Knows nothing of faust: the agent hands it messages, so the same code serves the faust
worker, tests and benchmarks. Invalid messages go to the dead-letter callback with the reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Protocol

import numpy as np

from monitor.bounds import (
    CardinalityGate,
    CardinalityLimits,
    OutOfBounds,
    RecordBounds,
    check_bounds,
    key_months,
    utc_today,
)
from monitor.errors import InvalidRecord, MonitorError, StateLost
from monitor.retry import retry_forever
from monitor.state import (
    LABELS,
    BatchWrite,
    EpochMismatch,
    MonthChange,
    MonthIncrements,
    OffsetConflict,
    Store,
    StoredCardinality,
)
from monitor.stats import FeatureCounter, FeatureProfile
from monitor.stats.features import DEFAULT_MAX_CATEGORIES
from monitor.worker.fastpath import LABEL_UNLABELED, FastRecord, decode_tiered
from monitor.worker.sources import LogProbe, Probe, belongs, fingerprint, source_reset_event

MAX_CONFLICT_RETRIES = 5
log = logging.getLogger("monitor.worker.pipeline")


class KafkaMessage(Protocol):
    """What the processors read of a message: faust's own messages have these attributes, so the
    agents hand them over as they are (no copy per message)."""

    # Read-only members: a frozen RawMessage fits as well as faust's messages.
    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def key(self) -> bytes | None: ...


@dataclass(frozen=True)
class RawMessage:
    """One message as read from Kafka (tests, benchmarks, replays: a :class:`KafkaMessage`)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None


def offset_field(msg: KafkaMessage) -> str:
    """The message's field in the model's offsets hash: its ``topic:partition``.

    >>> offset_field(RawMessage("credit-records", 3, 41, b"{}"))
    'credit-records:3'
    """
    return f"{msg.topic}:{msg.partition}"


@dataclass
class BatchResult:
    records: int = 0
    dead_lettered: int = 0
    duplicates_skipped: int = 0

    def __iadd__(self, other: "BatchResult") -> "BatchResult":
        self.records += other.records
        self.dead_lettered += other.dead_lettered
        self.duplicates_skipped += other.duplicates_skipped
        return self


DeadLetter = Callable[[KafkaMessage, str], Awaitable[None]]
OnChange = Callable[[str, str, list[MonthChange]], Awaitable[None]]
"""Told (model, version, months' counts after a write) after each write to a model's counts."""


def score_bin(score: float, resolution: float) -> int:
    """The histogram bin of a score: the nearest multiple of the resolution (ties to even).

    >>> score_bin(0.12345, 1e-4), score_bin(1.0, 1e-4), score_bin(0.0, 1e-4)
    (1234, 10000, 0)
    """
    # Same arithmetic as ScoreHistogram (np.rint(score / resolution)): Python's round is half-to-even too.
    return round(score / resolution)


@dataclass
class PartitionRecords:
    """The records of one (model, version) read from one partition in a batch, in offset order."""

    offsets: list[int] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    months: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)
    features: list[dict | None] = field(default_factory=list)

    def sort(self) -> None:
        """Offset order (a redelivery after a seek can interleave): the applied ones become a prefix."""
        if any(a > b for a, b in pairwise(self.offsets)):
            order = sorted(range(len(self.offsets)), key=self.offsets.__getitem__)
            for name in ("offsets", "dates", "months", "labels", "scores", "record_ids", "features"):
                values = getattr(self, name)
                setattr(self, name, [values[i] for i in order])

    def add(self, offset: int, record: FastRecord) -> None:
        self.offsets.append(offset)
        self.dates.append(record[2])
        self.months.append(record[3])
        self.labels.append(record[4])
        self.scores.append(record[5])
        self.record_ids.append(record[6])
        self.features.append(record[7])


RECORDS_PER_TURN = 250
"""Records a batch decodes, or folds into writes of many models, between two turns of the event loop
(~10 ms of CPU): a batch spread over 1,000 models is ~1,000 writes, and done in one go it held the loop
for most of a second; at 1,000 records a turn, with the metrics thread taking its share of the GIL, the
loop lag p99 was 100-145 ms, at 250 29 ms (docs/benchmarks.md "Scale"), for ~15 % of the fold's rate."""


class LoopTurns:
    """Gives the event loop a turn every ``every`` records of work (``await turns.add(n)``)."""

    def __init__(self, every: int = RECORDS_PER_TURN):
        self.every, self.since = every, 0

    async def add(self, records: int) -> None:
        self.since += records
        if self.since >= self.every:
            self.since = 0
            await asyncio.sleep(0)


MAX_RECORDS_PER_CALL = 20_000
"""Records one batch script call applies at most (a single larger message is applied whole): the
call stays in the tens of milliseconds, far under Redis's 5 s busy-reply-threshold."""

Span = tuple[int, int]
"""A slice ``[lo, hi)`` of a :class:`PartitionRecords`, made of whole messages."""


def applied_prefix(known: dict[str, int | None], by_field: dict[str, PartitionRecords]) -> dict[str, int]:
    """Per partition, how many of its (sorted) records are applied already: offsets grow within a
    partition, so those up to the last applied offset (``known``) are a prefix.

    >>> part = PartitionRecords(); part.offsets = [3, 4, 4, 7]
    >>> applied_prefix({"t:0": 4, "t:1": None}, {"t:0": part, "t:1": part})
    {'t:0': 3, 't:1': 0}
    """
    return {f: (0 if (last := known[f]) is None else bisect_right(part.offsets, last)) for f, part in by_field.items()}


@dataclass
class PlannedWrite:
    """A model's write of a batch as one call (:meth:`BatchProcessor._one_call`): what it applies and
    skips."""

    write: BatchWrite
    records: int
    total: int  # the group's records, applied or not


def plan_calls(offsets_by_field: dict[str, list[int]], starts: dict[str, int],
               limit: int = MAX_RECORDS_PER_CALL) -> list[dict[str, Span]]:
    """Split the records past ``starts`` into script calls of at most ``limit`` records each,
    never splitting a message (its records share an offset, and one offset moves with them).

    >>> plan_calls({"t:0": [1, 2, 2, 2, 3], "t:1": [7, 8]}, {"t:0": 0, "t:1": 0}, limit=3)
    [{'t:0': (0, 4)}, {'t:0': (4, 5), 't:1': (0, 2)}]
    >>> plan_calls({"t:0": [1, 2]}, {"t:0": 2})
    []
    """
    calls, call, size = [], {}, 0
    for name, offsets in offsets_by_field.items():
        lo = starts[name]
        while lo < len(offsets):
            hi = min(len(offsets), lo + limit - size)
            while hi < len(offsets) and offsets[hi] == offsets[hi - 1]:
                hi += 1
            call[name] = (lo, hi)
            size += hi - lo
            lo = hi
            if size >= limit:
                calls.append(call)
                call, size = {}, 0
    if call:
        calls.append(call)
    return calls


def fold(parts: list[tuple[PartitionRecords, int, int]], resolution: float, keep_unlabeled: bool = False,
         profile: FeatureProfile | None = None, max_unseen: int = DEFAULT_MAX_CATEGORIES,
         ) -> tuple[dict[str, MonthIncrements], str, int]:
    """Bin counts per month and label of the records ``[lo, hi)`` of each part (vectorised).

    With ``keep_unlabeled`` the unlabelled records are also listed one by one (id, bin), for
    the join with their outcomes; with a feature ``profile``, the features are counted in its
    buckets (at most ``max_unseen`` unseen category names per feature, the rest as ``__other__``).
    Returns the increments, the latest ref_date and the number of records folded.
    """
    months, labels, scores, ids, features, latest, n = [], [], [], [], [], "", 0
    for part, lo, hi in parts:
        if lo < hi:
            months += part.months[lo:hi]
            labels += part.labels[lo:hi]
            scores += part.scores[lo:hi]
            ids += part.record_ids[lo:hi]
            features += part.features[lo:hi]
            latest = max(latest, max(part.dates[lo:hi]))
            n += hi - lo
    if not n:
        return {}, latest, 0
    names = sorted(set(months))
    index = {m: i for i, m in enumerate(names)}
    n_bins = int(round(1 / resolution)) + 1
    bins = np.rint(np.asarray(scores) / resolution).astype(np.int64)
    month_index = np.fromiter((index[m] for m in months), np.int64, n)
    label_index = np.asarray(labels, dtype=np.int64)
    waiting = (label_index == LABEL_UNLABELED) if keep_unlabeled else np.zeros(n, dtype=bool)
    keys = (month_index * 3 + label_index) * n_bins + bins
    unique, counts = np.unique(keys[~waiting], return_counts=True)
    month_label, bin_of = np.divmod(unique, n_bins)
    out = {}
    for i, month in enumerate(names):
        inc = MonthIncrements()
        for li, label in enumerate(LABELS):
            mask = month_label == i * 3 + li
            inc.bins[label] = (bin_of[mask], counts[mask].astype(np.int64))
        if keep_unlabeled:
            rows = np.flatnonzero(waiting & (month_index == i))
            inc.waiting = ([ids[r] for r in rows], bins[rows])
        if profile is not None:
            inc.features, inc.unseen_features = count_features(
                profile, [features[r] for r in np.flatnonzero(month_index == i)], max_unseen)
        out[month] = inc
    return out, latest, n


def count_features(profile: FeatureProfile, records_features: list[dict | None],
                   max_unseen: int = DEFAULT_MAX_CATEGORIES) -> tuple[dict[str, int], dict[str, int]]:
    """Bucket counts of the profile's features over these records (a record without features
    counts as missing in each): the profile's buckets, and the unseen category names."""
    values = {name: [(f or {}).get(name) for f in records_features] for name in profile.features}
    counter = FeatureCounter(profile, max_unseen)
    counter.update_many(values)
    return counter.split_redis_fields()


PROFILE_REFRESH_S = 30.0
"""How long the worker trusts its copy of a model's feature profile (a new reference shows up then)."""


class BatchProcessor:
    """Decode, validate and apply batches; remembers the offsets it applied per model."""

    def __init__(self, store: Store, dead_letter: DeadLetter, epoch: str, on_change: OnChange | None = None,
                 today: Callable[[], dt.date] = utc_today, probe: LogProbe | None = None):
        self.store = store
        self.dead_letter = dead_letter
        self.epoch = epoch
        self.on_change = on_change
        self.resolution = store.settings.resolution
        # (model, version) -> {offset field: last applied offset}; a cache of Redis, checked
        # by the batch script, so a stale entry costs a retry, never a wrong count.
        self._applied: dict[tuple[str, str], dict[str, int | None]] = {}
        self._profiles: dict[tuple[str, str], tuple[float, FeatureProfile | None]] = {}
        # Reads the message at a stored offset from the broker (monitor.worker.sources); None: made on
        # first need from the store's settings.
        self.probe = probe
        # (model, version, offset field, stored offset) found to belong to the partition's log:
        # checked once until the partitions are reassigned (forget_offsets).
        self._verified: set[tuple[str, str, str, int]] = set()
        # Bounded input (monitor.bounds). The models, months and references known to be stored: a
        # cache that only grows (so do they, but for a rebuilt model's months), filled from Redis for
        # the new ones each batch brings and from what it admits.
        self.today = today
        self.bounds = RecordBounds.from_settings(store.settings)
        self.limits = CardinalityLimits.from_settings(store.settings)
        self._known_models: set[tuple[str, str]] = set()
        self._known_months: dict[tuple[str, str], set[str]] = {}
        self._referenced: set[tuple[str, str]] = set()

    async def profile(self, model: str, version: str) -> FeatureProfile | None:
        fetched_at, profile = self._profiles.get((model, version), (-PROFILE_REFRESH_S, None))
        if time.monotonic() - fetched_at >= PROFILE_REFRESH_S:
            profile = await self.store.feature_profile(model, version)
            self._profiles[(model, version)] = (time.monotonic(), profile)
        return profile

    async def process(self, messages: Sequence[KafkaMessage]) -> BatchResult:
        """Dead-letter the invalid and out-of-bounds messages, then apply the records (retrying
        while Redis is away)."""
        result = BatchResult()
        groups: dict[tuple[str, str], dict[str, PartitionRecords]] = {}
        seen: dict[tuple[str, int], KafkaMessage] = {}  # (offset field, offset) -> message
        decoded = []
        today = self.today()
        turns = LoopTurns()  # a batch of 25k records decodes and groups in ~0.2 s: not in one go
        for msg in messages:
            field_name = offset_field(msg)
            if (field_name, msg.offset) in seen:  # delivered twice within one batch
                result.duplicates_skipped += 1
                continue
            seen[(field_name, msg.offset)] = msg
            try:
                records, values_within = decode_tiered(msg.value)
                check_bounds(records, self.bounds, today, values_within)
            except InvalidRecord as exc:
                await self.dead_letter(msg, str(exc))
                result.dead_lettered += 1
                continue
            decoded.append((msg, records, key_months(records)))
            await turns.add(len(records))
        gate = await retry_forever("stored models and months", self._gate, decoded)
        for msg, records, shape in decoded:
            try:
                gate.admit(records, shape)
            except OutOfBounds as exc:
                await self.dead_letter(msg, str(exc))
                result.dead_lettered += 1
                continue
            field_name = offset_field(msg)
            for record in records:
                by_field = groups.get(record[:2]) or groups.setdefault(record[:2], {})
                part = by_field.get(field_name) or by_field.setdefault(field_name, PartitionRecords())
                part.add(msg.offset, record)
            await turns.add(len(records))
        for by_field in groups.values():
            for part in by_field.values():
                part.sort()
        result += await self._apply_groups(groups, seen)
        await retry_forever("worker counters", self._count, result)
        return result

    async def _apply_groups(self, groups: dict[tuple[str, str], dict[str, PartitionRecords]],
                            messages: dict[tuple[str, int], KafkaMessage]) -> BatchResult:
        """Apply every model's records: the models whose write is one plain call (offsets known and
        checked, records within one call) together in one round trip (a batch of records spread over
        1,000 models is 1,000 calls: one by one, their round trips were most of the fold's time); the
        others, and those the shared round trip refused (another worker moved an offset, an epoch
        changed, ...), one by one by :meth:`_apply_group`, which handles each case."""
        result = BatchResult()
        alone: list[tuple[str, str]] = []
        together: list[tuple[tuple[str, str], PlannedWrite]] = []
        records = 0
        for key, by_field in groups.items():
            call = await retry_forever(f"batch of {key[0]}:{key[1]}", self._one_call, key, by_field, messages)
            if call is None:
                alone.append(key)
                continue
            together.append((key, call))
            records += call.records
            if records >= RECORDS_PER_TURN:  # the round trip is the loop's turn
                result += await self._write_together(together, alone)
                together, records = [], 0
        result += await self._write_together(together, alone)
        for model, version in alone:
            result += await retry_forever(f"batch of {model}:{version}", self._apply_group, model, version,
                                          groups[(model, version)], messages)
        return result

    async def _write_together(self, together: list[tuple[tuple[str, str], PlannedWrite]],
                              alone: list[tuple[str, str]]) -> BatchResult:
        """Write these models' calls in one round trip; those refused are added to ``alone``."""
        result = BatchResult()
        if not together:
            return result
        replies = await retry_forever(f"batch of {len(together)} models", self.store.apply_batches,
                                      [call.write for _, call in together])
        for (key, call), reply in zip(together, replies, strict=True):
            if isinstance(reply, Exception):
                if isinstance(reply, OffsetConflict):
                    self._forget_moved_offsets(key, reply)
                alone.append(key)
                continue
            if (known := self._applied.get(key)) is not None:  # None: forgotten meanwhile (a rebalance)
                known.update({f: new for f, (_, new, _) in call.write.offsets.items()})
            result += BatchResult(records=call.records, duplicates_skipped=call.total - call.records)
            if self.on_change is not None:  # written: a Redis blip here must not make the batch run again
                await retry_forever(f"checkpoint of {key[0]}:{key[1]}", self.on_change, *key, reply)
        return result

    async def _one_call(self, key: tuple[str, str], by_field: dict[str, PartitionRecords],
                        messages: dict[tuple[str, int], KafkaMessage]) -> PlannedWrite | None:
        """The model's write when it is one plain call: every partition's offset known and checked, its
        new records within one call; else None (:meth:`_apply_group` then)."""
        known = self._applied.get(key)
        if known is None or by_field.keys() - known.keys():
            return None
        starts = applied_prefix(known, by_field)
        if self._unverified(key, known, starts):
            return None
        calls = plan_calls({f: part.offsets for f, part in by_field.items()}, starts)
        if len(calls) != 1:
            return None
        write, n = await self._write(key, by_field, calls[0], known, messages)
        return PlannedWrite(write, n, sum(len(part.offsets) for part in by_field.values()))

    async def _write(self, key: tuple[str, str], by_field: dict[str, PartitionRecords], call: dict[str, Span],
                     known: dict[str, int | None], messages: dict[tuple[str, int], KafkaMessage]) -> tuple[BatchWrite, int]:
        """One script call's write (folded increments, offsets moved from ``known``, fingerprints) and
        its number of records."""
        profile = await self.profile(*key)
        months, latest, n = fold([(by_field[f], lo, hi) for f, (lo, hi) in call.items()], self.resolution,
                                 keep_unlabeled=self.store.settings.label_ttl_days > 0, profile=profile,
                                 max_unseen=self.store.settings.max_unseen_categories)
        moves = {f: (known[f], by_field[f].offsets[hi - 1], max(by_field[f].dates[lo:hi])) for f, (lo, hi) in call.items()}
        prints = {f: fingerprint(messages[(f, new)].key, messages[(f, new)].value) for f, (_, new, _) in moves.items()}
        return BatchWrite(*key, moves, months, latest, self.epoch, prints), n

    async def _gate(self, decoded: list[tuple[KafkaMessage, list[FastRecord], set]]) -> CardinalityGate:
        """The bounds on models and months for this batch: Redis is read only for the models and
        months the batch brings that this worker does not know to be stored (none, mostly).

        Several workers admit against what Redis held when each read it, so while they race to
        add new months or models the caps can be overshot by what the others admit in that moment:
        at most (workers - 1) x (new months or models of one batch).
        """
        limits = self.limits
        models: set[tuple[str, str]] = set()
        months: dict[tuple[str, str], set[str]] = {}
        references: set[tuple[str, str]] = set()
        for _, _, shape in decoded:
            for model, version, month in shape:
                key = (model, version)
                if limits.max_models and key not in self._known_models:
                    models.add(key)
                if limits.require_reference and key not in self._referenced:
                    references.add(key)
                if limits.max_months_per_model and month not in self._known_months.get(key, ()):
                    months.setdefault(key, set()).add(month)
        stored = StoredCardinality(models=0)
        if models or months or references:
            stored = await self.store.stored_cardinality(models, months, references)
            self._known_models |= stored.known_models
            for key, known in stored.known_months.items():
                self._known_months.setdefault(key, set()).update(known)
            self._referenced |= stored.referenced
        return CardinalityGate(limits, stored.models, self._known_models, stored.months, self._known_months,
                               self._referenced)

    async def _count(self, result: BatchResult) -> None:
        await self.store.incr_worker_counters(records=result.records, dead_lettered=result.dead_lettered,
                                              duplicates_skipped=result.duplicates_skipped, batches=1)

    async def _apply_group(self, model: str, version: str, by_field: dict[str, PartitionRecords],
                           messages: dict[tuple[str, int], KafkaMessage]) -> BatchResult:
        """Apply the group's records not applied yet, in calls of at most MAX_RECORDS_PER_CALL records,
        each moving its partitions' offsets with it (so each call is atomic and idempotent).

        ``messages``: the batch's messages by (offset field, offset), for the fingerprints kept with
        the offsets and the check of a stored offset before records are skipped."""
        key = (model, version)
        total = sum(len(part.offsets) for part in by_field.values())
        applied = 0
        for _ in range(MAX_CONFLICT_RETRIES):
            known = self._applied.setdefault(key, {})
            missing = by_field.keys() - known.keys()
            if missing:
                found, offsets = await self.store.stored_offsets(model, version, missing)
                if found not in (None, self.epoch):
                    await self._handle_other_epoch(model, version, found)
                    continue
                known.update(offsets)
            starts = applied_prefix(known, by_field)
            # Records are about to be skipped as applied: only true if the stored offset is of this log.
            unchecked = self._unverified(key, known, starts)
            if unchecked and await self._reset_lost_sources(model, version, unchecked, by_field, messages):
                self._applied.pop(key, None)
                continue
            try:
                for call in plan_calls({f: part.offsets for f, part in by_field.items()}, starts):
                    write, n = await self._write(key, by_field, call, known, messages)
                    changes = await self.store.apply_batch(*key, write.offsets, write.months, write.latest_ref_date,
                                                           self.epoch, write.fingerprints)
                    known.update({f: new for f, (_, new, _) in write.offsets.items()})
                    applied += n
                    if self.on_change is not None:
                        await self.on_change(model, version, changes)
            except EpochMismatch as mismatch:
                await self._handle_other_epoch(model, version, mismatch.found)
                continue
            except OffsetConflict as conflict:
                self._forget_moved_offsets(key, conflict)
                continue
            return BatchResult(records=applied, duplicates_skipped=total - applied)
        raise MonitorError(f"{model}:{version}: offsets kept moving after {MAX_CONFLICT_RETRIES} retries")

    def _unverified(self, key: tuple[str, str], known: dict[str, int | None], starts: dict[str, int]) -> dict[str, int]:
        """The partitions whose records are about to be skipped as applied (``starts``) on a stored offset
        not yet checked to belong to the partition's log: field -> stored offset."""
        return {f: last for f, start in starts.items()  # start > 0: a stored offset, so last is not None
                if start and (last := known[f]) is not None and (*key, f, last) not in self._verified}

    def _forget_moved_offsets(self, key: tuple[str, str], conflict: OffsetConflict) -> None:
        """Another worker applied some of these offsets: forget them, to reread them and filter again;
        unless Redis holds less than this worker wrote (offsets only grow: it lost recent writes)."""
        expected = self._applied.get(key, {}).get(conflict.offset_field)
        if expected is not None and (conflict.stored is None or conflict.stored < expected):
            raise StateLost(f"{key[0]}:{key[1]} {conflict.offset_field}: Redis holds offset "
                            f"{conflict.stored} but this worker applied {expected}", rebuild=True) from None
        self._applied.pop(key, None)

    async def _reset_lost_sources(self, model: str, version: str, stored: dict[str, int],
                                  by_field: dict[str, PartitionRecords],
                                  messages: dict[tuple[str, int], KafkaMessage]) -> bool:
        """Check that each partition's stored offset still belongs to its log (the message there
        is the one applied); forget those that do not (a new lifetime of the partition: source
        reset, alert event). Returns whether any stored offset changed, so the batch rereads them.
        """
        changed, checks, resets = False, 0, 0
        try:
            for field_name, offset in stored.items():
                held = await self.store.stored_fingerprint(model, version, field_name)
                in_batch = messages.get((field_name, offset))
                if in_batch is not None:  # redelivered with the batch: no need to ask the broker
                    probe = Probe("found", fingerprint(in_batch.key, in_batch.value))
                else:
                    if self.probe is None:
                        self.probe = LogProbe(self.store.settings)
                    topic, _, partition = field_name.rpartition(":")
                    probe = await self.probe.message_at(topic, int(partition), offset)
                checks += 1
                if belongs(held, probe):
                    self._verified.add((model, version, field_name, offset))
                    continue
                part = by_field[field_name]
                event = source_reset_event(model, version, field_name, offset, probe, max(part.months),
                                           len(part.offsets))
                changed = True
                if await self.store.reset_source(model, version, field_name, offset, held,
                                                 event.model_dump_json().encode()):
                    resets += 1
                    log.warning("%s:%s %s: source reset: %s", model, version, field_name, event.message)
        finally:
            if self.probe is not None:
                await self.probe.close()  # rare (after a restart or rebalance): no idle consumer kept
            await self.store.incr_worker_counters(source_checks=checks, source_resets=resets)
        return changed

    async def _handle_other_epoch(self, model: str, version: str, found: str) -> None:
        """The model's state is of another lifetime: ours is stale (StateLost), or it is stale."""
        if await self.store.current_epoch() != self.epoch:
            raise StateLost(f"the Redis state's epoch is no longer {self.epoch}", rebuild=False)
        # We are the new lifetime: what the model holds was written after the loss; drop it.
        log.warning("%s:%s holds state of epoch %s written after a loss; rebuilding it", model, version, found)
        await self.store.adopt_model(model, version, found, self.epoch)
        self._applied.pop((model, version), None)
        self._known_months.pop((model, version), None)  # the adoption dropped them

    def forget_offsets(self) -> None:
        """Drop the offset cache (on partition revocation): the next batch rereads Redis, and
        checks again that stored offsets belong to the partitions' logs before skipping records."""
        self._applied.clear()
        self._verified.clear()
