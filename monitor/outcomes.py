"""Delayed labels: an outcome moves its record from the unlabelled histogram to its label's.

An outcome ``{record_id, model, model_version, target, observed_at}`` arrives on the outcomes
topic, often months after the score. The worker keeps each unlabelled record's (month, bin)
in Redis for ``MONITOR_LABEL_TTL_DAYS``; the outcome script finds it and moves one count, in
the record's month, from ``unlabeled`` to ``bad`` or ``good``. An outcome that arrives before
its record waits (same TTL) and is applied when the record comes. A second outcome for a record
changes nothing (counted as a duplicate); outcomes whose record never came are orphans.

>>> decode_outcomes(b'{"record_id": "r1", "model": "m", "target": 1}')[0].target
1
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

import orjson
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from monitor.errors import InvalidRecord
from monitor.pipeline import DeadLetter, OnChange, RawMessage, retry_forever
from monitor.store import ADD_BINS_LUA, Store, month_changes


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


# ARGV: key base, TTL (s), histogram bytes, then (record_id, target) pairs. Returns joined, pending,
# duplicates, then per month changed: month, n, bad, good after and n, bad, good added (n: 0).
APPLY_OUTCOMES_LUA = ADD_BINS_LUA + """
local base, ttl, size = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local joined, pending, duplicates = 0, 0, 0
local moves = {}
for a = 4, #ARGV, 2 do
  local rid, target = ARGV[a], ARGV[a + 1]
  local score_key = base .. ':score:' .. rid
  local kept = redis.call('GET', score_key)
  if not kept then
    if redis.call('SET', base .. ':pending:' .. rid, target, 'NX', 'EX', ttl) then
      pending = pending + 1
    else
      duplicates = duplicates + 1
    end
  elseif kept == 'joined' then
    duplicates = duplicates + 1
  else
    local sep = string.find(kept, '|', 1, true)
    local month, b = string.sub(kept, 1, sep - 1), string.sub(kept, sep + 1)
    local label = (target == '1') and 'bad' or 'good'
    moves[month] = moves[month] or {bad = {}, good = {}, unlabeled = {}, n = {bad = 0, good = 0}}
    local m = moves[month]
    m.unlabeled[b] = (m.unlabeled[b] or 0) - 1
    m[label][b] = (m[label][b] or 0) + 1
    m.n[label] = m.n[label] + 1
    redis.call('SET', score_key, 'joined', 'KEEPTTL')
    joined = joined + 1
  end
end
local changes = {}
for month, m in pairs(moves) do
  local count = base .. ':count:' .. month
  for _, label in ipairs({'bad', 'good', 'unlabeled'}) do
    add_bins(base .. ':hist:' .. month .. ':' .. label, m[label], size)
  end
  redis.call('HINCRBY', count, 'unlabeled', -(m.n.bad + m.n.good))
  local bad = redis.call('HINCRBY', count, 'bad', m.n.bad)
  local good = redis.call('HINCRBY', count, 'good', m.n.good)
  redis.call('HINCRBY', count, 'rev', 1)
  local n = tonumber(redis.call('HGET', count, 'n') or 0)
  for _, v in ipairs({month, n, bad, good, 0, m.n.bad, m.n.good}) do changes[#changes + 1] = v end
end
local counters = base .. ':outcomes'
if joined > 0 then redis.call('HINCRBY', counters, 'joined', joined) end
if pending > 0 then redis.call('HINCRBY', counters, 'pending', pending) end
if duplicates > 0 then redis.call('HINCRBY', counters, 'duplicates', duplicates) end
local result = {joined, pending, duplicates}
for _, v in ipairs(changes) do result[#result + 1] = v end
return result
"""


class OutcomeProcessor:
    """Applies batches of outcome messages; idempotent per record, so redelivery is harmless."""

    def __init__(self, store: Store, dead_letter: DeadLetter, on_change: OnChange | None = None):
        self.store = store
        self.dead_letter = dead_letter
        self.on_change = on_change
        self._apply = store.redis.register_script(APPLY_OUTCOMES_LUA)

    async def process(self, messages: Sequence[RawMessage]) -> dict[str, int]:
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
                groups.setdefault((o.model, o.model_version), []).extend((o.record_id, str(o.target)))
        ttl = max(self.store.settings.label_ttl_days, 1) * 86400
        for (model, version), pairs in groups.items():
            base = self.store.base(model, version)
            joined, pending, duplicates, *changes = await retry_forever(
                f"outcomes of {model}:{version}", self._call, base, ttl, pairs)
            if changes and self.on_change is not None:
                await self.on_change(model, version, month_changes(changes))
            totals["joined"] += joined
            totals["pending"] += pending
            totals["duplicates"] += duplicates
        return totals

    async def _call(self, base: str, ttl: int, pairs: list) -> list[int]:
        return await self._apply(keys=[f"{base}:outcomes"], args=[base, ttl, self.store.hist_bytes, *pairs])


async def outcome_counters(store: Store, model: str, version: str) -> dict[str, int]:
    """joined, pending (stored before their record), pending_joined, duplicates, orphans so far."""
    raw = await store.redis.hgetall(f"{store.base(model, version)}:outcomes")
    c = {k.decode(): int(v) for k, v in raw.items()}
    out = {name: c.get(name, 0) for name in ("joined", "pending", "pending_joined", "duplicates")}
    out["orphans"] = out["pending"] - out["pending_joined"]
    return out
