"""The Redis state: key schema, the atomic batch update, and reads for metrics and the CLI.

Every key of one (model, version) carries the hash tag ``{model:version}``, so a Redis Cluster
keeps them in one slot and the batch script may touch them together. With prefix ``cm``:

====================================================  ======  ==========================================
key                                                   type    holds
====================================================  ======  ==========================================
``cm:models``                                         set     ``model:version`` of every model seen
``cm:{m:v}:months``                                   set     ``YYYY-MM`` of every month seen
``cm:{m:v}:count:YYYY-MM``                            hash    ``n``, ``bad``, ``good``, ``unlabeled``,
                                                              ``rev`` (bumped by every change)
``cm:{m:v}:hist:YYYY-MM:bad|good|unlabeled``          string  one int64 per score bin, big-endian
                                                              (``BITFIELD key GET i64 #<bin>``,
                                                              bin = round(score / resolution))
``cm:{m:v}:offsets``                                  hash    ``topic:partition`` -> last offset applied
``cm:{m:v}:fingerprints``                             hash    ``topic:partition`` -> fingerprint of the message
                                                              at that offset (monitor.sources.fingerprint)
``cm:{m:v}:watermark``                                string  latest ref_date seen (ISO date)
``cm:{m:v}:watermarks``                               hash    ``topic:partition`` -> its latest ref_date
                                                              and when it last delivered (``date|unix s``);
                                                              ``~first`` -> when the first records came
``cm:{m:v}:epoch``                                    string  the state epoch this model's counts belong to
``cm:{m:v}:ref`` / ``cm:{m:v}:ref:meta``              string  reference (test-set) histogram, same layout
                                                      / hash  / its card (n, resolution, source, AUC)
``cm:{m:v}:features:YYYY-MM``                         hash    ``feature|bucket`` -> count (buckets of the
                                                              reference feature profile; at most
                                                              max_unseen_categories unseen names per
                                                              feature, the rest in ``feature|__other__``,
                                                              their number in ``feature|~unseen``)
``cm:{m:v}:ref:features``                             string  reference feature profile (JSON)
``cm:{m:v}:metrics``                                  hash    ``YYYY-MM`` -> JSON of the month's metrics
``cm:{m:v}:alerts``                                   hash    ``rule|window|month`` -> JSON alert state
``cm:{m:v}:outbox``                                   list    alert events not yet on the alerts topic
``cm:{m:v}:lease``                                    string  the worker that computes this model now
``cm:{m:v}:join:<period>:<bucket>``                   hash    record_id -> month and score bin (one integer,
                                                              ``join_value``) of an unlabelled record written
                                                              in the period, awaiting its outcome; ``j`` once
                                                              joined (expires at the period's end + TTL)
``cm:{m:v}:pending:<period>:<bucket>``                hash    record_id -> target (0/1) of an outcome that
                                                              came before its record (same expiry)
``cm:{m:v}:pending:periods``                          hash    ``<period>`` -> outcomes still pending in it
``cm:{m:v}:outcomes``                                 hash    ``joined``, ``pending``, ``pending_joined``,
                                                              ``duplicates`` (outcome counters)
``cm:due``                                            set     ``model:version`` of models whose metrics
                                                              are due now (a month reached a checkpoint)
``cm:alerts:history``                                 list    latest alert events, newest first (capped)
``cm:worker``                                         hash    worker counters (records, dead_lettered...)
``cm:epoch``                                          string  id of this state's lifetime (in the group name)
====================================================  ======  ==========================================

The delayed-label join buffer is bucketed: ``<bucket> = join_bucket(record_id)`` (crc32 modulo
``JOIN_BUCKETS``), so the records waiting for their outcome share a few thousand small listpack-encoded
hashes (the record id plus ~10 bytes per record once the buckets hold dozens: 38 bytes with
25-character ids at 40,000 waiting records) instead of one key each (~120 bytes by ``MEMORY USAGE``,
~180 with the key and expiry dictionaries). The buckets rotate by *write* period, not by the record's
month: ``<period> = floor(Redis TIME / JOIN_PERIOD_S)`` (30 days), and each bucket expires at a fixed
time, its period's end plus ``MONITOR_LABEL_TTL_DAYS``, set when it is written (a steady trickle of
writes cannot keep it alive): an entry is kept at least the TTL and at most a period more. The record's
month travels in the value, so an outcome probes at most ``ceil(TTL / JOIN_PERIOD_S) + 1`` buckets (5 at
120 days) whatever the model's months. Capacity: ~500k records written in one period stay compact (128
per bucket); more convert the fuller buckets to Redis's hashtable encoding (dearer per entry), still
correct. A replay of history writes all its months in one period: that is when the limit is nearest.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import logging

import numpy as np
import orjson
import redis.asyncio as aioredis

from monitor.settings import Settings
from monitor.stats import FeatureCounter, FeatureProfile, LabelledHistograms, ScoreHistogram

LABELS = ("bad", "good", "unlabeled")
"""Histogram names by label: target 1, target 0, no target yet."""

ALERT_HISTORY_CAP = 10_000
log = logging.getLogger("monitor.store")

# Redis keeps a hash of up to 128 entries (hash-max-listpack-entries) in a compact listpack: 4096
# buckets keep up to ~500k records waiting from one write period compact.
JOIN_BUCKETS = 4096

JOIN_PERIOD_S = 30 * 86400
"""Length of a join buffer's write period: a bucket holds the records (or early outcomes) written in
one period and expires at the period's end plus the label TTL, so an outcome probes at most
``ceil(TTL / JOIN_PERIOD_S) + 1`` buckets (5 with the default 120 days), however many months the model
has. Changing it orphans the buffered records: keep it."""

MONTH_ORIGIN = 2000 * 12
"""Month index of 2000-01: a waiting record's value is ``(month index - MONTH_ORIGIN) * bins + bin``,
small enough for listpack's 24-bit integers until 2069 at the default resolution."""


def join_bucket(record_id: str) -> int:
    """The bucket of a record's entry in the join buffer (``join:<period>:<bucket>``, ``pending:<period>:<bucket>``).

    >>> join_bucket("r1"), join_bucket("r42"), 0 <= join_bucket("x" * 256) < JOIN_BUCKETS
    (2481, 1883, True)
    """
    return zlib.crc32(record_id.encode()) % JOIN_BUCKETS


def join_period(unix_s: float) -> int:
    """The write period of the join buffer at this Redis time (``join:<period>:<bucket>``).

    >>> join_period(0), join_period(JOIN_PERIOD_S - 1), join_period(JOIN_PERIOD_S)
    (0, 0, 1)
    """
    return int(unix_s // JOIN_PERIOD_S)


def join_value(month: str, score_bin: int, bins: int) -> int:
    """What the join buffer keeps of a waiting record: its month and score bin as one integer.

    >>> join_value("2000-01", 7, 10_001), join_value("2024-05", 0, 10_001), join_value("1999-12", 3, 101)
    (7, 2920292, -98)
    """
    year, mon = int(month[:4]), int(month[5:7])
    return (year * 12 + mon - 1 - MONTH_ORIGIN) * bins + score_bin


def join_month_bin(value: int, bins: int) -> tuple[str, int]:
    """The month and score bin of a join buffer value (the inverse of :func:`join_value`).

    >>> join_month_bin(2920292, 10_001), join_month_bin(-98, 101)
    (('2024-05', 0), ('1999-12', 3))
    """
    index, score_bin = divmod(value, bins)
    index += MONTH_ORIGIN
    return f"{index // 12:04d}-{index % 12 + 1:02d}", score_bin


# The join buffer's Lua helpers, shared by the batch and outcome scripts (the same arithmetic as
# join_period / join_value / join_month_bin above). Pending outcomes are tracked per period in
# <base>:pending:periods (period -> outcomes still waiting), so that the batch script probes only
# the periods that hold some: none at all when no outcome came before its record.
JOIN_LUA = ("local JOIN_PERIOD, MONTH_ORIGIN = " + str(JOIN_PERIOD_S) + ", " + str(MONTH_ORIGIN) + "\n" + """
local function join_clock()
  local now = tonumber(redis.call('TIME')[1])
  return now, math.floor(now / JOIN_PERIOD)
end
-- A bucket written in a period expires then, however often it is written: a trickle cannot keep it.
local function join_deadline(period, ttl)
  return (period + 1) * JOIN_PERIOD + ttl
end
local function join_value(month, bin, bins)
  local index = tonumber(string.sub(month, 1, 4)) * 12 + tonumber(string.sub(month, 6, 7)) - 1 - MONTH_ORIGIN
  return string.format('%d', index * bins + tonumber(bin))
end
local function join_month_bin(value, bins)
  value = tonumber(value)
  local index = math.floor(value / bins)
  local bin = value - index * bins
  index = index + MONTH_ORIGIN
  return string.format('%04d-%02d', math.floor(index / 12), index % 12 + 1), bin
end
-- The periods whose pending buckets hold outcomes and still live, newest first; forgets the others.
local function pending_periods(key, now, ttl)
  local raw, live = redis.call('HGETALL', key), {}
  for i = 1, #raw, 2 do
    local period = tonumber(raw[i])
    if tonumber(raw[i + 1]) <= 0 or join_deadline(period, ttl) <= now then
      redis.call('HDEL', key, raw[i])
    else
      live[#live + 1] = period
    end
  end
  table.sort(live, function(x, y) return x > y end)
  return live
end
""")


# Applies one batch of one (model, version) and moves its offsets, atomically. The offsets
# make the update idempotent: a batch whose offsets were already applied changes nothing,
# and a worker whose view of the offsets is stale (another worker moved them) is told so.
# One BITFIELD call per chunk of bins: fewer calls than bins, under Lua's unpack limit.
ADD_BINS_LUA = """
local function add_bins(hist, inc, size)
  if next(inc) == nil then return end
  -- Created at full length: BITFIELD would grow it bin by bin, with Redis's greedy
  -- preallocation, up to twice the size.
  if redis.call('EXISTS', hist) == 0 then redis.call('SETRANGE', hist, size - 1, '\\0') end
  local ops, n = {}, 0
  for b, c in pairs(inc) do
    ops[n + 1], ops[n + 2], ops[n + 3], ops[n + 4] = 'INCRBY', 'i64', '#' .. b, c
    n = n + 4
    if n >= 4000 then
      redis.call('BITFIELD', hist, unpack(ops, 1, n))
      ops, n = {}, 0
    end
  end
  if n > 0 then redis.call('BITFIELD', hist, unpack(ops, 1, n)) end
end
"""

# The model's copy of the state epoch guards against writing into a state from another
# lifetime (see state_epoch). KEYS: offsets, months, watermark, epoch copy, then per month:
# count, hist bad, hist good, hist unlabeled, feature counts; last, the fingerprints hash.
# ARGV: k, latest ref_date of the batch, epoch, key base, join TTL (s), histogram bytes, max unseen
# category names per feature and month, then k x (offset field, expected stored offset or "", new
# offset, the partition's latest ref_date), then k fingerprints of the messages at the new offsets
# ("" = unknown: the stored one is dropped), then per month: month, the (bin, count) pairs of bad,
# good and unlabeled (three strings "bin count bin count ...": one argument each instead of two per
# bin, which redis-py would encode one by one), n waiting, then (record_id, bin, join bucket) of the
# unlabelled records that wait for their outcome, then n feature fields of the profile's buckets and
# (field, count) pairs, then n fields of unseen category names and (field, count) pairs.
# Returns {1, '', ''} then per month: month, n, bad, good after the batch and n, bad, good it added.
APPLY_BATCH_LUA = ADD_BINS_LUA + JOIN_LUA + """
local copy = redis.call('GET', KEYS[4])
if copy and copy ~= ARGV[3] then
  return {-2, 'epoch', copy}
end
local k = tonumber(ARGV[1])
for i = 0, k - 1 do
  local stored = redis.call('HGET', KEYS[1], ARGV[8 + 4*i])
  local expected = ARGV[9 + 4*i]
  if (stored or '') ~= expected then
    return {-1, ARGV[8 + 4*i], stored or ''}
  end
end
-- Checks done: from here on it writes (a script is not rolled back, so no return below).
if not copy then redis.call('SET', KEYS[4], ARGV[3]) end
local base, ttl, size, max_unseen = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
-- Per partition: its latest ref_date and when it last delivered (Redis clock), for the
-- event-time watermark that closes months (monitor.alerts.event_time_watermark).
local now = redis.call('TIME')[1]
redis.call('HSETNX', base .. ':watermarks', '~first', now)  -- when the model's first records came
for i = 0, k - 1 do
  local partition = ARGV[8 + 4*i]
  redis.call('HSET', KEYS[1], partition, ARGV[10 + 4*i])
  local latest = ARGV[11 + 4*i]
  local seen = redis.call('HGET', base .. ':watermarks', partition)
  if seen and string.sub(seen, 1, 10) > latest then latest = string.sub(seen, 1, 10) end
  redis.call('HSET', base .. ':watermarks', partition, latest .. '|' .. now)
  local print = ARGV[8 + 4*k + i]
  if print == '' then redis.call('HDEL', KEYS[#KEYS], partition) else redis.call('HSET', KEYS[#KEYS], partition, print) end
end
local watermark = redis.call('GET', KEYS[3])
if (not watermark) or ARGV[2] > watermark then redis.call('SET', KEYS[3], ARGV[2]) end
local a = 8 + 5*k
local key = 5
local pending_joined = 0
local touched = {}  -- join buffer keys written (this period's): one EXPIREAT each at the end
local bins = size / 8
local join_now, join_now_period, join_pending = 0, 0, {}
if ttl > 0 then
  join_now, join_now_period = join_clock()
  join_pending = pending_periods(base .. ':pending:periods', join_now, ttl)
end
local result = {1, '', ''}
while a <= #ARGV do
  local month = ARGV[a]
  local inc, totals = {{}, {}, {}}, {0, 0, 0}
  for h = 1, 3 do
    for b, c in string.gmatch(ARGV[a + h], '(%d+) (%d+)') do
      c = tonumber(c)
      inc[h][b] = (inc[h][b] or 0) + c
      totals[h] = totals[h] + c
    end
  end
  local waiting = tonumber(ARGV[a+4])
  a = a + 5
  -- Unlabelled records one by one: an outcome may have arrived first (pending), else the
  -- record's month and bin are kept in this period's join bucket for the outcome to come ('j' once
  -- joined). Pending buckets are probed only in the periods that hold outcomes.
  for j = 1, waiting do
    local rid, b, bucket = ARGV[a], ARGV[a+1], ARGV[a+2]
    a = a + 3
    local h = 3
    if ttl > 0 then
      local join = base .. ':join:' .. join_now_period .. ':' .. bucket
      local pending
      for _, period in ipairs(join_pending) do
        local pending_key = base .. ':pending:' .. period .. ':' .. bucket
        pending = redis.call('HGET', pending_key, rid)
        if pending then
          redis.call('HDEL', pending_key, rid)
          if redis.call('HINCRBY', base .. ':pending:periods', period, -1) <= 0 then
            redis.call('HDEL', base .. ':pending:periods', period)
          end
          break
        end
      end
      if pending then
        h = (pending == '1') and 1 or 2
        redis.call('HSET', join, rid, 'j')
        pending_joined = pending_joined + 1
      else
        redis.call('HSET', join, rid, join_value(month, b, bins))
      end
      touched[join] = true
    end
    inc[h][b] = (inc[h][b] or 0) + 1
    totals[h] = totals[h] + 1
  end
  redis.call('SADD', KEYS[2], month)
  local count = KEYS[key]
  local added = totals[1] + totals[2] + totals[3]
  local n = redis.call('HINCRBY', count, 'n', added)
  local bad = redis.call('HINCRBY', count, 'bad', totals[1])
  local good = redis.call('HINCRBY', count, 'good', totals[2])
  if totals[3] > 0 then redis.call('HINCRBY', count, 'unlabeled', totals[3]) end
  redis.call('HINCRBY', count, 'rev', 1)
  for h = 1, 3 do add_bins(KEYS[key + h], inc[h], size) end
  for _, v in ipairs({month, n, bad, good, added, totals[1], totals[2]}) do result[#result + 1] = v end
  local features = tonumber(ARGV[a])
  a = a + 1
  for j = 1, features do
    redis.call('HINCRBY', KEYS[key + 4], ARGV[a], ARGV[a + 1])
    a = a + 2
  end
  -- Unseen category names: a name already in the hash adds to it; a new one takes one of the
  -- feature's max_unseen places (counted in '<feature>|~unseen') or else counts in the overflow
  -- bucket '<feature>|__other__', which the drift counts as unseen too (the field names are
  -- monitor.stats.features.UNSEEN_NAMES_PART and OTHER).
  local unseen = tonumber(ARGV[a])
  a = a + 1
  for j = 1, unseen do
    local name, c, hash = ARGV[a], ARGV[a + 1], KEYS[key + 4]
    a = a + 2
    if redis.call('HEXISTS', hash, name) == 1 then
      redis.call('HINCRBY', hash, name, c)
    else
      local feature = string.sub(name, 1, string.find(name, '|', 1, true) - 1)
      local places = feature .. '|~unseen'
      if tonumber(redis.call('HGET', hash, places) or '0') < max_unseen then
        redis.call('HINCRBY', hash, places, 1)
        redis.call('HINCRBY', hash, name, c)
      else
        redis.call('HINCRBY', hash, feature .. '|__other__', c)
      end
    end
  end
  key = key + 5
end
for join in pairs(touched) do redis.call('EXPIREAT', join, join_deadline(join_now_period, ttl)) end
if pending_joined > 0 then redis.call('HINCRBY', base .. ':outcomes', 'pending_joined', pending_joined) end
return result
"""


@dataclass
class MonthIncrements:
    """What one batch adds to one month of one model: per label, score bins and their counts."""

    bins: dict[str, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=lambda: {label: (np.empty(0, np.int64), np.empty(0, np.int64)) for label in LABELS})
    # Unlabelled records kept one by one (in the join buffer) so that their outcome can find
    # them: ids and bins.
    waiting: tuple[list[str], np.ndarray] = field(default_factory=lambda: ([], np.empty(0, np.int64)))
    # Feature bucket counts ("feature|bucket" -> n), when the model has a reference feature profile:
    # the profile's buckets, and the unseen category names (capped per month by the batch script).
    features: dict[str, int] = field(default_factory=dict)
    unseen_features: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class MonthChange:
    """One month's counts after a write (``n``, ``bad``, ``good``) and what the write added."""

    month: str
    n: int
    bad: int
    good: int
    added_n: int
    added_bad: int
    added_good: int


def month_changes(flat: list) -> list[MonthChange]:
    """Parse the scripts' flat reply: month, n, bad, good, added n, added bad, added good, ...

    >>> month_changes([b"2024-01", 5, 1, 2, 3, 1, 0])
    [MonthChange(month='2024-01', n=5, bad=1, good=2, added_n=3, added_bad=1, added_good=0)]
    """
    return [MonthChange(flat[i].decode() if isinstance(flat[i], bytes) else flat[i], *map(int, flat[i + 1:i + 7]))
            for i in range(0, len(flat), 7)]


@dataclass
class StoredCardinality:
    """Stored models and months, as far as one batch's new ones are concerned (Store.stored_cardinality)."""

    models: int
    known_models: set[tuple[str, str]] = field(default_factory=set)
    months: dict[tuple[str, str], int] = field(default_factory=dict)
    known_months: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    referenced: set[tuple[str, str]] = field(default_factory=set)


class OffsetConflict(Exception):
    """A stored offset is not the one the worker expected: another worker moved it (a
    rebalance), or Redis lost it (then ``stored`` is behind what the worker wrote)."""

    def __init__(self, model: str, version: str, offset_field: str, stored: int | None):
        super().__init__(f"{model}:{version} {offset_field} is at {stored if stored is not None else 'none'}")
        self.offset_field = offset_field
        self.stored = stored


class EpochMismatch(Exception):
    """The model's state was written in another lifetime of the Redis state than the worker's."""

    def __init__(self, model: str, version: str, found: str):
        super().__init__(f"{model}:{version} state belongs to epoch {found}")
        self.found = found


# After a state loss, the first worker of the new epoch to touch a model drops what was written
# into it since the loss (partial, and replayed from the topic anyway) and adopts it.
# KEYS: epoch copy, months. ARGV: the epoch found, the new epoch, the model's key base.
ADOPT_EPOCH_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local base = ARGV[3]
for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('DEL', base .. ':count:' .. m, base .. ':hist:' .. m .. ':bad', base .. ':hist:' .. m .. ':good',
             base .. ':hist:' .. m .. ':unlabeled', base .. ':features:' .. m)
end
redis.call('DEL', KEYS[2], base .. ':offsets', base .. ':fingerprints', base .. ':watermark', base .. ':watermarks', base .. ':metrics')
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


# A partition's stored offset no longer belongs to its log (monitor.sources): forget it, if it is
# still the one checked, and queue the source_reset alert event, in one step.
# KEYS: offsets, fingerprints, outbox, alert history. ARGV: offset field, the stored offset checked,
# its fingerprint ("" = none), the event (JSON), history cap. Returns 1, or 0 when either moved.
RESET_SOURCE_LUA = """
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
if (redis.call('HGET', KEYS[2], ARGV[1]) or '') ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('LPUSH', KEYS[4], ARGV[4])
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
return 1
"""


def epoch_key(settings: Settings) -> str:
    return f"{settings.key_prefix}:epoch"


def state_epoch(settings: Settings, attempts: int = 60) -> str:
    """The id of this Redis state's lifetime, created by the first worker that starts.

    The consumer group's name carries it: after Redis loses the state (a flush), workers get a
    new epoch, hence a new group with no committed offsets, and rebuild the state from the
    earliest offset of every partition.
    """
    import time
    import uuid

    import redis

    from monitor.connect import redis_client, redis_error_message
    from monitor.errors import MonitorError

    client = redis_client(settings)
    try:
        for attempt in range(attempts):
            try:
                client.set(epoch_key(settings), uuid.uuid4().hex[:12], nx=True)
                return client.get(epoch_key(settings)).decode()
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                # Wrong credentials do not get better by waiting: say so at once, without the secret.
                raise MonitorError(redis_error_message(settings, exc)) from None
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("Redis not reachable at start (%s); retrying", exc)
                time.sleep(min(5.0, 0.2 * 2 ** attempt))
    finally:
        client.close()
    raise AssertionError("unreachable")


class Store:
    """Async access to the monitor's Redis state for one deployment (one key prefix)."""

    def __init__(self, redis: aioredis.Redis, settings: Settings):
        self.redis = redis
        self.settings = settings
        self.prefix = settings.key_prefix
        self._apply = redis.register_script(APPLY_BATCH_LUA)
        self._adopt = redis.register_script(ADOPT_EPOCH_LUA)
        self._reset_source = redis.register_script(RESET_SOURCE_LUA)
        # A histogram string's full length: the batch scripts create it at this size.
        self.hist_bytes = (ScoreHistogram(settings.resolution).max_bin + 1) * 8

    @classmethod
    def connect(cls, settings: Settings) -> "Store":
        from monitor.connect import redis_client

        client = redis_client(settings, asyncio=True, decode_responses=False, health_check_interval=30,
                              socket_keepalive=True)
        return cls(client, settings)

    async def close(self) -> None:
        await self.redis.aclose()

    # ---- keys ----------------------------------------------------------------------------
    def base(self, model: str, version: str) -> str:
        return f"{self.prefix}:{{{model}:{version}}}"

    def models_key(self) -> str:
        return f"{self.prefix}:models"

    def worker_key(self) -> str:
        return f"{self.prefix}:worker"

    def due_key(self) -> str:
        return f"{self.prefix}:due"

    def history_key(self) -> str:
        return f"{self.prefix}:alerts:history"

    def hist_key(self, model: str, version: str, month: str, label: str) -> str:
        return f"{self.base(model, version)}:hist:{month}:{label}"

    def features_key(self, model: str, version: str, month: str) -> str:
        return f"{self.base(model, version)}:features:{month}"

    def count_key(self, model: str, version: str, month: str) -> str:
        return f"{self.base(model, version)}:count:{month}"

    # ---- writes ----------------------------------------------------------------------------
    async def stored_offsets(self, model: str, version: str, fields: Iterable[str]) -> tuple[str | None, dict[str, int | None]]:
        """The model's state epoch and its last applied offsets for these fields."""
        fields = list(fields)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(f"{self.base(model, version)}:epoch")
        pipe.hmget(f"{self.base(model, version)}:offsets", fields)
        epoch, values = await pipe.execute()
        return (epoch.decode() if epoch else None), {f: (int(v) if v is not None else None) for f, v in zip(fields, values)}

    async def apply_batch(self, model: str, version: str, offsets: Mapping[str, tuple[int | None, int, str]],
                          months: Mapping[str, MonthIncrements], latest_ref_date: str, epoch: str,
                          fingerprints: Mapping[str, str] | None = None) -> list[MonthChange]:
        """Add the increments and move offsets ``field -> (expected stored, new, latest ref_date of
        the partition's records)`` in one step; returns each month's counts after it.

        ``fingerprints``: per field, the fingerprint of the message at the new offset
        (:func:`monitor.sources.fingerprint`), kept with it to tell later whether the offset still
        belongs to the partition's log; a field without one drops the stored one.

        Raises OffsetConflict when a stored offset is not the expected one; nothing is written then.
        """
        base = self.base(model, version)
        keys = [f"{base}:offsets", f"{base}:months", f"{base}:watermark", f"{base}:epoch"]
        args: list = [len(offsets), latest_ref_date, epoch, base, self.settings.label_ttl_days * 86400,
                      self.hist_bytes, self.settings.max_unseen_categories]
        for offset_field, (expected, new, latest) in offsets.items():
            args += [offset_field, "" if expected is None else str(expected), str(new), latest]
        args += [(fingerprints or {}).get(offset_field, "") for offset_field in offsets]
        for month, inc in months.items():
            keys.append(self.count_key(model, version, month))
            keys += [self.hist_key(model, version, month, label) for label in LABELS]
            keys.append(self.features_key(model, version, month))
            ids, waiting_bins = inc.waiting
            args.append(month)
            for label in LABELS:
                args.append(" ".join(map(str, np.column_stack(inc.bins[label]).ravel().tolist())))
            args.append(len(ids))
            for rid, score_bin in zip(ids, waiting_bins.tolist()):
                args += (rid, score_bin, join_bucket(rid))
            for fields in (inc.features, inc.unseen_features):
                args.append(len(fields))
                for name, n in fields.items():
                    args += (name, n)
        keys.append(f"{base}:fingerprints")
        status, offset_field, stored, *changes = await self._apply(keys=keys, args=args)
        if status == -2:
            raise EpochMismatch(model, version, stored.decode())
        if status == -1:
            raise OffsetConflict(model, version, offset_field.decode(), int(stored) if stored else None)
        await self.redis.sadd(self.models_key(), f"{model}:{version}")
        return month_changes(changes)

    async def stored_cardinality(self, models: Iterable[tuple[str, str]], months: Mapping[tuple[str, str], Iterable[str]],
                                 references: Iterable[tuple[str, str]]) -> "StoredCardinality":
        """What the bounds on models and months need to know (monitor.bounds.CardinalityGate), in
        one round trip: how many models and months per model are stored, which of these models and
        months are among them, and which of ``references`` have a reference loaded."""
        models, references = list(models), list(references)
        months = {key: list(ms) for key, ms in months.items()}
        pipe = self.redis.pipeline(transaction=False)
        pipe.scard(self.models_key())
        if models:
            pipe.smismember(self.models_key(), [f"{m}:{v}" for m, v in models])
        for (model, version), wanted in months.items():
            pipe.scard(f"{self.base(model, version)}:months")
            pipe.smismember(f"{self.base(model, version)}:months", wanted)
        for model, version in references:
            pipe.exists(f"{self.base(model, version)}:ref")
        replies = iter(await pipe.execute())
        out = StoredCardinality(models=next(replies))
        if models:
            out.known_models = {key for key, member in zip(models, next(replies)) if member}
        for key, wanted in months.items():
            out.months[key] = next(replies)
            out.known_months[key] = {m for m, member in zip(wanted, next(replies)) if member}
        out.referenced = {key for key in references if next(replies)}
        return out

    async def current_epoch(self) -> str | None:
        raw = await self.redis.get(epoch_key(self.settings))
        return raw.decode() if raw else None

    async def adopt_model(self, model: str, version: str, found: str, epoch: str) -> None:
        base = self.base(model, version)
        await self._adopt(keys=[f"{base}:epoch", f"{base}:months"], args=[found, epoch, base])

    async def stored_fingerprint(self, model: str, version: str, offset_field: str) -> str | None:
        """The fingerprint of the message at the partition's stored offset (None: not kept)."""
        raw = await self.redis.hget(f"{self.base(model, version)}:fingerprints", offset_field)
        return raw.decode() if raw else None

    async def reset_source(self, model: str, version: str, offset_field: str, stored: int,
                           stored_fingerprint: str | None, event: bytes) -> bool:
        """Forget the partition's stored offset (its log is gone) if it is still ``stored``, and
        queue ``event`` in the model's alert outbox; False when another worker moved it first."""
        base = self.base(model, version)
        done = await self._reset_source(
            keys=[f"{base}:offsets", f"{base}:fingerprints", f"{base}:outbox", self.history_key()],
            args=[offset_field, str(stored), stored_fingerprint or "", event, ALERT_HISTORY_CAP])
        return bool(done)

    async def incr_worker_counters(self, **counters: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for name, value in counters.items():
            if value:
                pipe.hincrby(self.worker_key(), name, value)
        await pipe.execute()

    async def save_reference(self, model: str, version: str, hist: ScoreHistogram, meta: Mapping[str, object],
                             profile: FeatureProfile | None = None) -> None:
        base = self.base(model, version)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(f"{base}:ref:meta", f"{base}:ref:features")
        if profile is not None:
            pipe.set(f"{base}:ref:features", orjson.dumps(profile.to_dict()))
        pipe.set(f"{base}:ref", hist.to_dense_bytes())
        pipe.hset(f"{base}:ref:meta", mapping={k: str(v) for k, v in meta.items()})
        pipe.sadd(self.models_key(), f"{model}:{version}")
        # A new reference changes every month's adherence: make the metrics recompute. Feature
        # counts were bucketed by the old profile: they restart with the new one.
        for month in await self.months(model, version):
            pipe.hincrby(self.count_key(model, version, month), "rev", 1)
            pipe.delete(self.features_key(model, version, month))
        await pipe.execute()

    async def save_metrics(self, model: str, version: str, metrics_by_month: Mapping[str, dict]) -> None:
        if metrics_by_month:
            await self.redis.hset(f"{self.base(model, version)}:metrics",
                                  mapping={m: orjson.dumps(v) for m, v in metrics_by_month.items()})

    # ---- reads -----------------------------------------------------------------------------
    async def models(self) -> list[tuple[str, str]]:
        members = await self.redis.smembers(self.models_key())
        return sorted(tuple(m.decode().split(":", 1)) for m in members)  # type: ignore[misc]

    async def months(self, model: str, version: str) -> list[str]:
        return sorted(m.decode() for m in await self.redis.smembers(f"{self.base(model, version)}:months"))

    async def month_revisions(self, model: str, version: str, months: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for month in months:
            pipe.hget(self.count_key(model, version, month), "rev")
        return {m: int(r or 0) for m, r in zip(months, await pipe.execute())}

    async def counts(self, model: str, version: str, month: str) -> dict[str, int]:
        raw = await self.redis.hgetall(self.count_key(model, version, month))
        return {label: int(raw.get(label.encode(), 0)) for label in ("n", *LABELS)}

    async def histograms(self, model: str, version: str, months: list[str]) -> dict[str, LabelledHistograms]:
        pipe = self.redis.pipeline(transaction=False)
        for month in months:
            for label in LABELS:
                pipe.get(self.hist_key(model, version, month, label))
        raw = await pipe.execute()
        res = self.settings.resolution
        out = {}
        for i, month in enumerate(months):
            bad, good, unl = (ScoreHistogram.from_dense_bytes(raw[3 * i + j], res) for j in range(3))
            out[month] = LabelledHistograms(pos=bad, neg=good, unlabeled=unl)
        return out

    async def reference(self, model: str, version: str) -> tuple[ScoreHistogram | None, dict[str, str]]:
        base = self.base(model, version)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(f"{base}:ref")
        pipe.hgetall(f"{base}:ref:meta")
        dense, meta = await pipe.execute()
        meta = {k.decode(): v.decode() for k, v in meta.items()}
        if not dense:
            return None, meta
        return ScoreHistogram.from_dense_bytes(dense, float(meta.get("resolution", self.settings.resolution))), meta

    async def feature_profile(self, model: str, version: str) -> FeatureProfile | None:
        raw = await self.redis.get(f"{self.base(model, version)}:ref:features")
        return FeatureProfile.from_dict(orjson.loads(raw)) if raw else None

    async def feature_counts(self, model: str, version: str, months: list[str],
                             profile: FeatureProfile) -> dict[str, FeatureCounter]:
        pipe = self.redis.pipeline(transaction=False)
        for month in months:
            pipe.hgetall(self.features_key(model, version, month))
        return {m: FeatureCounter.from_redis_fields(raw, profile) for m, raw in zip(months, await pipe.execute())}

    async def watermark(self, model: str, version: str) -> str | None:
        """The latest ref_date seen (shown to users; months close by :meth:`closing_watermark`)."""
        raw = await self.redis.get(f"{self.base(model, version)}:watermark")
        return raw.decode() if raw else None

    async def closing_watermark(self, model: str, version: str, topic_partitions: int = 0) -> str | None:
        """The event time up to which the model's records have all arrived: the slowest partition
        still delivering, of the records topic's ``topic_partitions`` when known (see
        :func:`monitor.alerts.event_time_watermark`)."""
        from monitor.alerts import event_time_watermark

        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(f"{self.base(model, version)}:watermarks")
        pipe.time()
        raw, (now, _) = await pipe.execute()
        first = raw.pop(b"~first", None)
        partitions = {}
        for partition, value in raw.items():
            day, _, seen = value.decode().partition("|")
            partitions[partition.decode()] = (day, int(seen))
        return event_time_watermark(partitions, now, self.settings.partition_idle_s, topic_partitions,
                                    int(first) if first else None)

    async def alert_states(self, model: str, version: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(f"{self.base(model, version)}:alerts")
        return {k.decode(): orjson.loads(v) for k, v in raw.items()}

    async def metrics_of(self, model: str, version: str, months: list[str]) -> dict[str, dict]:
        """The saved metrics of these months (those not computed yet are left out)."""
        if not months:
            return {}
        raw = await self.redis.hmget(f"{self.base(model, version)}:metrics", months)
        return {m: orjson.loads(v) for m, v in zip(months, raw) if v is not None}

    async def metrics(self, model: str, version: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(f"{self.base(model, version)}:metrics")
        return {k.decode(): orjson.loads(v) for k, v in sorted(raw.items())}

    async def worker_counters(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in (await self.redis.hgetall(self.worker_key())).items()}
