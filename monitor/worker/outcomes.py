"""Delayed labels: an outcome moves its record from the unlabelled histogram to its label's.

An outcome ``{record_id, model, model_version, target, observed_at}`` arrives on the outcomes
topic, often months after the score. The batch script keeps each unlabelled record's month and bin
(one integer, ``store.join_value``) in the join bucket of the period it was written in, the hash
``<base>:join:<period>:<bucket>`` (field record_id, ``<bucket> = store.join_bucket(record_id)``,
``<period> = store.join_period(Redis time)``), which expires at its period's end plus
``MONITOR_LABEL_TTL_DAYS``. The outcome script probes the outcome's bucket in the live periods, newest
first (at most ``ceil(TTL / JOIN_PERIOD_S) + 1`` of them, whatever the model's months), and moves one
count, in the record's month, from ``unlabeled`` to ``bad`` or ``good``; the field becomes ``j``. An
outcome that arrives before its record waits in ``<base>:pending:<period>:<bucket>`` (field record_id ->
target, same expiry; ``<base>:pending:periods`` counts them per period, so that the batch script
probes only the periods that hold some) and is applied when the record comes. A second outcome for a
record changes nothing (counted as a duplicate); outcomes whose record never came are orphans. A batch
is applied in script calls of at most ``OUTCOMES_PER_CALL`` outcomes, each O(1) per outcome. The
scripts build no key name: the store declares the buckets, pending periods and months it believes
current and calls again when the script says otherwise (:mod:`monitor.state.joins`).

>>> decode_outcomes(b'{"record_id": "r1", "model": "m", "target": 1}')[0].target
1
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from monitor.errors import InvalidRecord
from monitor.retry import retry_forever
from monitor.state import Store, join_bucket, month_changes
from monitor.worker.pipeline import DeadLetter, KafkaMessage, OnChange


class Outcome(BaseModel):
    """The observed label of a scored record."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    record_id: str = Field(min_length=1, max_length=256)
    model: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    model_version: str = Field("1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    target: Literal[0, 1] = Field(validation_alias=AliasChoices("target", "TARGET"))
    observed_at: dt.datetime | dt.date | None = None


_outcomes = TypeAdapter(list[Outcome])


def decode_outcomes(value: bytes | None) -> list[Outcome]:
    """One JSON outcome or an array of them; InvalidRecord with the reason otherwise."""
    try:
        payload = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc}") from None
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or not payload:
        raise InvalidRecord("expected a JSON outcome object or a non-empty array of them")
    try:
        return _outcomes.validate_python(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRecord(f"outcome {where}: {first['msg']}") from None


OUTCOMES_PER_CALL = 500
"""Outcomes per script call at most. A call costs O(1) per outcome: a few bucket probes and its
month's counts, the dearest part being a month's first label, whose histograms (80 KB each at the
default resolution) the call creates. 500 keeps every call well under Redis's script time limit
(5 s): ~70 ms for the longest at 1,000 months x 12,000 outcomes, against ~160 ms with 1,000 (``python
-m monitor.bench.joins``). A batch of more outcomes takes several calls (a round trip each)."""

class OutcomeProcessor:
    """Applies batches of outcome messages; idempotent per record, so redelivery is harmless."""

    def __init__(self, store: Store, dead_letter: DeadLetter, on_change: OnChange | None = None):
        self.store = store
        self.dead_letter = dead_letter
        self.on_change = on_change

    async def process(self, messages: Sequence[KafkaMessage]) -> dict[str, int]:
        groups: dict[tuple[str, str], list] = {}
        totals = {"joined": 0, "pending": 0, "duplicates": 0, "dead_lettered": 0}
        for msg in messages:
            try:
                outcomes = decode_outcomes(msg.value)
            except InvalidRecord as exc:
                await self.dead_letter(msg, str(exc))
                totals["dead_lettered"] += 1
                continue
            for o in outcomes:
                groups.setdefault((o.model, o.model_version), []).extend(
                    (o.record_id, str(o.target), join_bucket(o.record_id)))
        ttl = max(self.store.settings.label_ttl_days, 1) * 86400
        for (model, version), triples in groups.items():
            for start in range(0, len(triples), 3 * OUTCOMES_PER_CALL):
                chunk = triples[start:start + 3 * OUTCOMES_PER_CALL]
                joined, pending, duplicates, *changes = await retry_forever(
                    f"outcomes of {model}:{version}", self.store.apply_outcomes, model, version, ttl, chunk)
                if changes and self.on_change is not None:
                    await self.on_change(model, version, month_changes(changes))
                totals["joined"] += joined
                totals["pending"] += pending
                totals["duplicates"] += duplicates
        return totals


async def outcome_counters(store: Store, model: str, version: str) -> dict[str, int]:
    """joined, pending (stored before their record), pending_joined, duplicates, orphans so far."""
    c = await store.outcome_counters_raw(model, version)
    out = {name: c.get(name, 0) for name in ("joined", "pending", "pending_joined", "duplicates")}
    out["orphans"] = out["pending"] - out["pending_joined"]
    return out
