"""Limits of the HTTP API, as ASGI middleware (they act before routing and before any parsing):

* ``BodyLimitMiddleware``: a request body larger than ``api_max_body_bytes`` is refused with 413:
  at once when its Content-Length says so, else as soon as the bytes received pass the limit (a
  chunked body is counted as it arrives, never held whole);
* ``WriteRateLimitMiddleware``: the write requests (POST ...) of one client (its token's name, or its
  address) beyond ``api_write_rate`` get 429 with Retry-After (the ``limits`` library's moving window,
  in this process's memory: N API processes allow N times the rate).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import orjson
from starlette.exceptions import HTTPException

from monitor.api.auth import needed_scope


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the body passes the limit: FastAPI re-raises an HTTPException met while
    it reads a body, so the app answers 413 (and the middleware does, when the app did not)."""

    def __init__(self, limit: int):
        super().__init__(413, body_limit_message(limit))


def body_limit_message(limit: int) -> str:
    """
    >>> body_limit_message(64 << 20)
    'request body too large: the limit is 67108864 bytes (MONITOR_API_MAX_BODY_BYTES)'
    """
    return f"request body too large: the limit is {limit} bytes (MONITOR_API_MAX_BODY_BYTES)"


async def send_json(send, status: int, body: dict, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A whole JSON response on an ASGI ``send``."""
    raw = orjson.dumps(body)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": raw})


def declared_length(scope) -> int | None:
    """The request's Content-Length, if it gives a valid one.

    >>> declared_length({"headers": [(b"content-length", b"12")]}), declared_length({"headers": []})
    (12, None)
    """
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``, decided on the headers or while the bytes arrive."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            return await send_json(send, 413, {"detail": body_limit_message(self.max_bytes)},
                                   [(b"connection", b"close")])
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await send_json(send, 413, {"detail": exc.detail}, [(b"connection", b"close")])


class WriteRateLimitMiddleware:
    """429 for a client's write requests beyond ``rate`` (``limits`` notation; empty: no limit).

    The client is ``scope["state"]["client_id"]``, set by the authentication (the token's name), else
    the peer address.
    """

    def __init__(self, app, rate: str):
        from limits import parse_many
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self.app = app
        self.rate = rate
        self.items = parse_many(rate) if rate and rate.strip() else []
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.items and needed_scope(scope["method"]) == "write":
            client = (scope.get("state") or {}).get("client_id") or (scope.get("client") or ("?",))[0]
            for item in self.items:
                if not self.limiter.hit(item, "write", client):
                    reset = self.limiter.get_window_stats(item, "write", client).reset_time
                    retry = max(1, math.ceil(reset - time.time()))
                    return await send_json(
                        send, 429, {"detail": f"rate limit of write requests exceeded ({self.rate} per client, "
                                              f"MONITOR_API_WRITE_RATE): retry in {retry} s"},
                        [(b"retry-after", str(retry).encode())])
        await self.app(scope, receive, send)
