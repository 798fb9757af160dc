"""Fold a batch of raw Kafka messages into the Redis state, exactly once.

Knows nothing of faust: the agent hands it messages, so the same code serves the faust
worker, tests and benchmarks. Invalid messages go to the dead-letter callback with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from monitor.errors import InvalidRecord
from monitor.schema import ScoredRecord, decode_records
from monitor.store import LABELS, MonthIncrements, OffsetConflict, Store

MAX_CONFLICT_RETRIES = 5


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

    def __init__(self, store: Store, dead_letter: DeadLetter):
        self.store = store
        self.dead_letter = dead_letter
        self.resolution = store.settings.resolution
        # (model, version) -> {offset field: last applied offset}; a cache of Redis, checked
        # by the batch script, so a stale entry costs a retry, never a wrong count.
        self._applied: dict[tuple[str, str], dict[str, int | None]] = {}

    async def process(self, messages: Sequence[RawMessage]) -> BatchResult:
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
            result += await self._apply_group(model, version, items)
        await self.store.incr_worker_counters(records=result.records, dead_lettered=result.dead_lettered,
                                              duplicates_skipped=result.duplicates_skipped, batches=1)
        return result

    async def _apply_group(self, model: str, version: str,
                           items: list[tuple[RawMessage, ScoredRecord]]) -> BatchResult:
        key = (model, version)
        fields = {msg.offset_field for msg, _ in items}
        for _ in range(MAX_CONFLICT_RETRIES):
            known = self._applied.setdefault(key, {})
            missing = fields - known.keys()
            if missing:
                known.update(await self.store.stored_offsets(model, version, missing))
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
                    model, version, {f: (known[f], new) for f, new in new_offsets.items()}, months, latest)
            except OffsetConflict:
                # Another worker applied some of these offsets: reread them and filter again.
                self._applied.pop(key, None)
                continue
            known.update(new_offsets)
            return result
        raise OffsetConflict(f"{model}:{version}: offsets kept moving after {MAX_CONFLICT_RETRIES} retries")

    def forget_offsets(self) -> None:
        """Drop the offset cache (on partition revocation): the next batch rereads Redis."""
        self._applied.clear()
