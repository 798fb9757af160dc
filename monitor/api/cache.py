"""A short-lived cache of serialised state responses, with single flight.

The worker recomputes metrics every ``MONITOR_METRICS_INTERVAL_S`` (1 s by default), so a state
response may be served for a fraction of that without being staler than the state itself. Under
load, N concurrent requests for one URL then cost one Redis read and one serialisation; a miss
that is being computed is awaited by every request that arrives meanwhile (single flight).
Errors are not cached. ``ttl_s = 0`` disables it.

>>> import asyncio
>>> calls = []
>>> async def produce():
...     calls.append(1); await asyncio.sleep(0.01); return b"x"
>>> async def demo():
...     cache = ResponseCache(ttl_s=10)
...     got = await asyncio.gather(*(cache.get("/k", produce) for _ in range(5)))
...     return got, len(calls)
>>> asyncio.run(demo())
([b'x', b'x', b'x', b'x', b'x'], 1)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

MAX_ENTRIES = 4096


class ResponseCache:
    def __init__(self, ttl_s: float = 0.5):
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, bytes]] = {}
        self._pending: dict[str, asyncio.Future] = {}

    async def get(self, key: str, produce: Callable[[], Awaitable[bytes]]) -> bytes:
        if self.ttl_s <= 0:
            return await produce()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]
        pending = self._pending.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request was cancelled
                return await produce()  # the request computing it was cancelled: compute it here
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await produce()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        else:
            future.set_result(value)
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl_s, value)
            return value
        finally:
            del self._pending[key]

    def peek(self, key: str) -> bytes | None:
        """The fresh entry of ``key``, or None."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def clear(self) -> None:
        self._entries.clear()


def cache_key(scope) -> str:
    """The cache key of a request: its path and raw query string."""
    return scope["path"] + "?" + scope["query_string"].decode("latin-1")


class CachedGetMiddleware:
    """ASGI middleware answering a GET from the cache, before routing, when a fresh entry exists.

    Entries are only ever stored by the handlers (after validating the request and reading Redis),
    so a hit is exactly what the handler answered for that URL less than ``ttl_s`` ago.
    """

    def __init__(self, app, cache: ResponseCache, prefixes: tuple[str, ...]):
        self.app = app
        self.cache = cache
        self.prefixes = prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(self.prefixes):
            body = self.cache.peek(cache_key(scope))
            if body is not None:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
