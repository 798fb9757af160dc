"""Redis as the benchmarks see it (``monitor bench``): one client, the deployment's :class:`Store` on it,
and the server's own figures (INFO, CONFIG, MEMORY USAGE of a model's keys by kind)."""

from __future__ import annotations

from typing import Any

from monitor.settings import Settings
from monitor.state.store import Store


def key_kind(key: bytes, base: str) -> str:
    """The first part of a key's name after the model's key base: ``hist``, ``count``, ``join``...

    >>> key_kind(b"cm:{m:1}:join:3:17", "cm:{m:1}"), key_kind(b"cm:{m:1}:offsets", "cm:{m:1}")
    ('join', 'offsets')
    """
    return key.decode()[len(base) + 1:].split(":", 1)[0]


def merge_info(per_node: dict[str, dict]) -> dict[str, Any]:
    """INFO of a whole cluster from each master's: numbers summed (memory, keys, calls), the rest the
    first node's; a nested section (commandstats' per-command dicts) merged the same way.

    >>> merge_info({"a": {"used_memory": 10, "redis_version": "7.0", "cmdstat_get": {"calls": 2}},
    ...             "b": {"used_memory": 5, "redis_version": "7.0", "cmdstat_get": {"calls": 1}}})
    {'used_memory': 15, 'redis_version': '7.0', 'cmdstat_get': {'calls': 3}}
    """
    out: dict[str, Any] = {}
    for info in per_node.values():
        for name, value in info.items():
            if isinstance(value, dict):
                out[name] = merge_info({"seen": out.get(name, {}), "node": value})
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and name in out:
                out[name] += value
            else:
                out.setdefault(name, value)
    return out


class Probe:
    """One asyncio client for a benchmark run; ``store(settings)`` for each phase's deployment.

    On a Redis Cluster the server's figures are the masters' together: INFO summed over them
    (:func:`merge_info`: ``used_memory`` is the cluster's), CONFIG SET, SLOWLOG and CONFIG RESETSTAT
    on each, the slow log gathered from all; LATENCY (reset, latest) goes to one node only (redis-py's
    latency commands take no node target), so the latency spikes of a cluster run are one master's."""

    def __init__(self, settings: Settings, **overrides: Any):
        from monitor.connect import is_cluster_url, redis_client

        self._client = redis_client(settings, asyncio=True, **overrides)
        self._all: dict[str, Any] = {}  # the target_nodes keyword on a cluster: every master
        if is_cluster_url(settings.redis_url):
            self._all = {"target_nodes": self._client.PRIMARIES}

    async def close(self) -> None:
        await self._client.aclose()

    def store(self, settings: Settings) -> Store:
        """The state of ``settings``' deployment (its key prefix), on the probe's client."""
        return Store(self._client, settings)

    async def result(self, key: str) -> dict[str, str]:
        """A hash a benchmark child writes its figures to (``monitor.bench.baselines.write_result``)."""
        return {k.decode(): v.decode() for k, v in (await self._client.hgetall(key)).items()}

    async def info(self, section: str) -> dict[str, Any]:
        if self._all:
            return merge_info(await self._client.info(section, **self._all))
        return await self._client.info(section)

    async def config(self, pattern: str) -> dict[str, str]:
        return await self._client.config_get(pattern)  # one node's: the nodes share their configuration

    async def _config_set(self, name: str, value: Any) -> None:
        await self._client.config_set(name, value, **self._all)

    async def preload(self, script: str) -> None:
        """SCRIPT LOAD a state script (:mod:`monitor.state.scripts`): no NOSCRIPT round in the figures."""
        from monitor.state.scripts import source

        await self._client.script_load(source(script))

    async def slowlog_from(self, threshold_us: int, max_len: int | None = None) -> None:
        """Log every command slower than ``threshold_us`` from now on (SLOWLOG, emptied)."""
        await self._config_set("slowlog-log-slower-than", threshold_us)
        if max_len is not None:
            await self._config_set("slowlog-max-len", max_len)
        await self._client.slowlog_reset(**self._all)

    async def script_durations(self, sha: bytes) -> list[int]:
        """Microseconds of each logged EVALSHA of the script ``sha``."""
        entries = await self._client.slowlog_get(10_000, **self._all)
        if isinstance(entries, dict):  # a cluster: each master's log
            entries = [e for node_entries in entries.values() for e in node_entries]
        return [e["duration"] for e in entries if len(e["command"].split()) > 1 and e["command"].split()[1] == sha]

    async def latency_from(self, threshold_ms: int) -> None:
        await self._config_set("latency-monitor-threshold", threshold_ms)
        await self._client.latency_reset()

    async def latency_latest(self) -> dict:
        """LATENCY LATEST: event -> its latest spike (ms)."""
        return {row[0]: row[3] for row in await self._client.latency_latest()}

    async def reset_stats(self) -> None:
        await self._client.config_resetstat(**self._all)

    async def command_calls(self) -> dict[str, int]:
        """INFO commandstats: command -> calls since the last :meth:`reset_stats`."""
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in (await self.info("commandstats")).items()}

    async def restore_logs(self) -> None:
        """The server's default SLOWLOG threshold, and no latency monitor."""
        await self._config_set("slowlog-log-slower-than", 10_000)
        await self._config_set("latency-monitor-threshold", 0)

    async def memory_by_kind(self, base: str) -> dict[str, dict]:
        """``MEMORY USAGE`` of every key under ``base`` (SCAN), grouped by :func:`key_kind`, each
        ``{"keys": n, "bytes": b}``."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in base) + ":*"
        keys = [k async for k in self._client.scan_iter(match=pattern, count=5000)]
        groups: dict[str, dict] = {}
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            async with self._client.pipeline(transaction=False) as pipe:
                for k in chunk:
                    pipe.memory_usage(k, samples=0)
                sizes = await pipe.execute()
            for k, size in zip(chunk, sizes, strict=True):
                g = groups.setdefault(key_kind(k, base), {"keys": 0, "bytes": 0})
                g["keys"] += 1
                g["bytes"] += size or 0
        return groups


async def write_result(settings: Settings, key: str, figures: dict) -> None:
    """A benchmark child's figures, into the hash its parent polls (:meth:`Probe.result`)."""
    from monitor.connect import redis_client

    client = redis_client(settings, asyncio=True)
    try:
        await client.hset(key, mapping=figures)
    finally:
        await client.aclose()


class NaiveHistograms:
    """The naive baseline's state (``monitor.bench.baselines``): one HINCRBY per record into a hash per
    (model, version, month, label), field = score bin, under its own key prefix."""

    def __init__(self, settings: Settings, prefix: str):
        from monitor.connect import redis_client
        from monitor.state.keys import Keys

        self._client = redis_client(settings, asyncio=True)
        self._keys = Keys(prefix)

    async def add(self, model: str, version: str, month: str, label: str, score_bin: int) -> None:
        await self._client.hincrby(self._keys.hist(model, version, month, label), str(score_bin), 1)
