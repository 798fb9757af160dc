"""Write the monitor's closed months back to MLflow: live AUC, Gini, KS, KS adherence, PSI and volume of a
registered version, next to its test figures (`monitor models sync-mlflow`).

Per (model, version) monitored in Redis whose name and version are registered in MLflow, one
**monitoring run** (experiment ``MONITOR_MLFLOW_EXPERIMENT``, tags ``monitor.model``,
``monitor.model_version``, ``monitor.kind=monitoring``; the version's tag ``monitoring_run_id`` points at
it) gets, per closed month, the month window's metrics ``monitor.<metric>`` with step = YYYYMM
(:func:`month_step`). A month is written once its records are all in: closed by the model's event-time
watermark plus the rules' ``grace_days`` (as the alert engine closes it, :func:`monitor.alerts.lifecycle.months_to_close`),
its saved metrics computed on all its records, and not recomputed for ``MONITOR_MONTH_SETTLE_S``.
The run's tag ``monitor.synced.<YYYY-MM>`` keeps a fingerprint of what was logged: the same values are
never logged twice; values that changed (late labels) are logged again at the same step, newer.

Everything is read from Redis through the state layer (:mod:`monitor.state.reads`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# the monitored metric -> its field in a window's saved metrics (monitor/stats/summary.py:MetricSet)
METRIC_FIELDS = {"auc": "auc", "gini": "gini", "ks": "ks_good_bad", "ks_adherence": "ks_d", "psi": "psi", "volume": "n"}
SYNCED_TAG = "monitor.synced."


def month_step(month: str) -> int:
    """The step a month is logged at: ``2018-02`` -> 201802 (steps sort as months do).

    >>> month_step("2024-12")
    202412
    """
    return int(month.replace("-", ""))


def month_metrics(row: dict) -> dict[str, float]:
    """The month window's monitored metrics of a state row (:func:`monitor.state.reads.collect_state`);
    a metric not computed (too few labels, no reference) is left out."""
    window = (row.get("metrics") or {}).get("month") or {}
    return {name: float(window[key]) for name, key in METRIC_FIELDS.items() if window.get(key) is not None}


def fingerprint(values: dict[str, float]) -> str:
    """A short digest of what a month logged (compared, not trusted).

    >>> fingerprint({"auc": 0.5}) == fingerprint({"auc": 0.5}) != fingerprint({"auc": 0.6})
    True
    """
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def settled_months(rows: list[dict], closed: set[str], settle_s: float, now: dt.datetime) -> list[str]:
    """The closed months whose saved metrics cover all their records and were computed ``settle_s`` ago.

    >>> rows = [{"month": "2024-01", "counts": {"n": 5}, "metrics": {"month": {"n": 5}}, "computed_at": "2024-03-01T00:00:00+00:00"},
    ...         {"month": "2024-02", "counts": {"n": 6}, "metrics": {"month": {"n": 5}}, "computed_at": "2024-03-01T00:00:00+00:00"}]
    >>> settled_months(rows, {"2024-01", "2024-02"}, 10, dt.datetime(2024, 3, 2, tzinfo=dt.timezone.utc))
    ['2024-01']
    """
    out = []
    for row in rows:
        window = (row.get("metrics") or {}).get("month") or {}
        if row["month"] not in closed or window.get("n") != row["counts"]["n"] or not row.get("computed_at"):
            continue
        if (now - dt.datetime.fromisoformat(row["computed_at"])).total_seconds() >= settle_s:
            out.append(row["month"])
    return sorted(out)


@dataclass
class Monitored:
    """A (model, version) in Redis: its state rows and the months ready to be written back."""

    model: str
    version: str
    rows: list[dict] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)


async def read_monitored(settings: Any, model: str | None = None, version: str | None = None) -> list[Monitored]:
    """Every monitored (model, version) (or the one asked for) with its rows and closed, settled months."""
    from monitor.alerts.lifecycle import months_to_close
    from monitor.alerts.rules import load_alert_config
    from monitor.state import Store
    from monitor.state.reads import collect_state

    config = load_alert_config(settings)
    store = Store.connect(settings)
    try:
        rows = await collect_state(store, model)
        found: dict[tuple[str, str], Monitored] = {}
        for row in rows:
            if version is None or row["model_version"] == str(version):
                key = (row["model"], row["model_version"])
                found.setdefault(key, Monitored(*key)).rows.append(row)
        now = dt.datetime.now(dt.timezone.utc)
        for (m, v), item in found.items():
            watermark = await store.closing_watermark(m, v)
            if watermark is None:
                continue
            months = sorted(r["month"] for r in item.rows)
            closed = months_to_close(months, watermark, config.rules_for(m, v).grace_days)
            item.ready = settled_months(item.rows, closed, settings.month_settle_s, now)
    finally:
        await store.close()
    return list(found.values())


def monitoring_run(registry: Any, name: str, version: str) -> str:
    """The version's monitoring run (created, and tagged on the version, the first time)."""
    registered = registry.registered_version(name, version)
    run_id = (registered.tags or {}).get("monitoring_run_id")
    if run_id:
        return str(run_id)
    run = registry.call("create_run", registry.experiment_id(), run_name=f"monitoring {name}:{version}",
                         tags={"monitor.model": name, "monitor.model_version": str(version),
                               "monitor.kind": "monitoring", "monitor.training_run_id": registered.run_id})
    registry.set_version_tag(name, version, "monitoring_run_id", run.info.run_id)
    return str(run.info.run_id)


def sync_version(registry: Any, item: Monitored) -> list[str]:
    """Log the ready months of one (model, version) not logged with these values yet; returns them."""
    from mlflow.entities import Metric, RunTag

    if not item.ready:
        return []
    run_id = monitoring_run(registry, item.model, item.version)
    tags = registry.call("get_run", run_id).data.tags
    by_month = {r["month"]: r for r in item.rows}
    now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    logged = []
    for month in item.ready:
        values = month_metrics(by_month[month])
        mark = fingerprint(values)
        if tags.get(SYNCED_TAG + month) == mark:
            continue
        metrics = [Metric(f"monitor.{k}", v, now_ms, month_step(month)) for k, v in values.items()]
        # metrics and their mark in one call: a crash between them cannot log a month twice unmarked
        registry.call("log_batch", run_id, metrics=metrics, tags=[RunTag(SYNCED_TAG + month, mark)])
        logged.append(month)
    return logged


def sync(settings: Any, registry: Any, model: str | None = None, version: str | None = None) -> list[tuple[str, str, list[str], str]]:
    """One pass: (model, version, months logged, note) per monitored version (a version MLflow does not
    know is reported and skipped)."""
    from monitor.errors import NotFound

    out: list[tuple[str, str, list[str], str]] = []
    for item in asyncio.run(read_monitored(settings, model, version)):
        try:
            if item.version not in registry.versions(item.model):
                out.append((item.model, item.version, [], "not registered in MLflow"))
                continue
        except NotFound:
            out.append((item.model, item.version, [], "not registered in MLflow"))
            continue
        logged = sync_version(registry, item)
        waiting = sorted({r["month"] for r in item.rows} - set(item.ready))
        note = f"open or settling: {', '.join(waiting)}" if waiting else ""
        out.append((item.model, item.version, logged, note))
    return out
