"""Pure helpers of the benchmark: percentiles, rates, ratios, targets, the table and the JSON schema.

No I/O here (the runner measures; this module turns measurements into figures), so the unit
tests cover it without a broker.

>>> percentile([1, 2, 3, 4], 50)
2.5
>>> ratio(120.0, 100.0)
1.2
>>> ratio(1.0, None) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

SCHEMA = "credit-monitor-bench/1"

THROUGHPUT_KEYS = ("raw_single", "raw_batched", "faust_noop", "naive_faust_redis", "worker_single",
                   "worker_batched")
"""The throughput measurements, each ``{"records_per_s": ..., "runs": [...]}`` in the JSON."""

RATIOS = (
    # name, numerator, denominator, target (minimum) or None
    ("worker_single/faust_noop", "worker_single", "faust_noop", 0.8),
    ("worker_single/raw_single", "worker_single", "raw_single", None),
    ("worker_single/naive_faust_redis", "worker_single", "naive_faust_redis", None),
    ("worker_batched/raw_single", "worker_batched", "raw_single", 0.5),
    ("worker_batched/faust_noop", "worker_batched", "faust_noop", None),
    ("worker_batched/raw_batched", "worker_batched", "raw_batched", None),
)

LATENCY_P99_TARGET_MS = 500.0
MEMORY_TARGET_BYTES = 1_000_000  # 1 MB of monitor state per (model, month)
MEMORY_TARGET_NAME = "Redis monitor state <= 1 MB per (model, month)"
EXTRAPOLATE_AT_RECORDS = 10_000_000

# Key kinds (the name's first part after the model's key base ``cm:{model:version}``) of the label-join
# buffer: one entry per unlabelled record (or early outcome), kept MONITOR_LABEL_TTL_DAYS so that a
# delayed outcome finds its record. It is a queue of records awaiting their outcome, not monitor state,
# and grows with the volume in any layout: ``join:<period>:<bucket>``, ``pending:<period>:<bucket>``
# and ``pending:periods`` (bucketed hashes by write period), ``join:YYYY-MM:<bucket>`` / ``pending:<bucket>``
# (by month, before) and ``score:<record_id>`` / ``pending:<record_id>`` (one string key per record, the
# oldest layout). Every other kind (hist, count, features, metrics, offsets, outcomes...) is monitor state,
# the part the memory target bounds.
JOIN_BUFFER_KINDS = frozenset({"join", "pending", "score"})
RSS_FLAT_TOLERANCE = 0.10  # RSS at the end at most 10 % above RSS a quarter of the way in

REQUIRED_SECTIONS = ("schema", "run_id", "machine", "config", "throughput", "ratios", "latency", "memory",
                     "rss", "targets")


# ---- numbers ------------------------------------------------------------------------------------
def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between closest ranks (numpy's default).

    >>> percentile([10, 20, 30, 40, 50], 99)
    49.6
    >>> percentile([7], 99), percentile([], 50) is None
    (7.0, True)
    >>> percentile([3, 1, 2], 0), percentile([3, 1, 2], 100)
    (1.0, 3.0)
    """
    data = sorted(float(v) for v in values)
    if not data:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict:
    """n, p50, p90, p99, max, mean of a sample (None when empty).

    >>> summarize([1.0, 2.0, 3.0])["p50"], summarize([])["n"]
    (2.0, 0)
    """
    vals = [float(v) for v in values]
    if not vals:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None, "min": None}
    return {"n": len(vals), "p50": percentile(vals, 50), "p90": percentile(vals, 90),
            "p99": percentile(vals, 99), "max": max(vals), "mean": sum(vals) / len(vals), "min": min(vals)}


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None.

    >>> median([3.0, None, 1.0, 2.0]), median([None]) is None
    (2.0, True)
    """
    return percentile([v for v in values if v is not None], 50)


def rate(records: int, seconds: float | None) -> float | None:
    """Records per second, None when the interval is not measurable.

    >>> rate(1000, 0.5), rate(10, 0.0) is None, rate(10, None) is None
    (2000.0, True, True)
    """
    if seconds is None or seconds <= 0 or records <= 0:
        return None
    return records / seconds


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def compute_ratios(throughput: Mapping[str, Mapping]) -> dict[str, float | None]:
    """The ratios of our worker to the reference measurements, from their median records/s.

    >>> tp = {k: {"records_per_s": v} for k, v in [("raw_single", 300.0), ("faust_noop", 15.0),
    ...       ("naive_faust_redis", 5.0), ("worker_single", 12.0), ("worker_batched", 150.0), ("raw_batched", 600.0)]}
    >>> r = compute_ratios(tp)
    >>> r["worker_single/faust_noop"], r["worker_batched/raw_single"], r["worker_single/naive_faust_redis"]
    (0.8, 0.5, 2.4)
    """
    def rps(key: str) -> float | None:
        return (throughput.get(key) or {}).get("records_per_s")

    return {name: ratio(rps(num), rps(den)) for name, num, den, _ in RATIOS}


def rss_growth(start_kb: int | None, end_kb: int | None) -> float | None:
    """Relative RSS growth from start to end (0.05 = +5 %).

    >>> rss_growth(100_000, 105_000), rss_growth(None, 1) is None
    (0.05, True)
    """
    if not start_kb or end_kb is None:
        return None
    return (end_kb - start_kb) / start_kb


def linear_fit(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares (slope, intercept) of y on x; None with fewer than 2 distinct x.

    >>> linear_fit([(0, 1.0), (10, 21.0), (20, 41.0)])
    (2.0, 1.0)
    """
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    slope = sxy / sxx
    return slope, my - slope * mx


def extrapolate_memory(curve: Sequence[Mapping], at_records: int) -> dict | None:
    """Memory of a (model, month) at ``at_records`` from the measured growth curve.

    Two estimates: a straight line through the points from the curve's middle on (the slope, in bytes
    per record, says whether memory grows with volume at all), and the last measured value (a dense
    histogram is bounded by its number of bins, so once every bin exists it no longer grows).

    >>> curve = [{"records": 10_000, "bytes": 240_000}, {"records": 100_000, "bytes": 250_000},
    ...          {"records": 1_000_000, "bytes": 250_000}]
    >>> e = extrapolate_memory(curve, 10_000_000)
    >>> e["linear_bytes"], e["last_measured_bytes"], round(e["slope_bytes_per_million_records"])
    (250000, 250000, 0)
    """
    by_records = {float(p["records"]): float(p["bytes"]) for p in curve if p.get("records") and p.get("bytes")}
    pts = sorted(by_records.items())  # one point per volume (the later one)
    if not pts:
        return None
    tail = pts[len(pts) // 2:] if len(pts) >= 3 else pts
    fit = linear_fit(tail)
    last_x, last_y = pts[-1]
    slope = max(fit[0], 0.0) if fit else 0.0
    return {"at_records": at_records, "linear_bytes": int(round(last_y + slope * (at_records - last_x))),
            "last_measured_bytes": int(last_y), "slope_bytes_per_million_records": slope * 1e6,
            "fit_points": len(tail)}


def split_groups(groups: Mapping[str, Mapping]) -> dict:
    """A memory snapshot's key groups (``{kind: {"keys": n, "bytes": b}}``) split into monitor state and
    the label-join buffer (``JOIN_BUFFER_KINDS``).

    >>> split_groups({"hist": {"keys": 3, "bytes": 246_000}, "count": {"keys": 1, "bytes": 168},
    ...               "join": {"keys": 4096, "bytes": 7_000_000}, "pending": {"keys": 2, "bytes": 200}})
    {'state_bytes': 246168, 'join_buffer_bytes': 7000200, 'join_buffer_keys': 4098}
    """
    state = buffer = keys = 0
    for kind, g in groups.items():
        if kind in JOIN_BUFFER_KINDS:
            buffer += g.get("bytes") or 0
            keys += g.get("keys") or 0
        else:
            state += g.get("bytes") or 0
    return {"state_bytes": state, "join_buffer_bytes": buffer, "join_buffer_keys": keys}


def join_buffer_summary(curve: Sequence[Mapping], at_records: int = EXTRAPOLATE_AT_RECORDS,
                        listpack_entries: int | None = None) -> dict | None:
    """The label-join buffer at the curve's last point, and at ``at_records`` with the same label fraction.

    The buffer holds one entry per waiting (unlabelled) record, so the extrapolation is linear in the
    records: bytes x at_records / records. With bucketed hashes, Redis keeps a hash of at most
    ``listpack_entries`` (the server's ``hash-max-listpack-entries``) in a compact listpack; when the
    fullest key at ``at_records`` would pass that and the fullest measured one does not, some hashes
    would change to the hashtable encoding on the way and cost more per entry than measured:
    ``encoding_change`` says so, and the real figure would be higher than the line. (The other way, at
    a small volume the bytes per waiting record include the keys' own overhead, spread over few entries.)
    The fullest key is estimated as mean + 4 sqrt(mean) entries (records spread over the keys by a
    hash: about Poisson; the largest of a few thousand keys is ~3.5 standard deviations above the mean).

    >>> curve = [{"records": 100_000, "join_buffer_bytes": 700_000, "waiting_records": 20_000,
    ...           "join_buffer_keys": 4096},
    ...          {"records": 1_000_000, "join_buffer_bytes": 7_000_000, "waiting_records": 200_000,
    ...           "join_buffer_keys": 4096}]
    >>> j = join_buffer_summary(curve, listpack_entries=128)
    >>> j["bytes"], j["waiting_records"], j["bytes_per_waiting_record"]
    (7000000, 200000, 35.0)
    >>> j["extrapolated_10m"]["waiting_records"], j["extrapolated_10m"]["bytes"], j["extrapolated_10m"]["encoding_change"]
    (2000000, 70000000, True)
    """
    pts = [p for p in curve if p.get("records") and p.get("join_buffer_bytes") is not None]
    if not pts:
        return None
    last = max(pts, key=lambda p: p["records"])
    records, size = last["records"], last["join_buffer_bytes"]
    waiting = last.get("waiting_records") or 0
    keys = last.get("join_buffer_keys")
    scale = at_records / records
    waiting_at = int(round(waiting * scale))
    per_key = waiting / keys if keys else None
    per_key_at = waiting_at / keys if keys else None

    def fullest(mean: float) -> float:
        return mean + 4 * math.sqrt(mean)

    change = bool(listpack_entries and per_key_at is not None and per_key is not None
                 and fullest(per_key) <= listpack_entries < fullest(per_key_at))
    ext = {"at_records": at_records, "waiting_records": waiting_at, "bytes": int(round(size * scale)),
           "method": "linear: bytes at the last point x at_records / records (same label fraction)",
           "waiting_records_per_key": per_key_at, "encoding_change": change}
    if change and per_key_at is not None:  # change implies both counts
        ext["note"] = (f"about {per_key_at:,.0f} entries per key on average (the fullest ~{fullest(per_key_at):,.0f}), "
                       f"where hash-max-listpack-entries is {listpack_entries} and {per_key:,.0f} were measured: "
                       "Redis would convert the fuller hashes to its hashtable encoding, dearer per entry "
                       "than measured here: expect more than this line")
    return {"records": records, "bytes": size, "keys": keys, "waiting_records": waiting,
            "bytes_per_waiting_record": size / waiting if waiting else None,
            "waiting_records_per_key": per_key, "hash_max_listpack_entries": listpack_entries,
            "extrapolated_10m": ext}


def memory_summary(curve: Sequence[Mapping], at_records: int = EXTRAPOLATE_AT_RECORDS,
                   listpack_entries: int | None = None) -> dict:
    """The memory section's figures from the curve (points with ``bytes``, ``bytes_without_metrics``,
    ``state_bytes``, ``join_buffer_bytes``, ``waiting_records``):

    - ``max_bytes_per_model_month``: max monitor state (what the target bounds);
    - ``max_total_bytes_per_model_month``: max of everything, label-join buffer included;
    - ``extrapolated_10m``: ``extrapolate_memory`` of the state less the month's metrics field, plus the
      last metrics field (a JSON of fixed shape per month, 0 until the first metrics pass);
    - ``join_buffer``: ``join_buffer_summary``.

    >>> curve = [{"records": 10_000, "bytes": 330_000, "bytes_without_metrics": 330_000,
    ...           "state_bytes": 260_000, "join_buffer_bytes": 70_000, "waiting_records": 2_000},
    ...          {"records": 100_000, "bytes": 962_000, "bytes_without_metrics": 960_000,
    ...           "state_bytes": 262_000, "join_buffer_bytes": 700_000, "waiting_records": 20_000}]
    >>> m = memory_summary(curve)
    >>> m["max_bytes_per_model_month"], m["max_total_bytes_per_model_month"], m["extrapolated_10m"]["linear_bytes"]
    (262000, 962000, 262000)
    >>> m["join_buffer"]["extrapolated_10m"]["bytes"]
    70000000
    """
    curve = sorted(curve, key=lambda p: p["records"])
    if not curve:
        return {"max_bytes_per_model_month": None, "max_total_bytes_per_model_month": None,
                "extrapolated_10m": None, "join_buffer": None}

    def metrics_bytes(p: Mapping) -> int:
        return p["bytes"] - p.get("bytes_without_metrics", p["bytes"])

    ext = extrapolate_memory([{"records": p["records"], "bytes": p["state_bytes"] - metrics_bytes(p)}
                              for p in curve], at_records)
    if ext is not None:
        ext["linear_bytes"] += metrics_bytes(curve[-1])
        ext["last_measured_bytes"] += metrics_bytes(curve[-1])
        ext["of"] = "monitor state (label-join buffer excluded)"
    return {"max_bytes_per_model_month": max(p["state_bytes"] for p in curve),
            "max_total_bytes_per_model_month": max(p["bytes"] for p in curve),
            "extrapolated_10m": ext,
            "join_buffer": join_buffer_summary(curve, at_records, listpack_entries)}


# ---- targets -------------------------------------------------------------------------------------
def evaluate_targets(doc: Mapping) -> list[dict]:
    """Each target of the issue: what it is, the measured value, and whether it is met (None = not measured).

    >>> doc = {"ratios": {"worker_single/faust_noop": 0.9, "worker_batched/raw_single": 0.4},
    ...        "latency": [{"metrics_interval_s": 1.0, "default_interval": True, "rate": 5000,
    ...                     "alert_ms": {"p99": 1200.0}}],
    ...        "memory": {"max_bytes_per_model_month": 260_000, "max_total_bytes_per_model_month": 7_300_000,
    ...                   "extrapolated_10m": {"linear_bytes": 260_000}},
    ...        "rss": {"flat": True, "max_growth": 0.02}}
    >>> [(t["name"], t["met"]) for t in evaluate_targets(doc)]
    [('single-record >= 0.8x no-op faust', True), ('batched >= 0.5x raw ceiling', False), ('publish-to-alert p99 <= 500 ms at 5k rec/s', False), ('Redis monitor state <= 1 MB per (model, month)', True), ('worker RSS flat', True)]

    The memory target bounds the monitor state (``max_bytes_per_model_month`` and the 10M extrapolation of
    the state): the label-join buffer (``JOIN_BUFFER_KINDS``), one entry per record awaiting its outcome,
    is reported apart (``memory.join_buffer``) and has no target.
    """
    ratios = doc.get("ratios") or {}
    out = []
    for name, _, _, minimum in RATIOS:
        if minimum is None:
            continue
        value = ratios.get(name)
        label = ("single-record >= 0.8x no-op faust" if name.startswith("worker_single")
                 else "batched >= 0.5x raw ceiling")
        out.append({"name": label, "measure": name, "value": value, "target": f">= {minimum}",
                    "met": None if value is None else value >= minimum})
    lat = [r for r in (doc.get("latency") or []) if r.get("default_interval")]
    p99 = ((lat[0].get("alert_ms") or {}).get("p99")) if lat else None
    out.append({"name": "publish-to-alert p99 <= 500 ms at 5k rec/s",
                "measure": "latency (default metrics interval) alert_ms.p99", "value": p99,
                "target": f"<= {LATENCY_P99_TARGET_MS:.0f} ms",
                "met": None if p99 is None else p99 <= LATENCY_P99_TARGET_MS})
    mem = doc.get("memory") or {}
    measured = mem.get("max_bytes_per_model_month")
    extra = (mem.get("extrapolated_10m") or {}).get("linear_bytes")
    worst = max((v for v in (measured, extra) if v is not None), default=None)
    out.append({"name": MEMORY_TARGET_NAME,
                "measure": "max of measured curve and 10M extrapolation of the monitor state "
                           "(label-join buffer excluded), bytes", "value": worst,
                "target": f"<= {MEMORY_TARGET_BYTES:,} bytes",
                "met": None if worst is None else worst <= MEMORY_TARGET_BYTES})
    rss = doc.get("rss") or {}
    out.append({"name": "worker RSS flat", "measure": "max growth, quarter-way to end",
                "value": rss.get("max_growth"), "target": f"<= +{RSS_FLAT_TOLERANCE:.0%}",
                "met": rss.get("flat")})
    return out


# ---- table ---------------------------------------------------------------------------------------
def fmt_number(value: float | int | None, digits: int = 0) -> str:
    """Thousands separators; '-' for a missing value.

    >>> fmt_number(1234567.8), fmt_number(0.8123, 2), fmt_number(None)
    ('1,234,568', '0.81', '-')
    """
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def fmt_met(met: bool | None) -> str:
    """Whether a target is met, as the table shows it.

    >>> fmt_met(True), fmt_met(False), fmt_met(None)
    ('yes', 'NO', '-')
    """
    return "-" if met is None else "yes" if met else "NO"


CPU_COLUMNS = ("process", "redis", "broker", "bench", "others")
CPU_LABEL = "  CPU: measured process / redis / broker / bench / others"


def fmt_cpu(cpu: Mapping[str, float | None]) -> str:
    """CPU shares as 'process / redis / broker / bench / others' (% of one core).

    >>> fmt_cpu({"process": 99.5, "redis": 20.0, "broker": 31.2, "bench": None, "others": 3.0})
    '100 / 20 / 31 / - / 3'
    """
    return " / ".join(fmt_number(cpu.get(k)) for k in CPU_COLUMNS)


def median_run(measurement: Mapping) -> Mapping:
    """The run of a repeated measurement whose records/s is closest to the median ({} if none).

    >>> median_run({"records_per_s": 10.0, "runs": [{"records_per_s": 8.0}, {"records_per_s": 10.0}, {"error": "x"}]})
    {'records_per_s': 10.0}
    """
    target = measurement.get("records_per_s")
    runs = [r for r in measurement.get("runs") or [] if r.get("records_per_s") is not None]
    if target is None or not runs:
        return {}
    return min(runs, key=lambda r: abs(r["records_per_s"] - target))


Row = tuple[str, str, str, str, str]


def throughput_rows(doc: Mapping) -> list[Row]:
    """One row per throughput measurement (named as in the issue), each followed by its CPU shares.

    >>> throughput_rows({"throughput": {"faust_noop": {"records_per_s": 15000.0}}})[2]
    ('(b) no-op faust agent', '15,000', 'records/s', '', '')
    """
    tp = doc.get("throughput") or {}
    batch = (doc.get("config") or {}).get("batch_size", "?")
    names = {
        "raw_single": "(a) raw aiokafka + orjson, single-record msgs",
        "raw_batched": f"(a') raw aiokafka + orjson, arrays of {batch}",
        "faust_noop": "(b) no-op faust agent",
        "naive_faust_redis": "(c) naive faust + Redis (HINCRBY per record)",
        "worker_single": "(d) worker, single-record msgs",
        "worker_batched": f"(d) worker, arrays of {batch}",
    }
    rows = []
    for key in THROUGHPUT_KEYS:
        m = tp.get(key) or {}
        note = " (error)" if m.get("error") else ""
        rows.append((names[key] + note, fmt_number(m.get("records_per_s")), "records/s", "", ""))
        cpu = median_run(m).get("cpu_percent")
        if cpu:
            rows.append((CPU_LABEL, fmt_cpu(cpu), "% of a core", "", ""))
    return rows


def ratio_rows(doc: Mapping) -> list[Row]:
    """One row per ratio of :data:`RATIOS`, with its minimum and whether its target was met.

    >>> ratio_rows({"ratios": {}})[0]
    ('ratio worker_single/faust_noop', '-', 'x', '>= 0.8', '')
    """
    targets = {t["measure"]: t for t in (doc.get("targets") or [])}
    rows = []
    for name, _, _, minimum in RATIOS:
        t = targets.get(name)
        rows.append((f"ratio {name}", fmt_number((doc.get("ratios") or {}).get(name), 2), "x",
                     f">= {minimum}" if minimum is not None else "", fmt_met(t["met"]) if t else ""))
    return rows


def memory_run_rows(doc: Mapping) -> list[Row]:
    """The worker's rate on the memory run (every record in one month), when it was measured.

    >>> memory_run_rows({"memory": {}})
    []
    """
    mem_run = (doc.get("memory") or {}).get("throughput") or {}
    if not mem_run.get("records_per_s"):
        return []
    batch = mem_run.get("batch_size", (doc.get("config") or {}).get("batch_size", "?"))
    return [(f"(d) worker, arrays of {batch}, {fmt_number(mem_run.get('records'))} records in one month",
             fmt_number(mem_run["records_per_s"]), "records/s", "", "")]


def latency_rows(run: Mapping) -> list[Row]:
    """The rows of one latency run: publish-to-alert p50 and p99 (against the target on the default
    interval), publish-to-state, state-to-alert, catching up and CPU.

    >>> [row[0] for row in latency_rows({"metrics_interval_s": 2.0, "rate": 5000})]
    ['publish-to-alert p50 (interval 2.0 s, 5,000 rec/s)', 'publish-to-alert p99 (interval 2.0 s, 5,000 rec/s, n=0)', 'publish-to-state p50 / p99 (interval 2.0 s, 5,000 rec/s)']
    """
    tag = f"interval {run.get('metrics_interval_s')} s, {fmt_number(run.get('rate'))} rec/s"
    if (run.get("records_per_message") or 1) > 1:
        tag += f" in arrays of {run['records_per_message']}"
    alert = run.get("alert_ms") or {}
    state = run.get("state_ms") or {}
    target = f"<= {LATENCY_P99_TARGET_MS:.0f}" if run.get("default_interval") else ""
    met = fmt_met(None if alert.get("p99") is None else alert["p99"] <= LATENCY_P99_TARGET_MS) \
        if run.get("default_interval") else ""
    rows: list[Row] = [
        (f"publish-to-alert p50 ({tag})", fmt_number(alert.get("p50")), "ms", "", ""),
        (f"publish-to-alert p99 ({tag}, n={alert.get('n', 0)})", fmt_number(alert.get("p99")), "ms", target, met),
        (f"publish-to-state p50 / p99 ({tag})",
         f"{fmt_number(state.get('p50'))} / {fmt_number(state.get('p99'))}", "ms", "", ""),
    ]
    after = run.get("alert_after_state_ms") or {}
    if after.get("n"):
        rows.append((f"  of which state -> alert p50 / p99 ({tag})",
                     f"{fmt_number(after.get('p50'))} / {fmt_number(after.get('p99'))}", "ms", "", ""))
    if run.get("caught_up_after_s") is not None:
        rows.append((f"  worker caught up after the last send ({tag})",
                     fmt_number(run["caught_up_after_s"], 2), "s", "", ""))
    if run.get("cpu_percent"):
        rows.append((f"{CPU_LABEL} ({tag})", fmt_cpu(run["cpu_percent"]), "% of a core", "", ""))
    return rows


def rss_rows(doc: Mapping) -> list[Row]:
    """The worker's RSS per phase (start / quarter / max / end [/ settled], in MB), then its growth
    against the "worker RSS flat" target.

    >>> rss_rows({"rss": {"phases": {"memory": {"start_kb": 1024, "max_kb": 2048}}}})
    [('worker RSS memory: start / quarter / max / end', '1 / - / 2 / -', 'MB', '', '')]
    """
    rows = []
    for phase, r in ((doc.get("rss") or {}).get("phases") or {}).items():
        keys = ("start_kb", "quarter_kb", "max_kb", "end_kb") + (("settled_kb",) if r.get("settled_kb") else ())
        rows.append((f"worker RSS {phase}: {' / '.join(k[:-3] for k in keys)}",
                     " / ".join(fmt_number(None if r.get(k) is None else r[k] / 1024, 0) for k in keys), "MB", "", ""))
    flat = [t for t in (doc.get("targets") or []) if t["name"] == "worker RSS flat"]
    if flat:
        rows.append(("worker RSS growth, quarter-way to end (max over phases)",
                     "-" if flat[0]["value"] is None else f"{flat[0]['value']:+.1%}", "",
                     flat[0]["target"], fmt_met(flat[0]["met"])))
    return rows


def table_rows(doc: Mapping) -> list[Row]:
    """(measurement, value, unit, target, met) rows of the summary table: throughput, ratios, the memory
    run's rate, latency runs, memory, RSS.

    >>> rows = table_rows({"throughput": {"faust_noop": {"records_per_s": 15000.0}}, "ratios": {},
    ...                    "latency": [], "memory": {}, "rss": {}, "targets": []})
    >>> rows[2]
    ('(b) no-op faust agent', '15,000', 'records/s', '', '')
    """
    rows = throughput_rows(doc) + ratio_rows(doc) + memory_run_rows(doc)
    for run in doc.get("latency") or []:
        rows += latency_rows(run)
    return rows + memory_rows(doc.get("memory") or {}) + rss_rows(doc)


def memory_rows(mem: Mapping) -> list[Row]:
    """The table's memory rows: per curve point the monitor state against the target (the total with the
    label-join buffer below it, for information), the key kinds at the last point, the state at 10M
    records (extrapolated), then the label-join buffer, which has no target.

    >>> curve = [{"records": 1_000_000, "bytes": 7_330_000, "state_bytes": 330_000,
    ...           "join_buffer_bytes": 7_000_000, "waiting_records": 200_000}]
    >>> for row in memory_rows({"curve": curve, **memory_summary(curve)}): print(row)
    ('Redis monitor state per (model, month) at 1,000,000 records', '330,000', 'bytes', '<= 1,000,000', 'yes')
    ('  with the label-join buffer (200,000 waiting records)', '7,330,000', 'bytes', '', '')
    ('Redis monitor state per (model, month) at 10,000,000 (extrapolated)', '330,000', 'bytes', '<= 1,000,000', 'yes')
    ('label-join buffer at 1,000,000 records (200,000 waiting): 35 bytes per waiting record', '7,000,000', 'bytes', '', '')
    ('label-join buffer at 10,000,000 records (2,000,000 waiting, extrapolated)', '70,000,000', 'bytes', '', '')
    """
    rows = []
    target = f"<= {MEMORY_TARGET_BYTES:,}"

    def met(value) -> str:
        return fmt_met(None if value is None else value <= MEMORY_TARGET_BYTES)

    curve = mem.get("curve") or []
    for point in curve:
        state = point.get("state_bytes")
        rows.append((f"Redis monitor state per (model, month) at {fmt_number(point.get('records'))} records",
                     fmt_number(state), "bytes", target, met(state)))
        rows.append((f"  with the label-join buffer ({fmt_number(point.get('waiting_records'))} waiting records)",
                     fmt_number(point.get("bytes")), "bytes", "", ""))
    if curve and curve[-1].get("groups"):
        last = curve[-1]
        for kind, g in sorted(last["groups"].items(), key=lambda kv: -kv[1]["bytes"]):
            if g["bytes"] >= 1024:
                part = "label-join buffer" if kind in JOIN_BUFFER_KINDS else "state"
                rows.append((f"  of which {kind} keys ({part}) at {fmt_number(last.get('records'))} records "
                             f"({fmt_number(g['keys'])} keys)", fmt_number(g["bytes"]), "bytes", "", ""))
    ext = mem.get("extrapolated_10m") or {}
    if ext:
        at = fmt_number(ext.get("at_records", EXTRAPOLATE_AT_RECORDS))
        rows.append((f"Redis monitor state per (model, month) at {at} (extrapolated)",
                     fmt_number(ext.get("linear_bytes")), "bytes", target,
                     met(ext.get("linear_bytes"))))
    join = mem.get("join_buffer") or {}
    if join:
        per = join.get("bytes_per_waiting_record")
        rows.append((f"label-join buffer at {fmt_number(join.get('records'))} records "
                      f"({fmt_number(join.get('waiting_records'))} waiting)"
                      + (f": {fmt_number(per)} bytes per waiting record" if per is not None else ""),
                      fmt_number(join.get("bytes")), "bytes", "", ""))
        jext = join.get("extrapolated_10m") or {}
        if jext and jext.get("at_records", 0) > (join.get("records") or 0):  # else it was measured
            rows.append((f"label-join buffer at {fmt_number(jext.get('at_records'))} records "
                         f"({fmt_number(jext.get('waiting_records'))} waiting, extrapolated"
                         + ("; more: fuller hashes change encoding" if jext.get("encoding_change") else "")
                         + ")", fmt_number(jext.get("bytes")), "bytes", "", ""))
    return rows


def render_table(rows: Sequence[tuple[str, ...]]) -> str:
    """Plain-text table (the runner prints a rich one; this is for logs and docs).

    >>> print(render_table([("a", "1", "x", "", "")]))
    | measurement | value | unit | target | met |
    |---|---:|---|---|---|
    | a | 1 | x |  |  |
    """
    lines = ["| measurement | value | unit | target | met |", "|---|---:|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---- JSON schema ----------------------------------------------------------------------------------
def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _count(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _memory_split_problems(mem: Mapping) -> list[str]:
    """The monitor state / label-join buffer split of a measured memory section."""
    problems = []
    for i, p in enumerate(mem["curve"]):
        for key in ("state_bytes", "join_buffer_bytes", "waiting_records"):
            if not _count(p.get(key)):
                problems.append(f"memory.curve[{i}].{key} is {p.get(key)!r}")
        if _count(p.get("state_bytes")) and _count(p.get("join_buffer_bytes")) and _count(p.get("bytes")) \
                and p["state_bytes"] + p["join_buffer_bytes"] != p["bytes"]:
            problems.append(f"memory.curve[{i}]: state_bytes + join_buffer_bytes != bytes")
    for key in ("max_bytes_per_model_month", "max_total_bytes_per_model_month"):
        if not _count(mem.get(key)):
            problems.append(f"memory.{key} is {mem.get(key)!r}")
    join = mem.get("join_buffer")
    if not isinstance(join, Mapping):
        problems.append(f"memory.join_buffer is {join!r}")
    else:
        for key in ("bytes", "waiting_records"):
            if not _count(join.get(key)):
                problems.append(f"memory.join_buffer.{key} is {join.get(key)!r}")
        per = join.get("bytes_per_waiting_record", "missing")
        if per is not None and not _count(per):  # None: no record waits (every record labelled)
            problems.append(f"memory.join_buffer.bytes_per_waiting_record is {per!r}")
        if not _count((join.get("extrapolated_10m") or {}).get("bytes")):
            problems.append(f"memory.join_buffer.extrapolated_10m is {join.get('extrapolated_10m')!r}")
    return problems


def _machine_problems(doc: Mapping) -> list[str]:
    """The schema version and the machine's description."""
    problems = []
    if doc["schema"] != SCHEMA:
        problems.append(f"schema is {doc['schema']!r}, expected {SCHEMA!r}")
    for key in ("nproc", "cpu_model", "python"):
        if key not in doc["machine"]:
            problems.append(f"machine.{key} missing")
    return problems


def _throughput_problems(doc: Mapping, require_positive: bool) -> list[str]:
    """Every throughput measurement and every ratio present (and positive unless skipped: a ratio of a
    skipped measurement is not required)."""
    problems = []
    tp = doc["throughput"]
    for key in THROUGHPUT_KEYS:
        m = tp.get(key)
        if m is None:
            problems.append(f"throughput.{key} missing")
        elif require_positive and not m.get("skipped") and not _positive(m.get("records_per_s")):
            problems.append(f"throughput.{key}.records_per_s is {m.get('records_per_s')!r}"
                            + (f" ({m['error']})" if m.get("error") else ""))
    skipped = {key for key in THROUGHPUT_KEYS if (tp.get(key) or {}).get("skipped")}
    for name, num, den, _ in RATIOS:
        if name not in doc["ratios"]:
            problems.append(f"ratios.{name} missing")
        elif require_positive and not {num, den} & skipped and not _positive(doc["ratios"][name]):
            problems.append(f"ratios.{name} is {doc['ratios'][name]!r}")
    return problems


def _latency_problems(latency, require_positive: bool) -> list[str]:
    """The latency runs: a list, each run not skipped with positive alert and state p50 / p99."""
    if not isinstance(latency, list):
        return ["latency must be a list of runs"]
    problems = []
    if require_positive:
        for i, run in enumerate(latency):
            if run.get("skipped"):
                continue
            for part in ("alert_ms", "state_ms"):
                s = run.get(part) or {}
                if not s.get("n") or not _positive(s.get("p50")) or not _positive(s.get("p99")):
                    problems.append(f"latency[{i}].{part} has no positive p50/p99 ({s})"
                                    + (f" ({run['error']})" if run.get("error") else ""))
    return problems


def _memory_problems(mem: Mapping, require_positive: bool) -> list[str]:
    """The memory curve's points positive (unless skipped), and its state / label-join buffer split."""
    problems = []
    if require_positive and not mem.get("skipped"):
        curve = mem.get("curve") or []
        if not curve or not all(_positive(p.get("bytes")) and _positive(p.get("records"))
                                and _positive(p.get("state_bytes")) for p in curve):
            problems.append(f"memory.curve has no positive points ({mem.get('error', curve)})")
    if mem.get("curve"):
        problems += _memory_split_problems(mem)
    return problems


def _rss_problems(rss: Mapping, require_positive: bool) -> list[str]:
    """At least one RSS phase, each with a positive start, max and end."""
    if not require_positive:
        return []
    phases = rss.get("phases") or {}
    problems = [] if phases else ["rss.phases is empty"]
    for phase, r in phases.items():
        for k in ("start_kb", "max_kb", "end_kb"):
            if not _positive(r.get(k)):
                problems.append(f"rss.phases.{phase}.{k} is {r.get(k)!r}")
    return problems


def validate_report(doc: Mapping, require_positive: bool = True) -> list[str]:
    """Problems with a benchmark JSON document (empty when it is complete).

    ``require_positive``: every measured figure present and > 0 (a section skipped on purpose is
    ``{"skipped": true}`` and is not checked).

    >>> validate_report({"schema": SCHEMA})[:2]
    ['missing section run_id', 'missing section machine']
    """
    problems = [f"missing section {name}" for name in REQUIRED_SECTIONS if name not in doc]
    if problems:
        return problems
    problems = (_machine_problems(doc) + _throughput_problems(doc, require_positive)
                + _latency_problems(doc["latency"], require_positive)
                + _memory_problems(doc["memory"], require_positive) + _rss_problems(doc["rss"], require_positive))
    if not isinstance(doc["targets"], list) or len(doc["targets"]) != 5:
        problems.append("targets must list the 5 targets of the issue")
    return problems


# ---- profiles --------------------------------------------------------------------------------------
PROFILE_CATEGORIES = (
    # (name, path prefixes after site-packages / the stdlib dir); a sample goes to the category of its
    # innermost frame that has one (so "redis client" is time inside redis-py, called from anywhere)
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("redis client (redis-py)", ("redis/",)),
    ("kafka client (aiokafka)", ("aiokafka/", "kafka/")),
    ("metrics engine (monitor.worker.engine, stats, alerts, rules)", ("monitor/worker/engine.py", "monitor/stats/",
                                                              "monitor/alerts/lifecycle.py", "monitor/alerts/rules.py")),
    ("decode (monitor.schema, fastpath)", ("monitor/schema.py", "monitor/worker/fastpath.py")),
    ("fold + store (monitor.worker.pipeline, store, agents)", ("monitor/",)),
    ("faust / mode", ("faust/", "mode/")),
    ("asyncio + stdlib", ("asyncio/", "selectors.py", "weakref.py", "<")),
)
IDLE_FUNCS = ("select", "poll", "epoll")  # innermost frame in selectors.py waiting for I/O


def _split_frame(frame: str) -> tuple[str, str]:
    """'func (path/file.py:12)' -> ('func', 'path/file.py'), the path shortened to what follows
    site-packages (or the standard library directory).

    >>> _split_frame("get (/x/lib/python3.11/site-packages/redis/asyncio/client.py:600)")
    ('get', 'redis/asyncio/client.py')
    >>> _split_frame("select (/x/lib/python3.11/selectors.py:468)"), _split_frame("odd")
    (('select', 'selectors.py'), ('odd', ''))
    """
    func, sep, rest = frame.rpartition(" (")
    if not sep:
        return frame, ""
    path = rest.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return func, path.split(marker, 1)[1]
    if "/lib/python3" in path:
        return func, path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    if "/monitor/" in path:
        return func, "monitor/" + path.rsplit("/monitor/", 1)[1]
    return func, path


def _tally(rows: list[tuple[list[tuple[str, str]], int]], top: int) -> dict:
    total = idle = 0
    cats = {name: 0 for name, _ in PROFILE_CATEGORIES}
    cats["other"] = 0
    self_counts: dict[str, int] = {}
    for frames, n in rows:
        total += n
        func, path = frames[-1]
        where = f"{func} ({path})"
        self_counts[where] = self_counts.get(where, 0) + n
        if path == "selectors.py" and func.rsplit(".", 1)[-1] in IDLE_FUNCS:
            idle += n
            continue
        for _, fpath in reversed(frames):
            name = next((name for name, prefixes in PROFILE_CATEGORIES if fpath.startswith(prefixes)), None)
            if name is not None:
                cats[name] += n
                break
        else:
            cats["other"] += n
    if not total:
        return {"samples": 0}
    ranked = sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]
    return {"samples": total, "idle_share": round(idle / total, 4),
            "categories": {"idle": round(idle / total, 4), **{k: round(v / total, 4) for k, v in cats.items()}},
            "top_self": [[name, round(n / total, 4)] for name, n in ranked]}


def profile_summary(collapsed: str, top: int = 15) -> dict:
    """Where a process spent its time, from py-spy's ``record --format raw --idle [--threads]`` output.

    ``idle_share``: samples waiting for I/O in an event loop's selector. ``categories``: every sample
    goes to the category of its innermost frame that has one (``other`` when none does), idle
    samples under ``idle``. ``top_self``: the functions with the most own samples. With ``--threads``
    (a faust worker runs its Kafka consumer in a second thread with its own event loop), the same per
    thread under ``threads``, and the top-level figures are the main thread's (the agents' loop).

    >>> text = chr(10).join(["main (a.py:1);EpollSelector.select (/usr/lib/python3.11/selectors.py:9) 3",
    ...                      "main (a.py:1);run (/w/monitor/worker/engine.py:5);ks (/w/monitor/stats/ks.py:2) 1"])
    >>> s = profile_summary(text)
    >>> s["samples"], s["idle_share"], s["categories"]["metrics engine (monitor.worker.engine, stats, alerts, rules)"]
    (4, 0.75, 0.25)
    >>> s["top_self"][0]
    ['EpollSelector.select (selectors.py)', 0.75]
    """
    by_thread: dict[str, list] = {}
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        thread = ""
        if parts[0].startswith("thread (") and len(parts) > 1:  # 'thread (tid): name' with --threads
            thread = parts[0].split(": ", 1)[-1]
            parts = parts[1:]
        by_thread.setdefault(thread, []).append(([_split_frame(f) for f in parts], int(count)))
    if not by_thread:
        return {"samples": 0}
    main = "MainThread" if "MainThread" in by_thread else max(by_thread, key=lambda t: len(by_thread[t]))
    out = _tally(by_thread[main], top)
    out["samples_all_threads"] = sum(n for rows in by_thread.values() for _, n in rows)
    if len(by_thread) > 1 or main:
        out["thread"] = main
        out["threads"] = {name: _tally(rows, 5) for name, rows in by_thread.items()}
    return out
