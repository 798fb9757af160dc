"""``GET /metrics``: the Redis state in the Prometheus text format, read on every scrape.

Per (model, version, month) gauges, and per window (``month``, ``rolling``, ``cumulative``) for
the metrics; alert states per (model, version, rule, window, month, phase); the worker's counters (``cm:worker``)
and each worker process's event-loop lag (``cm:worker:loop_lag``, monitor.worker.looplag);
the worker group's consumer lag per partition (monitor.api.lag). A metric that is undefined
(no labels yet, no reference) has no sample rather than NaN.

>>> sorted(EXPOSED_NAMES)[:3]
['credit_monitor_alert_severity', 'credit_monitor_alerts_firing', 'credit_monitor_auc']
"""

from __future__ import annotations

import datetime as dt
import time

from fastapi import APIRouter, Request
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from monitor.alerts.lifecycle import parse_alert_field
from monitor.alerts.prometheus import WINDOW_METRICS
from monitor.state import LABELS, reads

MONTH_LABELS = ["model", "version", "month"]
WINDOW_LABELS = ["model", "version", "month", "window"]
ALERT_LABELS = ["model", "version", "rule", "window", "month", "phase"]
PARTITION_LABELS = ["topic", "partition"]

# Per-window metrics: exported name -> (MetricSet field, help).
RECORDS = "credit_monitor_records"
RECORDS_BY_LABEL = "credit_monitor_records_by_label"
MONTH_ALERTS_FIRING = "credit_monitor_month_alerts_firing"
METRICS_COMPUTED = "credit_monitor_metrics_computed_timestamp_seconds"
ALERTS_FIRING = "credit_monitor_alerts_firing"
ALERT_SEVERITY = "credit_monitor_alert_severity"
REFERENCE_RECORDS = "credit_monitor_reference_records"
WORKER_COUNTERS = {  # cm:worker field -> counter name (exposed with the suffix _total)
    "records": "credit_monitor_worker_records",
    "dead_lettered": "credit_monitor_worker_dead_lettered",
    "batches": "credit_monitor_worker_batches",
    "duplicates_skipped": "credit_monitor_worker_duplicates_skipped",
}
CONSUMER_LAG = "credit_monitor_consumer_lag"
HIGH_WATERMARK = "credit_monitor_topic_high_watermark"
COMMITTED_OFFSET = "credit_monitor_consumer_committed_offset"
LAG_UP = "credit_monitor_consumer_lag_up"
SCRAPE_SECONDS = "credit_monitor_scrape_duration_seconds"
LOOP_LAG = "credit_monitor_worker_loop_lag_seconds"  # histogram: _bucket, _sum, _count
LOOP_LAG_MAX = "credit_monitor_worker_loop_lag_max_seconds"
LOOP_LAG_P99 = "credit_monitor_worker_loop_lag_p99_seconds"
GC_PAUSE_MAX = "credit_monitor_worker_gc_pause_max_seconds"

GAUGES = {RECORDS, RECORDS_BY_LABEL, MONTH_ALERTS_FIRING, METRICS_COMPUTED, ALERTS_FIRING, ALERT_SEVERITY,
          REFERENCE_RECORDS, CONSUMER_LAG, HIGH_WATERMARK, COMMITTED_OFFSET, LAG_UP, SCRAPE_SECONDS, *WINDOW_METRICS,
          LOOP_LAG_MAX, LOOP_LAG_P99}
EXPOSED_NAMES = frozenset(GAUGES | {f"{name}_total" for name in WORKER_COUNTERS.values()}
                          | {f"{LOOP_LAG}{suffix}" for suffix in ("_bucket", "_sum", "_count")})
"""Every metric name a scrape can contain (counters with their ``_total`` suffix): Grafana's
dashboard may only use these (tests/unit/test_grafana.py)."""

SEVERITY_VALUE = {"warning": 1, "critical": 2}

router = APIRouter(tags=["prometheus"])


class _Families:
    """What ``generate_latest`` needs: an object whose ``collect()`` yields metric families."""

    def __init__(self, families: list):
        self.families = families

    def collect(self):
        return iter(self.families)


def _timestamp(iso: str | None) -> float | None:
    """
    >>> _timestamp("2024-02-01T00:00:00+00:00"), _timestamp(None)
    (1706745600.0, None)
    """
    if not iso:
        return None
    try:
        return dt.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def state_families(state: list[dict], counters: dict[str, int]) -> list:
    """Metric families of the Redis state (``reads.full_state``) and the worker counters."""
    records = GaugeMetricFamily(RECORDS, "Records counted per model, version and month (exact).", labels=MONTH_LABELS)
    by_label = GaugeMetricFamily(RECORDS_BY_LABEL, "Records per month by label (bad, good, unlabeled).",
                                 labels=[*MONTH_LABELS, "label"])
    windows = {name: GaugeMetricFamily(name, help_, labels=WINDOW_LABELS)
               for name, (_, help_) in WINDOW_METRICS.items()}
    month_firing = GaugeMetricFamily(MONTH_ALERTS_FIRING, "Alerts firing now that judged this month.",
                                     labels=MONTH_LABELS)
    computed = GaugeMetricFamily(METRICS_COMPUTED, "When the worker last computed the month's metrics (Unix time).",
                                 labels=MONTH_LABELS)
    firing = GaugeMetricFamily(ALERTS_FIRING, "1 if the alert fires now, 0 if it is ok.", labels=ALERT_LABELS)
    severity = GaugeMetricFamily(ALERT_SEVERITY, "0 ok, 1 firing warning, 2 firing critical.", labels=ALERT_LABELS)
    reference = GaugeMetricFamily(REFERENCE_RECORDS, "Records in the model's reference (test-set) histogram.",
                                  labels=["model", "version"])
    for entry in state:
        model, version = entry["model"], entry["model_version"]
        if entry.get("reference"):
            reference.add_metric([model, version], entry["reference"]["n"])
        firing_months: dict[str, int] = {}
        for key, st in sorted(entry["alert_states"].items()):
            rule, window, month = parse_alert_field(key, st)
            labels = [model, version, rule, window, month, st.get("phase", "final")]
            is_firing = st.get("status") == "firing"
            firing.add_metric(labels, 1 if is_firing else 0)
            severity.add_metric(labels, SEVERITY_VALUE[st["severity"]] if is_firing else 0)
            if is_firing:
                firing_months[month] = firing_months.get(month, 0) + 1
        for row in entry["months"]:
            month = row["month"]
            labels = [model, version, month]
            records.add_metric(labels, row["counts"]["n"])
            for label in LABELS:
                by_label.add_metric([*labels, label], row["counts"][label])
            month_firing.add_metric(labels, firing_months.get(month, 0))
            at = _timestamp(row.get("computed_at"))
            if at is not None:
                computed.add_metric(labels, at)
            for window, values in (row.get("windows") or {}).items():
                for name, (field, _) in WINDOW_METRICS.items():
                    value = values.get(field)
                    if value is not None:
                        windows[name].add_metric([*labels, window], value)
    families: list[Metric] = [records, by_label, *windows.values(), month_firing, computed, firing, severity, reference]
    for field, name in WORKER_COUNTERS.items():
        counter = CounterMetricFamily(name, f"Worker counter {field!r} (Redis {'{prefix}'}:worker).")
        counter.add_metric([], counters.get(field, 0))
        families.append(counter)
    return families


def loop_lag_families(reports: dict[str, dict]) -> list:
    """Each worker process's event-loop lag (``reads.worker_loop_lag``): the histogram of every sample
    since the process started, the largest, and the p99 of the last minute's samples.

    >>> from monitor.worker.looplag import LoopLagProbe
    >>> probe = LoopLagProbe(); probe.record(0.002); probe.record(0.08)
    >>> hist, top, p99, gc_top = loop_lag_families({"h:1": probe.snapshot()})
    >>> [(s.name, s.labels.get("le"), s.value) for s in hist.samples][-4:]
    [('credit_monitor_worker_loop_lag_seconds_bucket', '5.0', 2.0), ('credit_monitor_worker_loop_lag_seconds_bucket', '+Inf', 2.0), ('credit_monitor_worker_loop_lag_seconds_count', None, 2.0), ('credit_monitor_worker_loop_lag_seconds_sum', None, 0.082)]
    >>> top.samples[0].value, p99.samples[0].labels
    (0.08, {'worker': 'h:1'})
    """
    hist = HistogramMetricFamily(LOOP_LAG, "How late the worker's event loop ran a task due now (a 50 ms sleep's "
                                 "overshoot), since the process started.", labels=["worker"])
    top = GaugeMetricFamily(LOOP_LAG_MAX, "Largest event-loop lag of the worker process since it started.",
                            labels=["worker"])
    p99 = GaugeMetricFamily(LOOP_LAG_P99, "p99 of the worker's event-loop lag over its last minute of samples.",
                            labels=["worker"])
    gc_top = GaugeMetricFamily(GC_PAUSE_MAX, "Longest pause of Python's garbage collector in the worker process "
                               "since it started (it stops the event loop too).", labels=["worker"])
    for worker, report in reports.items():
        buckets = [(str(le), float(n)) for le, n in zip(report["le"], report["buckets"], strict=True)]
        buckets.append(("+Inf", float(report["count"])))
        hist.add_metric([worker], buckets, report["sum"])
        top.add_metric([worker], report["max"])
        p99.add_metric([worker], report["p99"])
        if "gc_max" in report:
            gc_top.add_metric([worker], report["gc_max"])
    return [hist, top, p99, gc_top]


def lag_families(partitions, error: str | None, group: str) -> list:
    lag = GaugeMetricFamily(CONSUMER_LAG, "Records on the partition not yet committed by the worker group.",
                            labels=[*PARTITION_LABELS, "group"])
    high = GaugeMetricFamily(HIGH_WATERMARK, "High watermark (next offset) of the partition, from a Fetch.",
                             labels=PARTITION_LABELS)
    committed = GaugeMetricFamily(COMMITTED_OFFSET, "Offset the worker group committed on the partition.",
                                  labels=[*PARTITION_LABELS, "group"])
    up = GaugeMetricFamily(LAG_UP, "1 if the consumer lag could be measured on this scrape (else see the API log).")
    up.add_metric([], 0 if partitions is None else 1)
    for p in partitions or []:
        lag.add_metric([p.topic, str(p.partition), group], p.lag)
        high.add_metric([p.topic, str(p.partition)], p.high_watermark)
        if p.committed is not None:
            committed.add_metric([p.topic, str(p.partition), group], p.committed)
    return [lag, high, committed, up]


async def render_metrics(request: Request) -> bytes:
    started = time.perf_counter()
    app = request.app
    store = app.state.store
    state = await reads.full_state(store)
    counters = await reads.worker_counters(store)
    families = state_families(state, counters)
    families += loop_lag_families(await reads.worker_loop_lag(store))
    probe = app.state.lag_probe
    if probe is not None:
        from monitor.api.lag import worker_group

        group = await worker_group(store)
        partitions, error = await probe.get(group)
        families += lag_families(partitions, error, group)
    scrape = GaugeMetricFamily(SCRAPE_SECONDS, "Seconds this scrape took to read the state.")
    scrape.add_metric([], time.perf_counter() - started)
    families.append(scrape)
    return generate_latest(_Families(families))


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format 0.0.4"}})
async def metrics(request: Request) -> Response:
    """Every model's per-month gauges, alert states, worker counters and consumer lag."""
    return Response(await render_metrics(request), media_type=CONTENT_TYPE_LATEST)
