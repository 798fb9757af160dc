"""The state endpoints: health, models, months, one month's metrics, alerts. Read-only, from Redis."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request

from monitor.alerts.lifecycle import AlertEvent
from monitor.api.cache import cache_key
from monitor.api.responses import JSONBytes, dumps
from monitor.api.schemas import (
    MONTH_PATTERN,
    NAME_PATTERN,
    AlertState,
    ErrorBody,
    Health,
    ModelSummary,
    MonthDetail,
    MonthRow,
)
from monitor.state import reads

router = APIRouter(tags=["state"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "Unknown model, version or month."}}

ModelPath = Path(pattern=NAME_PATTERN, description="Model name, e.g. `default`.")
VersionPath = Path(pattern=NAME_PATTERN, description="Model version, e.g. `1`.")


def _store(request: Request):
    return request.app.state.store


async def _cached(request: Request, read) -> JSONBytes:
    """The state read's JSON, from the app's short-lived response cache (monitor.api.cache)."""
    key = cache_key(request.scope)

    async def produce() -> bytes:
        return dumps(await read())

    return JSONBytes(await request.app.state.response_cache.get(key, produce))


@router.get("/health", response_model=Health, summary="Liveness and Redis reachability",
            responses={503: {"model": Health, "description": "Redis does not answer."}})
async def health(request: Request) -> JSONBytes:
    settings = request.app.state.settings
    store = _store(request)
    try:
        models = await store.health()
        body, code = {"status": "ok", "redis": True, "models": models}, 200
    except Exception:  # noqa: BLE001 - any failure of Redis means degraded
        body, code = {"status": "degraded", "redis": False, "models": None}, 503
    if getattr(request.state, "auth_scope", None) is None:  # an anonymous caller learns liveness only
        return JSONBytes({**body, "models": None, "redis_url": None, "key_prefix": None}, status_code=code)
    return JSONBytes({**body, "redis_url": _redact(settings.redis_url), "key_prefix": settings.key_prefix},
                     status_code=code)


def _redact(url: str) -> str:
    """
    >>> _redact("redis://user:secret@host:6379/0")
    'redis://user:***@host:6379/0'
    >>> _redact("redis://127.0.0.1:16379/0")
    'redis://127.0.0.1:16379/0'
    """
    from monitor.connect import redact_url

    return redact_url(url)


@router.get("/models", response_model=list[ModelSummary], summary="Monitored models")
async def models(request: Request) -> JSONBytes:
    """Every (model, version) the worker has seen: its months, records, reference card and firing alerts."""
    return await _cached(request, lambda: reads.models_overview(_store(request)))


@router.get("/models/{model}/versions/{version}/months", response_model=list[MonthRow], responses=NOT_FOUND,
            summary="Months of a model version")
async def months(request: Request, model: str = ModelPath, version: str = VersionPath) -> JSONBytes:
    """One row per month: exact counts, the month window's AUC, Gini, KS adherence, PSI and firing alerts."""
    return await _cached(request, lambda: reads.month_table(_store(request), model, version))


@router.get("/models/{model}/versions/{version}/months/{month}", response_model=MonthDetail, responses=NOT_FOUND,
            summary="Every metric of one month")
async def month(request: Request, model: str = ModelPath, version: str = VersionPath,
                month: str = Path(pattern=MONTH_PATTERN, description="`YYYY-MM`")) -> JSONBytes:
    """Counts and the month, rolling and cumulative windows: n, bad rate, AUC (with its quantization bound
    and standard error), Gini, KS good/bad, KS adherence D / p-value / bound / critical value, PSI and its
    critical value; the alerts firing on this month."""
    return await _cached(request, lambda: reads.month_detail(_store(request), model, version, month))


@router.get("/alerts", response_model=list[AlertEvent], summary="Alert history")
async def alerts(request: Request,
                 status: Literal["firing", "resolved"] | None = Query(None, description="Only events of this status."),
                 model: str | None = Query(None, pattern=NAME_PATTERN),
                 version: str | None = Query(None, pattern=NAME_PATTERN),
                 rule: str | None = Query(None, pattern=NAME_PATTERN, description="ks_adherence, psi, auc, volume"),
                 window: Literal["month", "rolling", "cumulative"] | None = None,
                 month: str | None = Query(None, pattern=MONTH_PATTERN),
                 limit: int = Query(100, ge=1, le=10_000)) -> JSONBytes:
    """Alert events (as published on the alerts topic), newest first, from the history kept in Redis."""
    return await _cached(request, lambda: reads.alert_history(
        _store(request), status=status, model=model, version=version, rule=rule, window=window, month=month,
        limit=limit))


@router.get("/alerts/states", response_model=list[AlertState], summary="Current alert states")
async def alert_states(request: Request,
                       status: Literal["firing", "ok"] | None = Query(None, description="`firing`: firing now."),
                       model: str | None = Query(None, pattern=NAME_PATTERN),
                       version: str | None = Query(None, pattern=NAME_PATTERN)) -> JSONBytes:
    """The state of every alert of every model (ok or firing, with the month judged and the value)."""
    store = _store(request)

    async def read() -> list[dict]:
        keys = [(m, v) for m, v in await reads.model_keys(store)
                if (model is None or m == model) and (version is None or v == version)]
        return [s for s in await reads.alert_states(store, keys) if status is None or s["status"] == status]

    return await _cached(request, read)
