"""Reads of the Redis state that the API needs, in few round trips (pipelines).

Part of the state layer: uses ``store.redis`` and the key names of :mod:`monitor.state.keys`. The API
and the CLI (monitor.cli.views) read through this module and :class:`monitor.state.Store`. Every function
returns plain JSON-ready dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from monitor.errors import NotFound
from monitor.schema import split_model_key
from monitor.state.keys import LABELS, parse_alert_field
from monitor.state.store import Store

COUNT_FIELDS = ("n", *LABELS)
HISTORY_SCAN_CHUNK = 500


def _counts(raw: dict) -> dict[str, int]:
    return {label: int(raw.get(label.encode(), 0)) for label in COUNT_FIELDS}


def _text_map(raw: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def firing_by_month(states: dict[str, dict]) -> dict[str, list[dict]]:
    """Firing alert states grouped by the month they judged.

    >>> firing_by_month({"psi|month|2024-03": {"status": "firing", "phase": "provisional", "severity": "warning",
    ...                                        "month": "2024-03", "value": 0.2},
    ...                  "auc|month|2024-03": {"status": "ok", "severity": "warning", "month": "2024-03"}})
    {'2024-03': [{'rule': 'psi', 'window': 'month', 'phase': 'provisional', 'severity': 'warning', 'value': 0.2, 'since': None}]}
    """
    out: dict[str, list[dict]] = {}
    for key, state in sorted(states.items()):
        if state.get("status") != "firing":
            continue
        rule, window, month = parse_alert_field(key, state)
        out.setdefault(month, []).append({"rule": rule, "window": window, "phase": state.get("phase", "final"),
                                          "severity": state["severity"], "value": state.get("value"),
                                          "since": state.get("since")})
    return out


async def model_keys(store: Store) -> list[tuple[str, str]]:
    return sorted(split_model_key(m) for m in await store.redis.smembers(store.models_key()))


async def require_model(store: Store, model: str, version: str) -> None:
    if not await store.redis.sismember(store.models_key(), f"{model}:{version}"):
        raise NotFound(f"unknown model {model}:{version} (GET /models lists the monitored ones)")


@dataclass
class ModelReads:
    """What :func:`read_models` read of one (model, version)."""

    months: list[str]  # sorted
    replies: list[Any]  # one per (command, suffix) asked for, in that order
    counts: list[Any]  # one per month: its count hash, or the one field asked for


async def read_models(store: Store, keys: list[tuple[str, str]], reads: Sequence[tuple[str, str]],
                      count_field: str | None = None) -> list[ModelReads]:
    """Per (model, version) of ``keys``: its months, the replies to ``reads`` (``(command, suffix)``: e.g.
    ``("hgetall", "alerts")`` reads ``<base>:alerts``) and every month's count hash (only its
    ``count_field`` when given). Two pipelined round trips whatever the number of models and months."""
    pipe = store.redis.pipeline(transaction=False)
    for model, version in keys:
        base = store.base(model, version)
        pipe.smembers(f"{base}:months")
        for command, suffix in reads:
            getattr(pipe, command)(f"{base}:{suffix}")
    raw = await pipe.execute()
    width = 1 + len(reads)
    months_of = [sorted(m.decode() for m in raw[width * i]) for i in range(len(keys))]
    pipe = store.redis.pipeline(transaction=False)
    for (model, version), months in zip(keys, months_of, strict=True):
        for month in months:
            if count_field is None:
                pipe.hgetall(store.count_key(model, version, month))
            else:
                pipe.hget(store.count_key(model, version, month), count_field)
    counts = iter(await pipe.execute())
    return [ModelReads(months, raw[width * i + 1:width * (i + 1)], [next(counts) for _ in months])
            for i, months in enumerate(months_of)]


async def models_overview(store: Store) -> list[dict]:
    """Every monitored (model, version): its months, total records, reference card and firing alerts."""
    keys = await model_keys(store)
    if not keys:
        return []
    out = []
    reads = (("hgetall", "ref:meta"), ("hgetall", "alerts"), ("get", "watermark"))
    for (model, version), got in zip(keys, await read_models(store, keys, reads, count_field="n"), strict=True):
        ref_meta, alert_hash, watermark = got.replies
        states = {k.decode(): orjson.loads(v) for k, v in alert_hash.items()}
        firing = [{"month": month, **alert} for month, alerts in sorted(firing_by_month(states).items())
                  for alert in alerts]
        out.append({
            "model": model, "model_version": version, "months": got.months,
            "records": sum(int(n or 0) for n in got.counts),
            "watermark": watermark.decode() if watermark else None,
            "reference": reference_card(_text_map(ref_meta)),
            "firing_alerts": firing,
        })
    return out


def reference_card(meta: dict[str, str]) -> dict | None:
    """The reference card as typed values (None when no reference is loaded).

    >>> reference_card({"n": "3000", "resolution": "0.0001", "source": "test", "auc": "0.8"})
    {'n': 3000, 'resolution': 0.0001, 'source': 'test', 'auc': 0.8, 'loaded_at': None}
    >>> reference_card({}) is None
    True
    """
    if not meta:
        return None
    return {"n": int(meta.get("n", 0)), "resolution": float(meta["resolution"]) if meta.get("resolution") else None,
            "source": meta.get("source"), "auc": float(meta["auc"]) if meta.get("auc") else None,
            "loaded_at": meta.get("loaded_at")}


async def month_table(store: Store, model: str, version: str) -> list[dict]:
    """One row per month: exact counts, the month window's headline metrics, firing alerts."""
    await require_model(store, model, version)
    base = store.base(model, version)
    months = sorted(m.decode() for m in await store.redis.smembers(f"{base}:months"))
    pipe = store.redis.pipeline(transaction=False)
    pipe.hgetall(f"{base}:metrics")
    pipe.hgetall(f"{base}:alerts")
    for month in months:
        pipe.hgetall(store.count_key(model, version, month))
    raw = await pipe.execute()
    metrics = {k.decode(): orjson.loads(v) for k, v in raw[0].items()}
    firing = firing_by_month({k.decode(): orjson.loads(v) for k, v in raw[1].items()})
    rows = []
    for month, count_raw in zip(months, raw[2:], strict=True):
        counts = _counts(count_raw)
        computed = metrics.get(month) or {}
        m = (computed.get("windows") or {}).get("month") or {}
        rows.append({
            "month": month, "counts": counts,
            "n_computed": m.get("n"), "metrics_current": m.get("n") == counts["n"],
            "bad_rate": m.get("bad_rate"), "auc": m.get("auc"), "gini": m.get("gini"),
            "ks_good_bad": m.get("ks_good_bad"), "ks_d": m.get("ks_d"), "ks_pvalue": m.get("ks_pvalue"),
            "psi": m.get("psi"), "computed_at": computed.get("computed_at"),
            "firing_alerts": firing.get(month, []),
        })
    return rows


async def month_detail(store: Store, model: str, version: str, month: str) -> dict:
    """Everything about one month: counts, every window's metrics (with error bounds), firing alerts."""
    base = store.base(model, version)
    pipe = store.redis.pipeline(transaction=False)
    pipe.sismember(store.models_key(), f"{model}:{version}")
    pipe.sismember(f"{base}:months", month)
    pipe.hgetall(store.count_key(model, version, month))
    pipe.hget(f"{base}:metrics", month)
    pipe.hgetall(f"{base}:alerts")
    known_model, known_month, count_raw, metrics_raw, alerts_raw = await pipe.execute()
    if not known_model:
        raise NotFound(f"unknown model {model}:{version} (GET /models lists the monitored ones)")
    if not known_month:
        raise NotFound(f"model {model}:{version} has no records in {month} "
                       f"(GET /models/{model}/versions/{version}/months lists its months)")
    counts = _counts(count_raw)
    computed = orjson.loads(metrics_raw) if metrics_raw else {}
    windows = computed.get("windows")
    firing = firing_by_month({k.decode(): orjson.loads(v) for k, v in alerts_raw.items()})
    return {
        "model": model, "model_version": version, "month": month, "counts": counts,
        "metrics_current": windows is not None and bool(windows) and windows["month"]["n"] == counts["n"],
        "computed_at": computed.get("computed_at"), "resolution": computed.get("resolution"),
        "rolling_months": computed.get("rolling_months"), "reference_n": computed.get("reference_n"),
        "reference_auc": computed.get("reference_auc"), "windows": windows,
        "firing_alerts": firing.get(month, []),
    }


def _matches(event: dict, filters: dict[str, str | None]) -> bool:
    return all(value is None or event.get(field) == value for field, value in filters.items())


async def alert_history(store: Store, *, status: str | None = None, model: str | None = None,
                        version: str | None = None, rule: str | None = None, window: str | None = None,
                        month: str | None = None, limit: int = 100) -> list[dict]:
    """Alert events, newest first, filtered; scans the capped history list in chunks."""
    filters = {"status": status, "model": model, "model_version": version, "rule": rule, "window": window,
               "month": month}
    key = store.history_key()
    if all(v is None for v in filters.values()):
        return [orjson.loads(raw) for raw in await store.redis.lrange(key, 0, limit - 1)]
    out: list[dict] = []
    start = 0
    while len(out) < limit:
        chunk = await store.redis.lrange(key, start, start + HISTORY_SCAN_CHUNK - 1)
        for raw in chunk:
            event = orjson.loads(raw)
            if _matches(event, filters):
                out.append(event)
                if len(out) >= limit:
                    break
        if len(chunk) < HISTORY_SCAN_CHUNK:
            break
        start += HISTORY_SCAN_CHUNK
    return out


async def alert_states(store: Store, keys: Iterable[tuple[str, str]] | None = None) -> list[dict]:
    """The current state of every alert (ok or firing) of the given (or every) model."""
    keys = list(keys) if keys is not None else await model_keys(store)
    pipe = store.redis.pipeline(transaction=False)
    for model, version in keys:
        pipe.hgetall(f"{store.base(model, version)}:alerts")
    out = []
    for (model, version), raw in zip(keys, await pipe.execute(), strict=True):
        for field, value in sorted(raw.items()):
            state = orjson.loads(value)
            rule, window, month = parse_alert_field(field.decode(), state)
            out.append({"model": model, "model_version": version, **state, "rule": rule, "window": window,
                        "month": month, "phase": state.get("phase", "final")})
    return out


async def worker_counters(store: Store) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in (await store.redis.hgetall(store.worker_key())).items()}


async def worker_loop_lag(store: Store) -> dict[str, dict]:
    """Each worker process's last event-loop lag report (``monitor.worker.looplag`` snapshot), by process."""
    raw = await store.redis.hgetall(store.keys.worker_loop_lag())
    return {k.decode(): orjson.loads(v) for k, v in sorted(raw.items())}


async def full_state(store: Store, keys: list[tuple[str, str]] | None = None) -> list[dict]:
    """Every model with every month's counts and computed windows (the exporter and the dashboard).

    Two pipelined round trips whatever the number of models and months.
    """
    keys = await model_keys(store) if keys is None else keys
    if not keys:
        return []
    out = []
    reads = (("hgetall", "metrics"), ("hgetall", "alerts"), ("hgetall", "ref:meta"))
    for (model, version), got in zip(keys, await read_models(store, keys, reads), strict=True):
        metrics_hash, alert_hash, ref_meta = got.replies
        metrics = {k.decode(): orjson.loads(v) for k, v in metrics_hash.items()}
        states = {k.decode(): orjson.loads(v) for k, v in alert_hash.items()}
        rows = []
        for month, count in zip(got.months, got.counts, strict=True):
            computed = metrics.get(month) or {}
            rows.append({"month": month, "counts": _counts(count), "windows": computed.get("windows"),
                         "computed_at": computed.get("computed_at")})
        out.append({"model": model, "model_version": version, "months": rows, "alert_states": states,
                    "reference": reference_card(_text_map(ref_meta))})
    return out


async def collect_state(store: Store, model: str | None = None) -> list[dict]:
    """One entry per (model, version, month): exact counts, the last computed metrics, firing alerts."""
    rows = []
    for m, v in await store.models():
        if model is not None and m != model:
            continue
        metrics = await store.metrics(m, v)
        firing: dict[str, list[str]] = {}
        for key, state in (await store.alert_states(m, v)).items():
            if state["status"] == "firing":
                rule, window, month = parse_alert_field(key, state)
                mark = "" if state.get("phase", "final") == "final" else "?"  # provisional: the month is open
                firing.setdefault(month, []).append(
                    f"{rule}:{state['severity']}{mark}" + ("" if window == "month" else f"@{window}"))
        for month in await store.months(m, v):
            computed = metrics.get(month, {})
            rows.append({
                "model": m, "model_version": v, "month": month,
                "counts": (counts := await store.counts(m, v, month)),
                "label_coverage": (counts["bad"] + counts["good"]) / counts["n"] if counts["n"] else None,
                "metrics": computed.get("windows"),
                "features": computed.get("features"),
                "computed_at": computed.get("computed_at"),
                "reference_n": computed.get("reference_n"),
                "firing_alerts": sorted(firing.get(month, [])),
            })
    return rows
