"""The FastAPI application: one shared async Store per process, opened on startup, closed on shutdown.

Errors: ``NotFound`` -> 404, a path outside the data directory -> 400, any other ``MonitorError``
(data the engine or a model cannot use) -> 422, Redis unreachable -> 503; the body is always
``{"detail": "<what went wrong and what to do>"}``. Invalid request bodies get FastAPI's 422 with
the failing field in ``detail``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

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
    from monitor.api import classic, dashboard, metrics, state
    from monitor.api.cache import CachedGetMiddleware, ResponseCache
    from monitor.api.lag import LagProbe
    from monitor.rules import load_alert_config

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.store = connect_store(settings)
        try:
            yield
        finally:
            await app.state.store.close()

    app = FastAPI(title="credit-monitor", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.alert_config = load_alert_config(settings)
    app.state.lag_probe = LagProbe(settings, ttl_s=lag_ttl_s) if measure_lag else None
    app.state.model_cache = classic.ModelCache()
    app.state.response_cache = ResponseCache(cache_ttl_s)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(PathRejected)
    async def path_rejected(request: Request, exc: PathRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(MonitorError)
    async def monitor_error(request: Request, exc: MonitorError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(redis.exceptions.ConnectionError)
    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("Redis unreachable: %s", exc)
        return JSONResponse({"detail": f"Redis not reachable ({type(exc).__name__}); retry later"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default 422, with a one-line reason first (the full list stays in `errors`).
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        reason = f"{where}: {first.get('msg', 'invalid request')}" + (
            f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        return JSONResponse({"detail": reason, "errors": _jsonable(errors)}, status_code=422)

    app.add_middleware(CachedGetMiddleware, cache=app.state.response_cache, prefixes=CACHED_PREFIXES)
    app.include_router(state.router)
    app.include_router(classic.router)
    app.include_router(metrics.router)
    app.include_router(dashboard.router)
    return app


def _jsonable(errors: list[dict]) -> list[dict]:
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


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve the API with uvicorn until interrupted (``monitor api``)."""
    import uvicorn

    uvicorn.run(create_api(settings), host=host, port=port, log_level=log_level, access_log=False,
                proxy_headers=False, server_header=False)
