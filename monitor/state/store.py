"""The state layer's core: the atomic batch update, offsets and epochs, reference and metrics writes,
and the reads for metrics and the CLI (:class:`Store`). Key names: :mod:`monitor.state.keys`; the Lua
scripts: :mod:`monitor.state.scripts`."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import redis
import redis.asyncio as aioredis

from monitor.months import event_time_watermark
from monitor.schema import split_model_key
from monitor.settings import Settings
from monitor.state.admin import AdminOps
from monitor.state.alerts import AlertOps
from monitor.state.joins import JOIN_ATTEMPTS, JoinKeysUnsettled, JoinOps, bucket_indexes
from monitor.state.keys import LABELS, Keys, join_bucket
from monitor.state.scripts import Scripts
from monitor.stats import (
    FeatureCounter,
    FeatureProfile,
    LabelledHistograms,
    ScoreHistogram,
)

ALERT_HISTORY_CAP = 10_000
log = logging.getLogger("monitor.state.store")


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


@dataclass(frozen=True)
class BatchRequest:
    """What a batch call sends whatever its join declaration (:meth:`Store._batch_request`)."""

    indexes: dict[int, int]  # join bucket -> its index among the declared buckets
    body_keys: list[str]
    body_args: list


@dataclass(frozen=True)
class BatchWrite:
    """One apply_batch call: a model's increments and the offsets they move (:meth:`Store.apply_batch`)."""

    model: str
    version: str
    offsets: Mapping[str, tuple[int | None, int, str]]
    months: Mapping[str, MonthIncrements]
    latest_ref_date: str
    epoch: str
    fingerprints: Mapping[str, str]


class EpochMismatch(Exception):
    """The model's state was written in another lifetime of the Redis state than the worker's."""

    def __init__(self, model: str, version: str, found: str):
        super().__init__(f"{model}:{version} state belongs to epoch {found}")
        self.found = found


def epoch_key(settings: Settings) -> str:
    return Keys(settings.key_prefix).epoch()


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

    client = None
    try:
        for attempt in range(attempts):
            try:
                # Built in the loop: a cluster client reads the slot map when built, so it fails
                # there when no node answers yet.
                client = client or redis_client(settings)
                client.set(epoch_key(settings), uuid.uuid4().hex[:12], nx=True)
                return client.get(epoch_key(settings)).decode()
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                # Wrong credentials do not get better by waiting: say so at once, without the secret.
                raise MonitorError(redis_error_message(settings, exc)) from None
            except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.RedisClusterException) as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("Redis not reachable at start (%s); retrying", exc)
                time.sleep(min(5.0, 0.2 * 2 ** attempt))
    finally:
        if client is not None:
            client.close()
    raise AssertionError("unreachable")


class Store(AlertOps, AdminOps, JoinOps):
    """Async access to the monitor's Redis state for one deployment (one key prefix)."""

    def __init__(self, redis: aioredis.Redis, settings: Settings):
        self.redis = redis
        self.settings = settings
        self.prefix = settings.key_prefix
        self.keys = Keys(settings.key_prefix)
        self.scripts = Scripts(redis)
        self._apply = self.scripts.apply_batch
        self._listed: set[tuple[str, str]] = set()  # models this process added to cm:models
        self._adopt = self.scripts.adopt_epoch
        self._reset_source = self.scripts.reset_source
        # A histogram string's full length: the batch scripts create it at this size.
        self.hist_bytes = (ScoreHistogram(settings.resolution).max_bin + 1) * 8
        self.init_join_declarations()

    @classmethod
    def connect(cls, settings: Settings) -> Store:
        from monitor.connect import redis_client

        client = redis_client(settings, asyncio=True, decode_responses=False, health_check_interval=30,
                              socket_keepalive=True)
        return cls(client, settings)

    async def close(self) -> None:
        await self.redis.aclose()

    # ---- keys (monitor.state.keys) ----------------------------------------------------------
    def base(self, model: str, version: str) -> str:
        return self.keys.base(model, version)

    def models_key(self) -> str:
        return self.keys.models()

    def worker_key(self) -> str:
        return self.keys.worker()

    def due_key(self) -> str:
        return self.keys.due()

    def history_key(self) -> str:
        return self.keys.history()

    def hist_key(self, model: str, version: str, month: str, label: str) -> str:
        return self.keys.hist(model, version, month, label)

    def features_key(self, model: str, version: str, month: str) -> str:
        return self.keys.features(model, version, month)

    def count_key(self, model: str, version: str, month: str) -> str:
        return self.keys.count(model, version, month)

    # ---- writes ----------------------------------------------------------------------------
    async def stored_offsets(self, model: str, version: str, fields: Iterable[str]) -> tuple[str | None, dict[str, int | None]]:
        """The model's state epoch and its last applied offsets for these fields."""
        fields = list(fields)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.of(model, version, "epoch"))
        pipe.hmget(self.keys.of(model, version, "offsets"), fields)
        epoch, values = await pipe.execute()
        return (epoch.decode() if epoch else None), {f: (int(v) if v is not None else None) for f, v in zip(fields, values, strict=True)}

    async def apply_batch(self, model: str, version: str, offsets: Mapping[str, tuple[int | None, int, str]],
                          months: Mapping[str, MonthIncrements], latest_ref_date: str, epoch: str,
                          fingerprints: Mapping[str, str] | None = None) -> list[MonthChange]:
        """Add the increments and move offsets ``field -> (expected stored, new, latest ref_date of
        the partition's records)`` in one step; returns each month's counts after it.

        ``fingerprints``: per field, the fingerprint of the message at the new offset
        (:func:`monitor.worker.sources.fingerprint`), kept with it to tell later whether the offset still
        belongs to the partition's log; a field without one drops the stored one.

        Raises OffsetConflict when a stored offset is not the expected one; nothing is written then.
        The join buffer's keys are declared as this worker believes them (monitor.state.joins): when
        Redis's clock or pending periods say otherwise the script writes nothing and the call is
        made again (no extra round trip in the common case).
        """
        write = BatchWrite(model, version, offsets, months, latest_ref_date, epoch, fingerprints or {})
        request = self._batch_request(write)
        for _ in range(JOIN_ATTEMPTS):
            keys, args = self._batch_call(write, request)
            try:
                reply = self._batch_reply(write, await self._apply(keys=keys, args=args))
            except OffsetConflict:
                await self._batch_applied([], [write])  # it has state: listed, whoever wrote it
                raise
            if reply[0] == 1:
                return (await self._batch_applied([(write, request, reply)]))[0]
            self.learn_join_status(model, version, reply[0], reply[1])
        raise JoinKeysUnsettled(f"batch of {model}:{version}: the join buffer's keys kept changing "
                                f"({JOIN_ATTEMPTS} calls refused)")

    async def apply_batches(self, writes: Sequence[BatchWrite]) -> list[list[MonthChange] | Exception]:
        """:meth:`apply_batch` of several models in one round trip (a pipeline, not a transaction: each
        script call is atomic on its own). Per write, its months' counts, or what refused it (an
        OffsetConflict, an EpochMismatch, a script's error) for the caller to take the one-by-one path,
        which handles each. A write whose join declaration was refused (rare: see monitor.state.joins),
        or whose script Redis forgot (a restart), is made again alone. A lost connection raises
        (nothing, some or all applied: each call is idempotent, by its offsets)."""
        requests = [self._batch_request(write) for write in writes]
        pipe = self.redis.pipeline(transaction=False)
        for write, request in zip(writes, requests, strict=True):
            keys, args = self._batch_call(write, request)
            # (a cluster pipeline refuses .evalsha(); the command itself it routes by its keys)
            pipe.execute_command("EVALSHA", self._apply.sha, len(keys), *keys, *args)
        replies = await pipe.execute(raise_on_error=False)
        out: list[list[MonthChange] | Exception | None] = []
        applied: list[tuple[BatchWrite, BatchRequest, list]] = []
        try:
            for write, request, reply in zip(writes, requests, replies, strict=True):
                out.append(await self._batch_outcome(write, request, reply, applied))
        finally:  # also when one raised (a lost connection): the writes applied are listed all the same
            moved = [w for w, r in zip(writes, out, strict=False) if isinstance(r, OffsetConflict)]
            done = iter(await self._batch_applied(applied, moved))
        return [next(done) if result is None else result for result in out]

    async def _batch_outcome(self, write: BatchWrite, request: BatchRequest, reply,
                             applied: list) -> list[MonthChange] | Exception | None:
        """One reply of :meth:`apply_batches`: None when applied (added to ``applied``), the refusal,
        or the result of the write made again alone (NOSCRIPT, a join declaration refused)."""
        try:
            if isinstance(reply, Exception):
                raise reply
            reply = self._batch_reply(write, reply)
        except redis.exceptions.NoScriptError:
            return await self._alone(write)
        except (OffsetConflict, EpochMismatch, redis.ResponseError) as refused:
            return refused
        if reply[0] == 1:
            applied.append((write, request, reply))
            return None
        self.learn_join_status(write.model, write.version, reply[0], reply[1])
        return await self._alone(write)

    async def _alone(self, write: BatchWrite) -> list[MonthChange] | Exception:
        """:meth:`apply_batch` of one write, its refusal returned rather than raised."""
        try:
            return await self.apply_batch(write.model, write.version, write.offsets, write.months,
                                          write.latest_ref_date, write.epoch, write.fingerprints)
        except (OffsetConflict, EpochMismatch, redis.ResponseError) as refused:
            return refused

    def _batch_request(self, write: BatchWrite) -> BatchRequest:
        """What a batch call sends whatever its join declaration: each waiting record's bucket, once
        (the distinct ones are declared, the records name them by index), the month keys and ARGV."""
        ttl = self.settings.label_ttl_days * 86400
        buckets = {month: [join_bucket(rid) for rid in inc.waiting[0]] if ttl > 0 else []
                   for month, inc in write.months.items()}
        indexes = bucket_indexes(b for month_buckets in buckets.values() for b in month_buckets)
        body_keys, body_args = self._batch_body(write, {month: [indexes[b] for b in bs] for month, bs in buckets.items()})
        return BatchRequest(indexes, body_keys, body_args)

    def _batch_call(self, write: BatchWrite, request: BatchRequest) -> tuple[list[str], list]:
        """The KEYS and ARGV of apply_batch.lua, the join buffer's keys declared as this worker
        believes them (the period of its clock, the pending periods it learnt)."""
        model, version = write.model, write.version
        period, pending = self.join_period_now(), self.declared_pending(model, version)
        keys = [self.keys.of(model, version, name) for name in
                ("offsets", "months", "watermark", "epoch", "watermarks", "pending:periods", "outcomes",
                 "fingerprints")]
        keys += (self.join_keys(model, version, [period], request.indexes)
                 + self.pending_keys(model, version, pending, request.indexes))
        args = [len(write.offsets), write.latest_ref_date, write.epoch, period, self.settings.label_ttl_days * 86400,
                self.hist_bytes, self.settings.max_unseen_categories, len(request.indexes), " ".join(map(str, pending))]
        return keys + request.body_keys, args + request.body_args

    @staticmethod
    def _batch_reply(write: BatchWrite, reply: list) -> list:
        """The script's reply, or the refusal it says (nothing was written then)."""
        status, info, stored = reply[:3]
        if status == -2:
            raise EpochMismatch(write.model, write.version, stored.decode())
        if status == -1:
            raise OffsetConflict(write.model, write.version, info.decode(), int(stored) if stored else None)
        return reply

    async def _batch_applied(self, applied: list[tuple[BatchWrite, BatchRequest, list]],
                             moved: Sequence[BatchWrite] = ()) -> list[list[MonthChange]]:
        """After applied batch calls: the pending periods they saw remembered; the models listed in
        ``cm:models`` on their first write (the script says so: first ever, or since a wipe) or this
        process's first (a crash may have come between a first write and its listing; the set is in
        another cluster slot than the model's keys, so a command of its own), and those ``moved``
        (refused for an offset already stored: they have state, perhaps written by a call whose listing
        was lost with the connection); their months' counts."""
        first = {(w.model, w.version) for w in moved} - self._listed
        for write, request, (_, live, first_write, *_) in applied:
            if request.indexes:
                self.remember_pending(write.model, write.version, live)
            if first_write == 1 or (write.model, write.version) not in self._listed:
                first.add((write.model, write.version))
        if first:
            await self.redis.sadd(self.models_key(), *(f"{model}:{version}" for model, version in first))
            self._listed |= first
        return [month_changes(reply[3:]) for _, _, reply in applied]

    def _batch_body(self, write: BatchWrite, bucket_indexes: Mapping[str, list[int]]) -> tuple[list[str], list]:
        """The month keys and the ARGV after the join declaration of a batch call (apply_batch.lua):
        the same whatever the declared period and pending periods. ``bucket_indexes``: per month, the
        index of each waiting record's bucket among the declared ones."""
        model, version = write.model, write.version
        keys: list[str] = []
        args: list = []
        for offset_field, (expected, new, latest) in write.offsets.items():
            args += [offset_field, "" if expected is None else str(expected), str(new), latest]
        args += [write.fingerprints.get(offset_field, "") for offset_field in write.offsets]
        for month, inc in write.months.items():
            keys.append(self.count_key(model, version, month))
            keys += [self.hist_key(model, version, month, label) for label in LABELS]
            keys.append(self.features_key(model, version, month))
            ids, waiting_bins = inc.waiting
            args.append(month)
            for label in LABELS:
                args.append(" ".join(map(str, np.column_stack(inc.bins[label]).ravel().tolist())))
            args.append(len(ids))
            indexes = bucket_indexes[month] or [0] * len(ids)  # no join buffer (TTL 0): index unused
            for rid, score_bin, index in zip(ids, waiting_bins.tolist(), indexes, strict=True):
                args += (rid, score_bin, index)
            for fields in (inc.features, inc.unseen_features):
                args.append(len(fields))
                for name, n in fields.items():
                    args += (name, n)
        return keys, args

    async def stored_cardinality(self, models: Iterable[tuple[str, str]], months: Mapping[tuple[str, str], Iterable[str]],
                                 references: Iterable[tuple[str, str]]) -> StoredCardinality:
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
            pipe.scard(self.keys.of(model, version, "months"))
            pipe.smismember(self.keys.of(model, version, "months"), wanted)
        for model, version in references:
            pipe.exists(self.keys.of(model, version, "ref"))
        replies = iter(await pipe.execute())
        out = StoredCardinality(models=next(replies))
        if models:
            out.known_models = {key for key, member in zip(models, next(replies), strict=True) if member}
        for key, wanted in months.items():
            out.months[key] = next(replies)
            out.known_months[key] = {m for m, member in zip(wanted, next(replies), strict=True) if member}
        out.referenced = {key for key in references if next(replies)}
        return out

    async def current_epoch(self) -> str | None:
        raw = await self.redis.get(epoch_key(self.settings))
        return raw.decode() if raw else None

    async def adopt_model(self, model: str, version: str, found: str, epoch: str, attempts: int = 100) -> None:
        """Drop what the model holds from epoch ``found`` and mark it ``epoch``'s (adopt_epoch.lua): its
        months are read first, so that the script declares every key it deletes (a batch adding a
        month meanwhile makes it read them again)."""
        for _ in range(attempts):
            months = await self.months(model, version)
            keys = [self.keys.of(model, version, name) for name in
                    ("epoch", "months", "offsets", "fingerprints", "watermark", "watermarks", "metrics")]
            for month in months:
                keys += [self.count_key(model, version, month),
                         *(self.hist_key(model, version, month, label) for label in LABELS),
                         self.features_key(model, version, month)]
            if await self._adopt(keys=keys, args=[found, epoch, *months]) != -1:
                return
        from monitor.errors import MonitorError

        raise MonitorError(f"{model}:{version}: months kept changing while adopting epoch {epoch}")

    async def stored_fingerprint(self, model: str, version: str, offset_field: str) -> str | None:
        """The fingerprint of the message at the partition's stored offset (None: not kept)."""
        raw = await self.redis.hget(self.keys.of(model, version, "fingerprints"), offset_field)
        return raw.decode() if raw else None

    async def reset_source(self, model: str, version: str, offset_field: str, stored: int,
                           stored_fingerprint: str | None, event: bytes) -> bool:
        """Forget the partition's stored offset (its log is gone) if it is still ``stored``, and
        queue ``event`` in the model's alert outbox; False when another worker moved it first."""
        done = await self._reset_source(
            keys=[self.keys.of(model, version, "offsets"), self.keys.of(model, version, "fingerprints"),
                  self.keys.of(model, version, "outbox")],
            args=[offset_field, str(stored), stored_fingerprint or "", event])
        if done:  # the history is in another cluster slot: a second call (see transition_alert)
            await self.record_history(event, ALERT_HISTORY_CAP)
        return bool(done)

    async def save_loop_lag(self, worker: str, snapshot: dict, stale_after_s: float) -> None:
        """Store this worker process's event-loop lag (``monitor.worker.looplag`` snapshot, with its ``at``
        time) and drop the reports of processes silent for ``stale_after_s`` (gone, restarted)."""
        key = self.keys.worker_loop_lag()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, worker, orjson.dumps(snapshot))
        pipe.expire(key, max(1, int(stale_after_s)))  # every worker gone: the reports go too
        pipe.hgetall(key)
        _, _, reports = await pipe.execute()
        stale = [field for field, raw in reports.items()
                 if float(orjson.loads(raw).get("at", 0)) < snapshot["at"] - stale_after_s]
        if stale:
            await self.redis.hdel(key, *stale)

    async def incr_worker_counters(self, **counters: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for name, value in counters.items():
            if value:
                pipe.hincrby(self.worker_key(), name, value)
        await pipe.execute()

    async def save_reference(self, model: str, version: str, hist: ScoreHistogram, meta: Mapping[str, object],
                             profile: FeatureProfile | None = None) -> None:
        # One transaction over the model's keys (one cluster slot); the models set, in another slot,
        # after it. The months are read first: redis-py 8.1's asyncio cluster client breaks ("attached
        # to a different loop") when its first command is queued in a transaction.
        months = await self.months(model, version)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.of(model, version, "ref:meta"), self.keys.of(model, version, "ref:features"))
        if profile is not None:
            pipe.set(self.keys.of(model, version, "ref:features"), orjson.dumps(profile.to_dict()))
        pipe.set(self.keys.of(model, version, "ref"), hist.to_dense_bytes())
        pipe.hset(self.keys.of(model, version, "ref:meta"), mapping={k: str(v) for k, v in meta.items()})
        # A new reference changes every month's adherence: make the metrics recompute. Feature
        # counts were bucketed by the old profile: they restart with the new one.
        for month in months:
            pipe.hincrby(self.count_key(model, version, month), "rev", 1)
            pipe.delete(self.features_key(model, version, month))
        await pipe.execute()
        await self.redis.sadd(self.models_key(), f"{model}:{version}")

    async def save_metrics(self, model: str, version: str, metrics_by_month: Mapping[str, dict]) -> None:
        if metrics_by_month:
            await self.redis.hset(self.keys.of(model, version, "metrics"),
                                  mapping={m: orjson.dumps(v) for m, v in metrics_by_month.items()})

    # ---- reads -----------------------------------------------------------------------------
    async def models(self) -> list[tuple[str, str]]:
        members = await self.redis.smembers(self.models_key())
        return sorted(split_model_key(m) for m in members)

    async def months(self, model: str, version: str) -> list[str]:
        return sorted(m.decode() for m in await self.redis.smembers(self.keys.of(model, version, "months")))

    async def month_revisions(self, model: str, version: str, months: list[str]) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for month in months:
            pipe.hget(self.count_key(model, version, month), "rev")
        return {m: int(r or 0) for m, r in zip(months, await pipe.execute(), strict=True)}

    async def month_ns(self, months: Iterable[tuple[str, str, str]]) -> list[int]:
        """The record count ``n`` of each (model, version, month), in one round trip (0: none yet)."""
        pipe = self.redis.pipeline(transaction=False)
        for model, version, month in months:
            pipe.hget(self.count_key(model, version, month), "n")
        return [int(v or 0) for v in await pipe.execute()]

    async def metrics_field_bytes(self, model: str, version: str, month: str) -> int:
        """Bytes of a month's JSON in the model's metrics hash (HSTRLEN)."""
        return await self.redis.hstrlen(self.keys.of(model, version, "metrics"), month)

    async def worker_counter(self, name: str) -> int:
        """One of the worker's counters (``cm:worker``), 0 before any."""
        return int(await self.redis.hget(self.worker_key(), name) or 0)

    async def records_in(self, months_of: Mapping[tuple[str, str], Iterable[str]]) -> int:
        """Records counted so far in these months of these (model, version)s, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for (model, version), months in months_of.items():
            for month in months:
                pipe.hget(self.count_key(model, version, month), "n")
        return sum(int(v or 0) for v in await pipe.execute())

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
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.of(model, version, "ref"))
        pipe.hgetall(self.keys.of(model, version, "ref:meta"))
        dense, meta = await pipe.execute()
        meta = {k.decode(): v.decode() for k, v in meta.items()}
        if not dense:
            return None, meta
        return ScoreHistogram.from_dense_bytes(dense, float(meta.get("resolution", self.settings.resolution))), meta

    async def reference_meta(self, model: str, version: str) -> dict[str, str]:
        """The reference's card alone (``ref:meta``): it changes whenever the reference is saved again
        (``loaded_at``), so a reader may keep the decoded reference and profile while it does not."""
        meta = await self.redis.hgetall(self.keys.of(model, version, "ref:meta"))
        return {k.decode(): v.decode() for k, v in meta.items()}

    async def feature_profile(self, model: str, version: str) -> FeatureProfile | None:
        raw = await self.redis.get(self.keys.of(model, version, "ref:features"))
        return FeatureProfile.from_dict(orjson.loads(raw)) if raw else None

    async def feature_counts(self, model: str, version: str, months: list[str],
                             profile: FeatureProfile) -> dict[str, FeatureCounter]:
        pipe = self.redis.pipeline(transaction=False)
        for month in months:
            pipe.hgetall(self.features_key(model, version, month))
        return {m: FeatureCounter.from_redis_fields(raw, profile) for m, raw in zip(months, await pipe.execute(), strict=True)}

    async def watermark(self, model: str, version: str) -> str | None:
        """The latest ref_date seen (shown to users; months close by :meth:`closing_watermark`)."""
        raw = await self.redis.get(self.keys.of(model, version, "watermark"))
        return raw.decode() if raw else None

    async def closing_watermark(self, model: str, version: str, topic_partitions: int = 0) -> str | None:
        """The event time up to which the model's records have all arrived: the slowest partition
        still delivering, of the records topic's ``topic_partitions`` when known (see
        :func:`monitor.months.event_time_watermark`)."""
        # Two calls, not a pipeline: a cluster pipeline refuses a keyless TIME. The watermarks are
        # read first, so "now" is never before them (on a cluster TIME is another node's clock).
        raw = await self.redis.hgetall(self.keys.of(model, version, "watermarks"))
        now, _ = await self.redis.time()
        first = raw.pop(b"~first", None)
        partitions = {}
        for partition, value in raw.items():
            day, _, seen = value.decode().partition("|")
            partitions[partition.decode()] = (day, int(seen))
        return event_time_watermark(partitions, now, self.settings.partition_idle_s, topic_partitions,
                                    int(first) if first else None)

    async def alert_states(self, model: str, version: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(self.keys.of(model, version, "alerts"))
        return {k.decode(): orjson.loads(v) for k, v in raw.items()}

    async def metrics_of(self, model: str, version: str, months: list[str]) -> dict[str, dict]:
        """The saved metrics of these months (those not computed yet are left out)."""
        if not months:
            return {}
        raw = await self.redis.hmget(self.keys.of(model, version, "metrics"), months)
        return {m: orjson.loads(v) for m, v in zip(months, raw, strict=True) if v is not None}

    async def metrics(self, model: str, version: str) -> dict[str, dict]:
        raw = await self.redis.hgetall(self.keys.of(model, version, "metrics"))
        return {k.decode(): orjson.loads(v) for k, v in sorted(raw.items())}

    async def worker_counters(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in (await self.redis.hgetall(self.worker_key())).items()}
