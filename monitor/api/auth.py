"""API bearer tokens: parsing the configured entries, hashing, scopes.

A token is a random string (``monitor api token``); the settings hold only its SHA-256, as entries
``scope:sha256hex`` or ``name:scope:sha256hex`` (``MONITOR_API_TOKENS``, comma or newline
separated, and/or one per line in ``MONITOR_API_TOKENS_FILE``). Two scopes: ``read`` (state, alerts,
metrics, dashboard) and ``write`` (the classic POST endpoints, anything that changes state);
``write`` implies ``read``.

>>> token = "s3cret-token"
>>> book = TokenBook(parse_tokens(f"prom:read:{hash_token(token)}"))
>>> book.identify(token)
TokenEntry(name='prom', scope='read', digest='...')
>>> book.identify("wrong") is None
True
>>> allows("write", "read"), allows("read", "write")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from monitor.errors import MonitorError

Scope = Literal["read", "write"]
SCOPES: tuple[str, ...] = ("read", "write")
TOKEN_BYTES = 32


class TokenConfigError(MonitorError):
    """A malformed token entry in the settings."""


@dataclass(frozen=True)
class TokenEntry:
    """One configured token: a name (for logs and rate limits), its scope and the SHA-256 of the token."""

    name: str
    scope: str
    digest: str

    def __repr__(self) -> str:  # the digest is not secret, but nothing gains from printing it
        return f"TokenEntry(name={self.name!r}, scope={self.scope!r}, digest='...')"


def hash_token(token: str) -> str:
    """The SHA-256 hex digest the settings store for ``token``.

    >>> hash_token("abc")
    'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    """
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new random token (256 bits, URL-safe).

    >>> len(new_token()) >= 43 and new_token() != new_token()
    True
    """
    return secrets.token_urlsafe(TOKEN_BYTES)


def parse_entry(text: str) -> TokenEntry:
    """One ``[name:]scope:sha256hex`` entry (an unnamed one is named after its digest).

    >>> parse_entry("ci:write:" + "ab" * 32).name
    'ci'
    >>> parse_entry("read:" + "AB" * 32)
    TokenEntry(name='read-abababab', scope='read', digest='...')
    >>> parse_entry("admin:" + "ab" * 32)
    Traceback (most recent call last):
    ...
    monitor.api.auth.TokenConfigError: API token entry 'admin:abab...': scope 'admin' is not one of read, write
    >>> parse_entry("read:s3cret")
    Traceback (most recent call last):
    ...
    monitor.api.auth.TokenConfigError: API token entry 'read:s3cr...': expected the 64 hex digits of the token's SHA-256 (`monitor api token` prints the entry), not the token itself
    """
    parts = text.strip().split(":")
    shown = text.strip()[: text.strip().rfind(":") + 5] + "..."  # never echo a whole token given by mistake
    if len(parts) == 2:
        scope, digest = parts
        name = None
    elif len(parts) == 3:
        name, scope, digest = parts
    else:
        raise TokenConfigError(f"API token entry {shown!r}: expected scope:sha256hex or name:scope:sha256hex")
    if scope not in SCOPES:
        raise TokenConfigError(f"API token entry {shown!r}: scope {scope!r} is not one of {', '.join(SCOPES)}")
    digest = digest.lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise TokenConfigError(f"API token entry {shown!r}: expected the 64 hex digits of the token's SHA-256 "
                               f"(`monitor api token` prints the entry), not the token itself")
    return TokenEntry(name or f"{scope}-{digest[:8]}", scope, digest)


def parse_tokens(text: str | None) -> list[TokenEntry]:
    """Entries separated by commas or newlines; blank ones and ``#`` comments are skipped.

    >>> [e.name for e in parse_tokens("a:read:" + "0" * 64 + ", # note\\n b:write:" + "1" * 64)]
    ['a', 'b']
    >>> parse_tokens("")
    []
    """
    entries = []
    for line in (text or "").splitlines():
        for item in line.split("#", 1)[0].split(","):
            if item.strip():
                entries.append(parse_entry(item))
    return entries


def configured_tokens(settings) -> list[TokenEntry]:
    """Every token of the settings: ``api_tokens`` and the lines of ``api_tokens_file``."""
    entries = parse_tokens(settings.api_tokens)
    if settings.api_tokens_file is not None:
        path = Path(settings.api_tokens_file)
        try:
            entries += parse_tokens(path.read_text())
        except OSError as exc:
            raise TokenConfigError(f"cannot read MONITOR_API_TOKENS_FILE: {exc.strerror}") from None
    return entries


def allows(granted: str, needed: str) -> bool:
    """Whether a token of scope ``granted`` may do what needs ``needed`` (write implies read).

    >>> allows("read", "read"), allows("write", "write")
    (True, True)
    """
    return granted == needed or (granted == "write" and needed == "read")


class TokenBook:
    """The configured tokens; looks a presented token up by its hash, in constant time per entry."""

    def __init__(self, entries: list[TokenEntry]):
        self.entries = list(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def identify(self, token: str) -> TokenEntry | None:
        """The entry of ``token``, or None. Every entry is compared (no early exit), with
        ``hmac.compare_digest``, so the time taken says nothing about which digits matched."""
        digest = hash_token(token)
        found = None
        for entry in self.entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry
        return found


def needed_scope(method: str) -> str:
    """Reads (GET, HEAD) need ``read``; anything else changes state and needs ``write``.

    >>> needed_scope("GET"), needed_scope("POST"), needed_scope("DELETE")
    ('read', 'write', 'write')
    """
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "write"


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address or ``localhost``) is the loopback interface.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    >>> is_loopback("10.1.2.3"), is_loopback(None)
    (False, False)
    """
    import ipaddress

    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# ---- the ASGI middleware ---------------------------------------------------------------------------
OPEN_PATHS = frozenset({"/health", "/docs", "/openapi.json", "/login"})
"""Answered without a token: liveness, the API's description (no data) and the dashboard's login form."""
OPEN_PREFIXES = ("/static/",)  # bundled assets: plotly.js, Swagger UI
DASHBOARD = "/"
COOKIE = "monitor_token"
COOKIE_SAFE = re.compile(r"[A-Za-z0-9._~+/=-]{1,512}")  # what `monitor api token` makes; nothing to escape
LOGIN_BODY_BYTES = 4096


def bearer_token(scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header.

    >>> bearer_token({"headers": [(b"authorization", b"Bearer abc")]}), bearer_token({"headers": []})
    ('abc', None)
    >>> bearer_token({"headers": [(b"authorization", b"Basic abc")]}) is None
    True
    """
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() != "bearer":
                return None
            return token.strip() or None
    return None


def cookie_token(scope) -> str | None:
    """The dashboard's token cookie.

    >>> cookie_token({"headers": [(b"cookie", b"a=1; monitor_token=xyz")]})
    'xyz'
    """
    from http.cookies import SimpleCookie

    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie header is no credential
                return None
            return jar[COOKIE].value if COOKIE in jar else None
    return None


def query_token(scope) -> str | None:
    """``?token=...`` of the dashboard URL (exchanged once for the cookie).

    >>> query_token({"query_string": b"token=a%2Bb"})
    'a+b'
    """
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def token_cookie(token: str, secure: bool) -> bytes:
    """Set-Cookie for the dashboard: HttpOnly (no script reads it), SameSite=Strict (no other site sends it)."""
    return (f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")).encode()


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>credit-monitor: sign in</title>
<style>body{font-family:system-ui,sans-serif;margin:4rem auto;max-width:28rem}input{width:100%;padding:.4rem}
button{margin-top:.6rem;padding:.4rem 1rem}.error{color:#b00}</style></head>
<body><h1>credit-monitor</h1><p>The dashboard needs an API token (scope <code>read</code>):
<code>monitor api token --scope read</code> creates one.</p>__ERROR__
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="off" autofocus>
</label><button type="submit">Open the dashboard</button></form></body></html>
"""


async def send_html(send, status: int, page: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    raw = page.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(raw)).encode()),
                            (b"cache-control", b"no-store"), *headers]})
    await send({"type": "http.response.body", "body": raw})


async def read_small_body(receive, limit: int) -> bytes | None:
    """The whole body if it is at most ``limit`` bytes, else None."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            return None
        if not message.get("more_body"):
            return body


class AuthMiddleware:
    """Bearer-token authentication and scopes for every request but the open paths.

    A token comes in ``Authorization: Bearer <token>``; the dashboard's browser may instead hold it
    in an HttpOnly cookie (set by ``/?token=...`` or the login form), which only ever grants ``read``:
    a request another site makes the browser send can change nothing. 401: no or unknown token;
    403: a token whose scope does not allow the request. The request's client id (the token's name)
    goes into ``scope["state"]["client_id"]`` for the rate limit, the scope granted (None: anonymous,
    on an open path) into ``scope["state"]["auth_scope"]``.

    With ``enabled`` False (``MONITOR_API_AUTH=off``) every request is allowed, but only from loopback.
    """

    def __init__(self, app, book: TokenBook, enabled: bool = True):
        self.app = app
        self.book = book
        self.enabled = enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        peer = (scope.get("client") or (None,))[0]
        state = scope.setdefault("state", {})
        state["client_id"] = peer or "?"
        if not self.enabled:
            if not is_loopback(peer):
                return await self._deny(send, 403, "authentication is off (MONITOR_API_AUTH=off): only loopback "
                                                   "clients are answered")
            state["auth_scope"] = "write"
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path == "/login" and method == "POST":
            return await self._login(scope, receive, send)
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            bearer = bearer_token(scope)
            entry = self.book.identify(bearer) if bearer is not None else None
            state["auth_scope"] = entry.scope if entry is not None else None  # /health tells more to a client
            return await self.app(scope, receive, send)
        if path == DASHBOARD and method == "GET" and query_token(scope) is not None:
            return await self._exchange(scope, send, query_token(scope))
        token, granted_by_cookie = bearer_token(scope), False
        if token is None:
            token, granted_by_cookie = cookie_token(scope), True
        if token is None:
            if path == DASHBOARD:
                return await send_html(send, 401, LOGIN_PAGE.replace("__ERROR__", ""))
            return await self._deny(send, 401, self._missing())
        entry = self.book.identify(token)
        if entry is None:
            if path == DASHBOARD:
                return await send_html(send, 401, LOGIN_PAGE.replace(
                    "__ERROR__", '<p class="error">That token is not valid.</p>'))
            return await self._deny(send, 401, "invalid token: it matches none of the configured API tokens "
                                               "(MONITOR_API_TOKENS / MONITOR_API_TOKENS_FILE)")
        granted = "read" if granted_by_cookie else entry.scope
        needed = needed_scope(method)
        if not allows(granted, needed):
            how = "the dashboard cookie only reads" if granted_by_cookie else f"token {entry.name!r} has scope {granted!r}"
            return await self._deny(send, 403, f"{method} {path} needs a token of scope {needed!r}; {how}")
        state["client_id"] = f"token:{entry.name}"
        state["auth_scope"] = granted
        await self.app(scope, receive, send)

    def _missing(self) -> str:
        if not self.book:
            return ("missing bearer token, and no API token is configured: create one with `monitor api token "
                    "--scope read` and put its entry in MONITOR_API_TOKENS")
        return "missing bearer token: send the header `Authorization: Bearer <token>`"

    async def _deny(self, send, status: int, detail: str) -> None:
        from monitor.api.limits import send_json

        headers = [(b"www-authenticate", b'Bearer realm="credit-monitor"')] if status == 401 else []
        await send_json(send, status, {"detail": detail}, headers)

    async def _exchange(self, scope, send, token: str) -> None:
        """``/?token=...``: a valid token becomes the cookie, and the browser goes to ``/`` (the token
        leaves the address bar and the history)."""
        if self.book.identify(token) is None or not COOKIE_SAFE.fullmatch(token):
            return await send_html(send, 401, LOGIN_PAGE.replace(
                "__ERROR__", '<p class="error">That token is not valid.</p>'))
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", b"/"), (b"content-length", b"0"), (b"cache-control", b"no-store"),
                                (b"set-cookie", token_cookie(token, scope.get("scheme") == "https"))]})
        await send({"type": "http.response.body", "body": b""})

    async def _login(self, scope, receive, send) -> None:
        """The login form's POST (``token=...``, form-encoded)."""
        from urllib.parse import parse_qs

        body = await read_small_body(receive, LOGIN_BODY_BYTES)
        values = parse_qs((body or b"").decode("latin-1")).get("token") or [""]
        await self._exchange(scope, send, values[0].strip())
