"""Operations of :class:`monitor.state.Store` around the data: outcome counters, health, the epoch,
wiping or measuring a deployment's keys, the classic API's last results; and the synchronous
administrative calls of the fault injection (``monitor faults``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from monitor.settings import Settings


class AdminOps:
    """Mixed into Store (``self.redis``, ``self.keys``, ``self.scripts``, ``self.hist_bytes``)."""

    redis: Any
    keys: Any
    scripts: Any
    hist_bytes: int

    # ---- outcomes (monitor.worker.outcomes; the join itself: monitor.state.joins) --------------------
    async def outcome_counters_raw(self, model: str, version: str) -> dict[str, int]:
        raw = await self.redis.hgetall(self.keys.of(model, version, "outcomes"))
        return {k.decode(): int(v) for k, v in raw.items()}

    # ---- the deployment -----------------------------------------------------------------------
    async def health(self) -> int:
        """PING, then the number of models stored (raises when Redis does not answer)."""
        await self.redis.ping()  # two calls: a cluster pipeline refuses a keyless PING
        return await self.redis.scard(self.keys.models())

    async def drop_epoch(self) -> None:
        """Forget the state epoch (the next worker creates a new one and rebuilds the state)."""
        await self.redis.delete(self.keys.epoch())

    async def wipe(self) -> None:
        """Delete every key of the deployment's prefix."""
        async for key in self.redis.scan_iter(match=self.keys.pattern(), count=1000):
            await self.redis.unlink(key)

    async def footprint(self) -> tuple[int, int]:
        """Bytes (MEMORY USAGE) of the deployment's keys, and the most unseen-category fields a
        feature hash holds for one feature."""
        total, unseen = 0, 0
        async for key in self.redis.scan_iter(match=self.keys.pattern(), count=1000):
            total += await self.redis.memory_usage(key, samples=0) or 0
            if b":features:" in key:
                per_feature = Counter(f.split(b"|")[0] for f in await self.redis.hkeys(key))
                unseen = max(unseen, max(per_feature.values(), default=0))
        return total, unseen

    async def classic_last(self, endpoint: str) -> bytes | None:
        return await self.redis.get(self.keys.classic_last(endpoint))

    async def save_classic_last(self, endpoint: str, raw: bytes) -> None:
        await self.redis.set(self.keys.classic_last(endpoint), raw)


# ---- synchronous administration (fault injection) -----------------------------------------------
def shutdown_redis(settings: Settings) -> None:
    """SHUTDOWN NOSAVE (appendonly: the AOF is fsynced on a clean shutdown); gone already is fine."""
    import redis

    from monitor.connect import redis_client

    try:
        redis_client(settings).shutdown(save=False)
    except redis.ConnectionError:
        pass


def flush_all(settings: Settings) -> None:
    """FLUSHALL: every key gone (the state-loss fault)."""
    from monitor.connect import redis_client

    redis_client(settings).flushall()


def model_master_port(settings: Settings, model: str, version: str) -> int:
    """The port of the Redis Cluster master that holds the model's slot (its hash tag)."""
    from monitor.connect import redis_client
    from monitor.state.keys import Keys

    client = redis_client(settings)
    try:
        return client.get_node_from_key(Keys(settings.key_prefix).base(model, version)).port
    finally:
        client.close()


def busy_script(settings: Settings, seconds: int) -> None:
    """Run a read-only script of ``seconds`` on Redis: past busy-reply-threshold (5 s by default)
    Redis answers BUSY to every other client until it ends."""
    from monitor.connect import redis_client
    from monitor.state.scripts import source

    redis_client(settings, socket_timeout=seconds + 30).eval(source("busy"), 0, seconds)


def refuse_scripts(settings: Settings, seconds: float) -> None:
    """Deny the scripting commands to Redis's default user for ``seconds``, then allow them again."""
    import time

    from monitor.connect import redis_client

    client = redis_client(settings)
    client.acl_setuser("default", enabled=True, nopass=True, categories=["+@all", "-@scripting"],
                       keys=["*"], channels=["*"], reset=False)
    try:
        time.sleep(seconds)
    finally:
        client.acl_setuser("default", enabled=True, nopass=True, categories=["+@all"], keys=["*"], channels=["*"])
