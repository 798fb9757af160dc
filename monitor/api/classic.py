"""The classic batch endpoints: a batch holds its raw scores, so AUC and KS are computed on them
(scikit-learn / scipy, ``"scores": "raw"``); a reference known only as a histogram is compared on
the monitor's engine (monitor.stats, ``"scores": "histogram"``). See monitor.api.classic_engine.

* ``POST /v1/performance/{model_from}``: a JSON list of records -> volumetry per month, ROC AUC, Gini;
* ``GET /v1/performance/``: the last result;
* ``POST /v1/aderencia/``: ``{"path": ...}`` a file in the data directory -> KS adherence and PSI
  against the model's test base;
* ``GET /v1/aderencia/``: the last result.

The last results live in Redis (``{prefix}:classic:performance:last`` and ``...:aderencia:last``),
so they survive restarts and every API process shares them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError

from monitor.api.classic_engine import (
    ClassicRecord,
    adherence_of,
    confine,
    performance_of,
    records_frame,
)
from monitor.api.responses import JSONBytes, dumps
from monitor.api.schemas import (
    NAME_PATTERN,
    AdherenceRequest,
    AdherenceResult,
    ErrorBody,
    PerformanceResult,
)
from monitor.errors import MonitorError, NotFound
from monitor.state import reads

router = APIRouter(prefix="/v1", tags=["classic"])
ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "Unknown model, no reference, or no file."},
          400: {"model": ErrorBody, "description": "A path outside the data directory."},
          422: {"description": "Invalid body, or data the model cannot score (the reason is in `detail`)."}}

PERFORMANCE_EXAMPLE = [
    {"REF_DATE": "2024-01-15", "TARGET": 0, "score": 0.12},
    {"REF_DATE": "2024-01-20", "TARGET": 1, "score": 0.71},
    {"REF_DATE": "2024-02-03", "TARGET": 1, "score": 0.46},
    {"REF_DATE": "2024-02-10", "TARGET": 0, "score": 0.58},
    {"REF_DATE": "2024-02-17", "TARGET": 0, "score": 0.08},
]


async def save_last(store, endpoint: str, body: dict) -> JSONBytes:
    """Keep the result as the endpoint's last one (shared by every API process) and answer it."""
    raw = dumps(body)
    await store.save_classic_last(endpoint, raw)
    return JSONBytes(raw)


async def read_last(store, endpoint: str, missing: str) -> JSONBytes:
    raw = await store.classic_last(endpoint)
    if raw is None:
        raise NotFound(missing)
    return JSONBytes(raw)

class ModelCache:
    """Loaded models by (registry, name, version, sha256): loading is checked and slow, scoring is not."""

    def __init__(self, size: int = 8):
        self.size = size
        self._models: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, registry, card):
        key = (str(registry.root), card.name, card.version, card.sha256)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        model = registry.load(card.name, card.version)
        with self._lock:
            self._models[key] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model


def _registry(settings):
    from models.mlflow_registry import registry_for  # the on-disk registry unless MONITOR_MLFLOW_TRACKING_URI

    return registry_for(settings)


def _score(request: Request, registry, card, frame) -> tuple[np.ndarray, dict]:
    """Score a frame with a registered model (in a worker thread); returns scores and unseen categories."""
    from models.train import score_frame

    model = request.app.state.model_cache.get(registry, card)
    try:
        scores, report = score_frame(model, frame)
    except MonitorError as exc:
        raise MonitorError(f"cannot score with {card.name}:{card.version}: {exc}") from None
    return scores, report.unseen


async def _monitored_versions(store, model: str) -> list[str]:
    versions = [v for m, v in await reads.model_keys(store) if m == model]
    return sorted(versions, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v))


# ---- performance ------------------------------------------------------------------------------
RECORDS_ADAPTER = TypeAdapter(list[ClassicRecord])
RECORDS_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ClassicRecord"},
               "description": "Records: REF_DATE, TARGET and a score or the features (at most "
                              "MONITOR_API_MAX_RECORDS)."},
    "example": PERFORMANCE_EXAMPLE}}}}


class TooManyRecords(MonitorError):
    """More records in one request than ``api_max_records`` (HTTP 413)."""


def _validation_error(exc: ValidationError) -> RequestValidationError:
    """pydantic's errors as FastAPI's, located in the body (``body.0.TARGET``)."""
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])


async def read_records(request: Request, max_records: int) -> list[ClassicRecord]:
    """The JSON list of records of the body, counted before any record is validated (a list longer
    than ``max_records`` costs its parse only). The body is at most MONITOR_API_MAX_BODY_BYTES
    (monitor.api.limits)."""
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": exc.msg}}]) from None
    if isinstance(data, list) and len(data) > max_records:
        raise TooManyRecords(f"{len(data)} records in one request; the limit is {max_records} records "
                             f"(MONITOR_API_MAX_RECORDS): split the request")
    if isinstance(data, list) and not data:
        raise RequestValidationError([{"type": "too_short", "loc": ("body",), "input": [],
                                       "msg": "List should have at least 1 item after validation, not 0"}])
    try:
        return await asyncio.to_thread(RECORDS_ADAPTER.validate_python, data)
    except ValidationError as exc:
        raise _validation_error(exc) from None


def readable_frame(path, shown: str, read_frame):
    """The file as a frame; a file that is not a readable CSV / JSON list is a MonitorError naming the
    file (as the client gave it) and the kind of failure, never the parser's message (it may quote the file)."""
    try:
        return read_frame(path)
    except MonitorError:
        raise MonitorError(f"{shown}: unsupported file type or not a list of records (use a .csv, .csv.gz or "
                           f".json list of records)") from None
    except (ValueError, UnicodeError, OSError, EOFError) as exc:  # pandas' ParserError is a ValueError
        raise MonitorError(f"{shown}: cannot be read as {_kind(shown)} ({type(exc).__name__})") from None


def _kind(path: str) -> str:
    """
    >>> _kind("a.csv.gz"), _kind("b.json")
    ('CSV', 'a JSON list of records')
    """
    return "a JSON list of records" if ".json" in path.lower() else "CSV"


@router.post("/performance/{model_from}", response_model=PerformanceResult,
             responses={**ERRORS, 413: {"model": ErrorBody, "description": "More records than MONITOR_API_MAX_RECORDS, "
                                                                          "or a body over MONITOR_API_MAX_BODY_BYTES."}},
             summary="Volumetry and ROC AUC of a list of records", openapi_extra=RECORDS_BODY)
async def post_performance(
        request: Request,
        model_from: str = Path(pattern=NAME_PATTERN, description="A registered model (e.g. `default`, `enhanced`) "
                                                                "or a monitored one."),
        version: str | None = Query(None, pattern=NAME_PATTERN, description="Registered version (default: latest)."),
) -> JSONBytes:
    """Records per month (REF_DATE) and ROC AUC / Gini / KS good/bad per month and over the request, on
    the raw scores (scikit-learn ``roc_auc_score``, scipy ``ks_2samp``; ``"scores": "raw"``).

    A record with a ``score`` is taken as scored; a record without one is scored by the registered
    model ``model_from`` from its features. ``model_from`` must be registered (``monitor models
    list``) or monitored (``GET /models``), else 404."""
    settings = request.app.state.settings
    records = await read_records(request, settings.api_max_records)  # a bad body is refused before Redis is read
    store = request.app.state.store
    registry = _registry(settings)
    # The registry may be an MLflow server (HTTP calls, downloads): never on the event loop
    registered = await asyncio.to_thread(registry.versions, model_from)
    monitored = await _monitored_versions(store, model_from)
    if not registered and not monitored:
        known = sorted(set(await asyncio.to_thread(registry.names)) | {m for m, _ in await reads.model_keys(store)})
        raise NotFound(f"unknown model {model_from!r}: it is neither registered (MONITOR_MODELS_DIR) nor monitored"
                       + (f" (known: {', '.join(known)})" if known else " (no model is known yet: "
                          "train one with `monitor models train`)"))
    unscored = [i for i, r in enumerate(records) if r.score is None]
    if unscored and not registered:
        raise NotFound(f"{len(unscored)} records have no score and {model_from!r} is not a registered model "
                       f"that could score them; send scores or register the model")
    card = await asyncio.to_thread(registry.card, model_from, version) if registered else None

    def compute() -> dict:
        frame = records_frame(records)
        scores = frame["score"].to_numpy(dtype=float).copy()
        unseen: dict = {}
        if unscored:
            model_scores, unseen = _score(request, registry, card, frame.iloc[unscored])
            scores[unscored] = model_scores
        return {**performance_of(frame, scores, settings.resolution, settings.max_months_per_model),
                "scored_by_model": len(unscored),
                "unseen_categories": unseen}

    result = await asyncio.to_thread(compute)
    body = {"endpoint": "performance", "model": model_from,
            "model_version": card.version if (card is not None and unscored) else None,
            **result, "computed_at": dt.datetime.now(dt.timezone.utc)}
    return await save_last(store, "performance", body)


@router.get("/performance/", response_model=PerformanceResult, responses={404: {"model": ErrorBody}},
            summary="The last performance result")
async def get_performance(request: Request) -> JSONBytes:
    store = request.app.state.store
    return await read_last(store, "performance", "no performance result yet: POST /v1/performance/{model_from} first")


# ---- aderencia (adherence) ------------------------------------------------------------------------
async def adherence_reference(store, registry, body: AdherenceRequest) -> tuple:
    """What a file is compared with: ``(card, histogram, raw test scores or None, version, source)``, from
    the registry card when it has a reference, else from the reference loaded in Redis."""
    registered = await asyncio.to_thread(registry.versions, body.model)
    card = await asyncio.to_thread(registry.card, body.model, body.version) if registered else None
    reference, source, version, reference_raw = None, None, None, None
    if card is not None and (card.get("reference") or {}).get("histogram"):
        from models.registry import reference_histogram, reference_scores

        reference, version = reference_histogram(card), card.version
        reference_raw = reference_scores(card)  # None for a card registered before issue 19: histogram path
        source = f"registry card {card.name}:{card.version} ({(card.get('reference') or {}).get('source', 'test split')})"
    else:
        version = body.version or (card.version if card is not None else None)
        if version is None:
            monitored = await _monitored_versions(store, body.model)
            if not monitored:
                raise NotFound(f"unknown model {body.model!r}: not registered (MONITOR_MODELS_DIR) and not monitored")
            version = monitored[-1]
        reference, meta = await store.reference(body.model, version)
        if reference is None:
            raise NotFound(f"model {body.model}:{version} has no reference: register the model "
                           f"(`monitor models train`) or load one (`monitor reference load`)")
        source = f"redis reference of {body.model}:{version} ({meta.get('source', '')})"
    return card, reference, reference_raw, version, source


@router.post("/aderencia/", response_model=AdherenceResult, responses=ERRORS,
             summary="KS adherence and PSI of a file against the model's test base")
async def post_aderencia(request: Request, body: AdherenceRequest = Body(
        ..., examples=[{"path": "data/credit_data_2024-06.csv"},
                       {"path": "scored.csv", "model": "synthetic", "version": "1", "score_column": "score"}])
) -> JSONBytes:
    """Reads the file (CSV, CSV.gz or JSON list) inside the data directory, scores it with the registered
    model (or takes ``score_column``), and compares the scores with the model's reference: the test split
    of the registry card (KS on its raw scores, ``"scores": "raw"``; on its histogram for a card without
    them), else the histogram loaded in Redis (``monitor reference load``, ``"scores": "histogram"``)."""
    from producers.files import DATE_COLUMNS, read_frame, scores_of

    settings = request.app.state.settings
    path = confine(settings.data_dir, body.path)
    store = request.app.state.store
    registry = _registry(settings)
    card, reference, reference_raw, version, source = await adherence_reference(store, registry, body)
    if body.score_column is None and card is None:
        raise NotFound(f"{body.model!r} is not a registered model that could score the file; "
                       f"name the file's score column with score_column")

    def compute() -> dict:
        frame = readable_frame(path, body.path, read_frame)
        unseen: dict = {}
        if body.score_column is not None:
            if body.score_column not in frame.columns:  # the file's own columns are not told: it may be any file
                raise MonitorError(f"{body.path}: no score column {body.score_column!r}")
            scores = scores_of(frame, body.score_column, body.path)
        else:
            scores, unseen = _score(request, registry, card, frame)
        date_col = next((c for c in DATE_COLUMNS if c in frame.columns), None)
        months = None
        if date_col is not None:
            import pandas as pd

            dates = pd.to_datetime(frame[date_col], errors="coerce")
            if not dates.isna().any():
                months = dates.dt.strftime("%Y-%m").to_numpy()
        return {**adherence_of(scores, reference, months, reference_raw), "unseen_categories": unseen}

    result = await asyncio.to_thread(compute)
    out = {"endpoint": "aderencia", "path": body.path, "model": body.model, "model_version": version,
           "scored_by": "column" if body.score_column is not None else "model", "score_column": body.score_column,
           "reference": source, **result, "computed_at": dt.datetime.now(dt.timezone.utc)}
    return await save_last(store, "aderencia", out)


@router.get("/aderencia/", response_model=AdherenceResult, responses={404: {"model": ErrorBody}},
            summary="The last adherence result")
async def get_aderencia(request: Request) -> JSONBytes:
    store = request.app.state.store
    return await read_last(store, "aderencia", "no adherence result yet: POST /v1/aderencia/ first")
