"""Fold a batch of raw Kafka messages into the Redis state, exactly once.

Knows nothing of faust: the agent hands it messages, so the same code serves the faust
worker, tests and benchmarks. Invalid messages go to the dead-letter callback with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncio
import logging

import redis.exceptions

from monitor.errors import InvalidRecord, StateLost
from monitor.schema import ScoredRecord, decode_records
from monitor.store import LABELS, EpochMismatch, MonthIncrements, OffsetConflict, Store

MAX_CONFLICT_RETRIES = 5
RETRY_FIRST_S, RETRY_MAX_S = 0.1, 5.0
TRANSIENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)
log = logging.getLogger("monitor.pipeline")


async def retry_forever(what: str, call, *args):
    """Await ``call(*args)`` until it succeeds, backing off on lost Redis connections.

    A batch is never dropped: the worker stalls (and says so) while Redis is away, and goes on
    where it was when Redis is back.
    """
    delay = RETRY_FIRST_S
    while True:
        try:
            return await call(*args)
        except TRANSIENT as exc:
            log.warning("%s: Redis unavailable (%s); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX_S, delay * 2)


@dataclass(frozen=True)
class RawMessage:
    """One message as read from Kafka."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None

    @property
    def offset_field(self) -> str:
        return f"{self.topic}:{self.partition}"


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


DeadLetter = Callable[[RawMessage, str], Awaitable[None]]


def score_bin(score: float, resolution: float) -> int:
    """The histogram bin of a score: the nearest multiple of the resolution (ties to even).

    >>> score_bin(0.12345, 1e-4), score_bin(1.0, 1e-4), score_bin(0.0, 1e-4)
    (1234, 10000, 0)
    """
    # Same arithmetic as ScoreHistogram (np.rint(score / resolution)): Python's round is half-to-even too.
    return round(score / resolution)


def label_name(target: int | None) -> str:
    return LABELS[2] if target is None else LABELS[0] if target == 1 else LABELS[1]


class BatchProcessor:
    """Decode, validate and apply batches; remembers the offsets it applied per model."""

    def __init__(self, store: Store, dead_letter: DeadLetter, epoch: str):
        self.store = store
        self.dead_letter = dead_letter
        self.epoch = epoch
        self.resolution = store.settings.resolution
        # (model, version) -> {offset field: last applied offset}; a cache of Redis, checked
        # by the batch script, so a stale entry costs a retry, never a wrong count.
        self._applied: dict[tuple[str, str], dict[str, int | None]] = {}

    async def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        """Dead-letter the invalid messages, then apply the records (retrying while Redis is away)."""
        result = BatchResult()
        groups: dict[tuple[str, str], list[tuple[RawMessage, ScoredRecord]]] = {}
        for msg in messages:
            try:
                records = decode_records(msg.value)
            except InvalidRecord as exc:
                await self.dead_letter(msg, str(exc))
                result.dead_lettered += 1
                continue
            for record in records:
                groups.setdefault((record.model, record.model_version), []).append((msg, record))
        for (model, version), items in groups.items():
            result += await retry_forever(f"batch of {model}:{version}", self._apply_group, model, version, items)
        await retry_forever("worker counters", self._count, result)
        return result

    async def _count(self, result: BatchResult) -> None:
        await self.store.incr_worker_counters(records=result.records, dead_lettered=result.dead_lettered,
                                              duplicates_skipped=result.duplicates_skipped, batches=1)

    async def _apply_group(self, model: str, version: str,
                           items: list[tuple[RawMessage, ScoredRecord]]) -> BatchResult:
        key = (model, version)
        fields = {msg.offset_field for msg, _ in items}
        for _ in range(MAX_CONFLICT_RETRIES):
            known = self._applied.setdefault(key, {})
            missing = fields - known.keys()
            if missing:
                found, offsets = await self.store.stored_offsets(model, version, missing)
                if found not in (None, self.epoch):
                    await self._handle_other_epoch(model, version, found)
                    continue
                known.update(offsets)
            months: dict[str, MonthIncrements] = {}
            new_offsets: dict[str, int] = {}
            latest = ""
            result = BatchResult()
            for msg, record in items:
                stored = known[msg.offset_field]
                if stored is not None and msg.offset <= stored:
                    result.duplicates_skipped += 1
                    continue
                inc = months.get(record.month) or months.setdefault(record.month, MonthIncrements())
                inc.add(label_name(record.target), score_bin(record.score, self.resolution))
                new_offsets[msg.offset_field] = max(new_offsets.get(msg.offset_field, -1), msg.offset)
                latest = max(latest, record.ref_date.isoformat())
                result.records += 1
            if not new_offsets:
                return result
            try:
                await self.store.apply_batch(
                    model, version, {f: (known[f], new) for f, new in new_offsets.items()}, months, latest,
                    self.epoch)
            except EpochMismatch as mismatch:
                await self._handle_other_epoch(model, version, mismatch.found)
                continue
            except OffsetConflict as conflict:
                expected = known[conflict.offset_field]
                if expected is not None and (conflict.stored is None or conflict.stored < expected):
                    # Offsets only grow: one behind what we wrote means Redis lost recent writes.
                    raise StateLost(f"{model}:{version} {conflict.offset_field}: Redis holds offset "
                                    f"{conflict.stored} but this worker applied {expected}", rebuild=True) from None
                # Another worker applied some of these offsets: reread them and filter again.
                self._applied.pop(key, None)
                continue
            known.update(new_offsets)
            return result
        raise OffsetConflict(f"{model}:{version}: offsets kept moving after {MAX_CONFLICT_RETRIES} retries")

    async def _handle_other_epoch(self, model: str, version: str, found: str) -> None:
        """The model's state is of another lifetime: ours is stale (StateLost), or it is stale."""
        if await self.store.current_epoch() != self.epoch:
            raise StateLost(f"the Redis state's epoch is no longer {self.epoch}", rebuild=False)
        # We are the new lifetime: what the model holds was written after the loss; drop it.
        log.warning("%s:%s holds state of epoch %s written after a loss; rebuilding it", model, version, found)
        await self.store.adopt_model(model, version, found, self.epoch)
        self._applied.pop((model, version), None)

    def forget_offsets(self) -> None:
        """Drop the offset cache (on partition revocation): the next batch rereads Redis."""
        self._applied.clear()
