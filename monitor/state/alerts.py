"""Alert state operations of :class:`monitor.state.Store`: states, transitions, the outbox, the
history, the due set and the metrics lease, and the notifier's marks (``monitor notify``)."""

from __future__ import annotations

from typing import Any

import orjson


class AlertOps:
    """Mixed into Store (``self.redis``, ``self.keys``, ``self.scripts``)."""

    redis: Any
    keys: Any
    scripts: Any

    # ---- alert states and transitions -------------------------------------------------------
    async def alert_states_raw(self, model: str, version: str) -> dict[bytes, bytes]:
        """The model's alerts hash as stored (field -> JSON state), for AlertEvaluator.apply."""
        return await self.redis.hgetall(self.keys.of(model, version, "alerts"))

    async def alert_state_raw(self, model: str, version: str, field: str) -> bytes | None:
        return await self.redis.hget(self.keys.of(model, version, "alerts"), field)

    async def transition_alert(self, model: str, version: str, field: str, expected: bytes, state: bytes,
                               event: str | bytes, history_cap: int) -> bool:
        """Set the alert's state to ``state`` if it still is ``expected`` (b"" = none) and queue
        ``event`` in the model's outbox, in one step (one script on the model's slot); then record it
        in the history. False when the state moved meanwhile (nothing written).

        The history (``<prefix>:alerts:history``) is one key of the deployment, in another cluster
        slot than the model's keys, so it is written by a second call: a worker killed between the
        two leaves the event out of the history, never out of the outbox (the alerts topic has it)."""
        changed = await self.scripts.transition(
            keys=[self.keys.of(model, version, "alerts"), self.keys.of(model, version, "outbox")],
            args=[field, expected, state, event])
        if changed:
            await self.record_history(event, history_cap)
        return bool(changed)

    async def record_history(self, event: str | bytes, history_cap: int) -> None:
        """Prepend ``event`` to the alert history and keep the newest ``history_cap`` (one key: one slot)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(self.keys.history(), event)
        pipe.ltrim(self.keys.history(), 0, history_cap - 1)
        await pipe.execute()

    # ---- outbox and history -----------------------------------------------------------------
    async def outbox_head(self, model: str, version: str, n: int) -> list[bytes]:
        """The model's oldest ``n`` alert events not yet published."""
        return await self.redis.lrange(self.keys.of(model, version, "outbox"), 0, n - 1)

    async def outbox_drop(self, model: str, version: str, n: int) -> None:
        """Drop the model's oldest ``n`` events from the outbox (they were published)."""
        await self.redis.ltrim(self.keys.of(model, version, "outbox"), n, -1)

    async def alert_history(self, limit: int | None = None) -> list[dict]:
        """The latest alert events, newest first (all of them without ``limit``)."""
        raw = await self.redis.lrange(self.keys.history(), 0, -1 if limit is None else limit - 1)
        return [orjson.loads(event) for event in raw]

    async def alert_history_raw(self, start: int, stop: int) -> list[bytes]:
        return await self.redis.lrange(self.keys.history(), start, stop)

    async def alert_history_len(self) -> int:
        return await self.redis.llen(self.keys.history())

    # ---- the due set and the lease ------------------------------------------------------------
    async def mark_due(self, model: str, version: str) -> None:
        await self.redis.sadd(self.keys.due(), f"{model}:{version}")

    async def due_models(self) -> list[bytes]:
        """Members ``model:version`` of the due set, sorted (as stored: bytes)."""
        return sorted(await self.redis.smembers(self.keys.due()))

    async def unmark_due(self, member: bytes) -> None:
        await self.redis.srem(self.keys.due(), member)

    async def take_lease(self, model: str, version: str, owner: str, ttl_ms: int) -> bool:
        """Take the model's metrics lease if it is free, keep it if ``owner`` holds it."""
        return bool(await self.scripts.lease(keys=[self.keys.of(model, version, "lease")], args=[owner, ttl_ms]))

    # ---- monitor notify -----------------------------------------------------------------------
    async def notify_delivered(self, sink: str, event_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.notify_delivered(sink, event_id)))

    async def notify_mark_delivered(self, sink: str, event_id: str, ttl_s: int) -> None:
        await self.redis.set(self.keys.notify_delivered(sink, event_id), b"1", ttl_s)

    async def notify_firing(self, alert_id: str) -> bytes | None:
        return await self.redis.hget(self.keys.notify_firing(), alert_id)

    async def notify_keep_firing(self, alert_id: str, state: bytes) -> None:
        await self.redis.hset(self.keys.notify_firing(), alert_id, state)

    async def notify_drop_firing(self, alert_id: str) -> None:
        await self.redis.hdel(self.keys.notify_firing(), alert_id)

    async def notify_all_firing(self) -> dict[bytes, bytes]:
        return await self.redis.hgetall(self.keys.notify_firing())
