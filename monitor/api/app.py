"""The FastAPI application: one shared async Store per process, opened on startup, closed on shutdown.

Errors: ``NotFound`` -> 404, a path outside the data directory -> 400, any other ``MonitorError``
(data the engine or a model cannot use) -> 422, Redis unreachable -> 503; the body is always
``{"detail": "<what went wrong and what to do>"}``. Invalid request bodies get FastAPI's 422 with
the failing field in ``detail``. Any other exception is a 500 ``{"detail": ..., "error_id": ...}``
whose id the log line carries, with the traceback (the client learns nothing of the failure).

In front of the routes (outermost first): authentication (monitor.api.auth: 401 / 403), the rate
limit of write requests (429) and the body-size limit (413) (monitor.api.limits), the response cache.
``/docs`` is Swagger UI served from the assets of the ``swagger-ui-bundle`` package (no network).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from monitor.api.classic_engine import PathRejected
from monitor.errors import MonitorError, NotFound
from monitor.settings import Settings
from monitor.state import Store

log = logging.getLogger("monitor.api")

DESCRIPTION = """Read-only HTTP face of the credit-monitor state in Redis (the same numbers as
`monitor state`), the classic batch endpoints answered by the same engine, Prometheus metrics at
`/metrics` and a web dashboard at `/`. See docs/api.md."""


REDIS_CONNECTIONS = 64
CACHED_PREFIXES = ("/models", "/alerts", "/dashboard/data")  # GET responses served from the response cache


def connect_store(settings: Settings, max_connections: int = REDIS_CONNECTIONS) -> Store:
    """The API's Store: a bounded pool whose callers wait for a free connection (many concurrent
    requests queue for ``max_connections`` connections instead of failing with "Too many connections")."""
    from monitor.connect import redis_client

    return Store(redis_client(settings, asyncio=True, blocking_pool=max_connections, timeout=10,
                              health_check_interval=30, socket_keepalive=True), settings)


def create_api(settings: Settings, *, measure_lag: bool = True, lag_ttl_s: float = 5.0,
               cache_ttl_s: float = 0.5) -> FastAPI:
    """The API for one deployment (one Redis key prefix).

    ``cache_ttl_s``: how long a state response (models, months, alerts, dashboard data) may be
    served from memory (monitor.api.cache; 0 disables). Half the worker's default metrics interval.

    ``measure_lag``: the exporter measures the worker group's consumer lag on Kafka (at most once per
    ``lag_ttl_s``); without it ``/metrics`` reads Redis only.
    """
    from monitor.alerts.rules import load_alert_config
    from monitor.api import classic, dashboard, docs, metrics, state
    from monitor.api.cache import CachedGetMiddleware, ResponseCache
    from monitor.api.lag import LagProbe

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.store = connect_store(settings)
        try:
            yield
        finally:
            await app.state.store.close()

    from monitor.api.auth import AuthMiddleware, TokenBook, configured_tokens
    from monitor.api.limits import BodyLimitMiddleware, WriteRateLimitMiddleware

    book = TokenBook(configured_tokens(settings))  # a malformed entry stops the start, with its reason
    app = FastAPI(title="credit-monitor", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.alert_config = load_alert_config(settings)
    app.state.lag_probe = LagProbe(settings, ttl_s=lag_ttl_s) if measure_lag else None
    app.state.model_cache = classic.ModelCache()
    app.state.response_cache = ResponseCache(cache_ttl_s)

    install_error_handlers(app, settings)

    # add_middleware puts each one outside the ones before it: the cache is innermost, auth outermost
    app.add_middleware(CachedGetMiddleware, cache=app.state.response_cache, prefixes=CACHED_PREFIXES)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(WriteRateLimitMiddleware, rate=settings.api_write_rate)
    app.add_middleware(AuthMiddleware, book=book, enabled=settings.api_auth == "tokens")
    docs.install(app)
    app.include_router(state.router)
    app.include_router(classic.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    return app


def install_error_handlers(app: FastAPI, settings: Settings) -> None:
    """Every error answers with a JSON ``detail``: 404/400/413/422 for what the client can fix, 503
    while Redis is unreachable, 500 with an error id (the details only in the server log)."""
    from monitor.api import classic

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": without_server_paths(str(exc), settings)}, status_code=404)

    @app.exception_handler(PathRejected)
    async def path_rejected(request: Request, exc: PathRejected) -> JSONResponse:
        return JSONResponse({"detail": without_server_paths(str(exc), settings)}, status_code=400)

    @app.exception_handler(classic.TooManyRecords)
    async def too_many_records(request: Request, exc: MonitorError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(MonitorError)
    async def monitor_error(request: Request, exc: MonitorError) -> JSONResponse:
        return JSONResponse({"detail": without_server_paths(str(exc), settings)}, status_code=422)

    @app.exception_handler(redis.exceptions.ConnectionError)
    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unreachable: %s", exc)
        return JSONResponse({"detail": f"Redis not reachable ({type(exc).__name__}); retry later"}, status_code=503)

    @app.exception_handler(redis.exceptions.RedisClusterException)
    async def cluster_down(request: Request, exc: Exception) -> JSONResponse:
        from monitor.retry import is_transient

        return await (redis_down if is_transient(exc) else unexpected)(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:16]
        log.error("error_id=%s %s %s: %s", error_id, request.method, request.url.path, type(exc).__name__,
                  exc_info=exc)
        return JSONResponse({"detail": f"internal error {error_id}: the server log has the details of this id",
                             "error_id": error_id}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default 422, with a one-line reason first (the full list stays in `errors`).
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        reason = f"{where}: {first.get('msg', 'invalid request')}" + (
            f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        return JSONResponse({"detail": reason, "errors": _jsonable(errors)}, status_code=422)


def without_server_paths(message: str, settings: Settings) -> str:
    """A message for a client: the server's directories (models, data, run) replaced by the setting
    that names them (errors raised deeper, e.g. by the model registry, may name them).

    >>> s = Settings(models_dir="/srv/models", data_dir="/srv/data")
    >>> without_server_paths("no version '9' in /srv/models/default", s)
    "no version '9' in <MONITOR_MODELS_DIR>/default"
    """
    import os
    from pathlib import Path

    names = {"MONITOR_MODELS_DIR": settings.models_dir, "MONITOR_DATA_DIR": settings.data_dir,
             "MONITOR_RUN_DIR": settings.run_dir}
    spellings = []
    for name, path in names.items():
        for spelled in {str(Path(path).resolve()), str(Path(path).absolute()), os.path.normpath(str(path))}:
            if spelled not in (".", "/", ""):
                spellings.append((spelled, f"<{name}>"))
    for spelled, placeholder in sorted(spellings, key=lambda p: -len(p[0])):  # the longest (deepest) first
        message = message.replace(spelled, placeholder)
    return message


def _jsonable(errors: Sequence[Any]) -> list[dict]:
    """Pydantic error dicts without the exception objects they may carry in ``ctx``."""
    out = []
    for e in errors:
        e = {k: v for k, v in e.items() if k != "url"}
        if "ctx" in e:
            e["ctx"] = {k: str(v) for k, v in e["ctx"].items()}
        if "input" in e and not isinstance(e["input"], (str, int, float, bool, type(None))):
            e.pop("input")  # never echo a whole body back
        out.append(e)
    return out


@asynccontextmanager
async def running(app: FastAPI):
    """Run the app's lifespan (startup/shutdown) around a block: for tests and in-process clients."""
    async with app.router.lifespan_context(app):
        yield app


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse to serve a non-loopback address without authentication (MonitorError says what to set).

    >>> check_exposure(Settings(api_auth="off"), "127.0.0.1")
    >>> check_exposure(Settings(api_auth="off"), "0.0.0.0")
    Traceback (most recent call last):
    ...
    monitor.errors.MonitorError: refusing to listen on 0.0.0.0 with MONITOR_API_AUTH=off: authentication may be off only on loopback (127.0.0.1, ::1, localhost)
    """
    from monitor.api.auth import configured_tokens, is_loopback

    if is_loopback(host):
        return
    if settings.api_auth == "off":
        raise MonitorError(f"refusing to listen on {host} with MONITOR_API_AUTH=off: authentication may be off "
                           f"only on loopback (127.0.0.1, ::1, localhost)")
    if not configured_tokens(settings):
        raise MonitorError(f"refusing to listen on {host} without API tokens: create one with `monitor api token "
                           f"--scope read` (and one --scope write for the classic POST endpoints) and set "
                           f"MONITOR_API_TOKENS or MONITOR_API_TOKENS_FILE")


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve the API with uvicorn until interrupted (``monitor api``); see ``check_exposure``."""
    import uvicorn

    check_exposure(settings, host)

    uvicorn.run(create_api(settings), host=host, port=port, log_level=log_level, access_log=False,
                proxy_headers=False, server_header=False)
