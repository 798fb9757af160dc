"""Alert-quality benchmark: do the alerts on a real stream agree with a batch judgement of the months?

``python -m monitor.bench.alerts`` (or ``monitor bench --alerts``) starts its own Tansu broker and
redis-server on free loopback ports, and for each scenario: stores the model's reference (as
``monitor demo`` does, :func:`monitor.ops.reference.save_reference`), starts a real ``monitor worker``,
publishes a synthetic stream (``producers.synthetic``) in a chosen order, with explicit partitions,
waits for the worker to count and judge everything, then reads every alert event from the alerts
topic and the final alert states from Redis, and compares them with the *truth*.

The truth of a (model, rule, window, month) is the verdict of the same rule, with the same
thresholds (:class:`monitor.alerts.rules.RuleSet`), computed in batch on that window's RAW scores:
``scipy.stats.ks_2samp`` against the raw reference scores, PSI over the raw reference's deciles
(:func:`psi_raw`, the buckets ``monitor/stats/psi.py`` documents), ``sklearn.metrics.roc_auc_score``
for AUC (reference AUC on the raw reference too), the volume rule from the monthly counts. The
monitor is exact on scores rounded to the resolution (1e-4): a disagreement that the same batch
judgement on the rounded scores reproduces is counted as a *quantization* disagreement, apart.

Scenarios (:func:`build_scenarios`): quiet streams shuffled, ordered by score within the month,
with one partition a month behind, with 5 % of each month two months late; score shift,
population shift, performance decay and volume drop from month ``k``, each ordered and shuffled;
a 12-month quiet stream for many models. After the stream, a few *closing* records dated
``grace_days + 2`` days into the next month (one per partition and model) let the watermark close
every month of the scenario; that next month stays open and has no truth of its own (its
provisional verdicts still count as false alarms when its windows are quiet).

Events are read with ``phase`` (missing = provisional, the engine before issue 15) and ``month``.
The final verdict of a (rule, window, month) is its last ``final`` event: firing, or ok when it is
``resolved``; ok without any final event.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import datetime as dt
import math
import random
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import orjson

from monitor.alerts.rules import RuleSet
from monitor.months import add as months_add
from producers.synthetic import Scenario, generate, reference_frame

ORDERS = ("shuffled", "ordered")
LAGS = ("none", "partition", "late")
LATE_SHARE = 0.05
LATE_STEPS = 2
SCORE_RULES = ("ks_adherence", "psi", "auc")
TARGETS_TEXT = {
    "agreement_pct": "100 %",
    "final_false_alarms": "0",
    "provisional_false_alarms": "0 on shuffled quiet streams",
    "max_events_per_key": "<= 2",
    "detected_before_close": "yes on shuffled drift streams (score rules)",
}


# ---- scenarios ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlertScenario:
    """One benchmark stream: the synthetic streams of its models, their order and lag.

    ``order``: ``shuffled`` (random within the month) or ``ordered`` (ascending score within the
    month: the worst case for a month judged before it is complete). ``lag``: ``none``,
    ``partition`` (the last partition's records of month m published with month m+1) or ``late``
    (a random 5 % of each month published with month m+2).
    """

    name: str
    streams: tuple[Scenario, ...]
    order: str = "shuffled"
    lag: str = "none"

    @property
    def drift_month(self) -> int | None:
        """Index of the first drifted month (the same for all streams), None when quiet.

        >>> AlertScenario("q", (Scenario(months=2),)).drift_month is None
        True
        """
        return self.streams[0].drift_start

    @property
    def quiet(self) -> bool:
        return self.drift_month is None


@dataclass(frozen=True)
class Scale:
    """Sizes: records per month, months, drift start, models of the many-models stream."""

    monthly_volume: int = 2000
    months: int = 6
    drift_start: int = 4
    many_models: int = 3
    many_volume: int = 1000
    # Records/s published (0: as fast as possible). At 1,000/s a month of 2,000 records takes 2 s, longer
    # than the bench's month settle time (BENCH_SETTINGS): a month is judged final before the records
    # two months late come, as on a real stream where months last weeks.
    rate: float = 1000.0


SCALES = {"small": Scale(), "full": Scale(monthly_volume=5000, months=8, drift_start=5, many_models=30,
                                          many_volume=2000)}

DRIFTS: dict[str, dict[str, Any]] = {
    "score_shift": {"score_shift": 0.6},
    "population_shift": {"population_shift": 0.75, "drifted_features": ("income", "utilization")},
    "performance_decay": {"performance_decay": 0.6},
    "volume_drop": {"volume_factor": 0.3},
}


def build_scenarios(scale: Scale = Scale()) -> list[AlertScenario]:
    """Every scenario of the issue, at ``scale``.

    >>> names = [s.name for s in build_scenarios()]
    >>> names[:4]
    ['quiet-shuffled', 'quiet-ordered', 'quiet-partition-lag', 'quiet-late-5pct']
    >>> names[4:6], names[-1], len(names)
    (['score_shift-shuffled', 'score_shift-ordered'], 'quiet-many-models', 13)
    """
    base = Scenario(name="alerts", model="bench", months=scale.months, monthly_volume=scale.monthly_volume,
                    seed=21)
    out = [AlertScenario("quiet-shuffled", (base,)), AlertScenario("quiet-ordered", (base,), "ordered"),
           AlertScenario("quiet-partition-lag", (base,), lag="partition"),
           AlertScenario("quiet-late-5pct", (base,), lag="late")]
    for drift, knobs in DRIFTS.items():
        stream = replace(base, name=drift, drift_start=scale.drift_start, **knobs)
        out += [AlertScenario(f"{drift}-{order}", (stream,), order) for order in ORDERS]
    many = tuple(replace(base, model=f"bench{i:02d}", seed=100 + i, months=12, monthly_volume=scale.many_volume)
                 for i in range(scale.many_models))
    out.append(AlertScenario("quiet-many-models", many))
    return out


def order_month(records: list[dict], order: str, rng: random.Random) -> list[dict]:
    """A month's records in publishing order: shuffled, or by ascending score.

    >>> recs = [{"score": s} for s in (0.5, 0.1, 0.9)]
    >>> [r["score"] for r in order_month(recs, "ordered", random.Random(0))]
    [0.1, 0.5, 0.9]
    >>> sorted(r["score"] for r in order_month(recs, "shuffled", random.Random(0)))
    [0.1, 0.5, 0.9]
    """
    if order == "ordered":
        return sorted(records, key=lambda r: r["score"])
    out = list(records)
    rng.shuffle(out)
    return out


def publish_plan(months: list[list[dict]], partitions: int, lag: str, seed: int = 0,
                 late_share: float = LATE_SHARE) -> list[tuple[int, dict]]:
    """(partition, record) in publishing order, from each month's records already in their order.

    Month m's records go round-robin to the partitions. Step s publishes month s's records that are
    on time, then the ones deferred to step s: with ``lag="partition"`` the last partition's records
    of month s-1, with ``lag="late"`` a random ``late_share`` of month s-2 (their own partitions).

    >>> months = [[{"m": m, "i": i} for i in range(4)] for m in range(3)]
    >>> [(p, r["m"], r["i"]) for p, r in publish_plan(months, 2, "none")][:3]
    [(0, 0, 0), (1, 0, 1), (0, 0, 2)]
    >>> [(p, r["m"]) for p, r in publish_plan(months, 2, "partition")]
    [(0, 0), (0, 0), (0, 1), (0, 1), (1, 0), (1, 0), (0, 2), (0, 2), (1, 1), (1, 1), (1, 2), (1, 2)]
    >>> late = publish_plan([[{"m": m, "i": i} for i in range(100)] for m in range(3)], 4, "late")
    >>> from itertools import groupby
    >>> [(m, len(list(g))) for m, g in groupby(r["m"] for _, r in late)]
    [(0, 95), (1, 95), (2, 95), (0, 5), (1, 5), (2, 5)]
    """
    if lag not in LAGS:
        raise ValueError(f"lag must be one of {LAGS}, got {lag!r}")
    rng = random.Random(seed)  # noqa: S311 - benchmark jitter/data, not security
    deferred: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    plan: list[tuple[int, dict]] = []
    steps = len(months) + (1 if lag == "partition" else LATE_STEPS if lag == "late" else 0)
    for step in range(steps):
        records = months[step] if step < len(months) else []
        late = set(rng.sample(range(len(records)), round(late_share * len(records)))) if lag == "late" else set()
        for i, record in enumerate(records):
            partition = i % partitions
            if lag == "partition" and partition == partitions - 1:
                deferred[step + 1].append((partition, record))
            elif i in late:
                deferred[step + LATE_STEPS].append((partition, record))
            else:
                plan.append((partition, record))
        plan += deferred.pop(step, [])
    return plan


def closing_records(stream: Scenario, partitions: int, grace_days: int) -> list[tuple[int, dict]]:
    """One record per partition dated ``grace_days + 2`` days into the month after the stream:
    the watermark passes the end + grace of every month of the stream, so they all close.

    >>> recs = closing_records(Scenario(months=2, monthly_volume=10), 2, 5)
    >>> [(p, r["ref_date"], r["record_id"]) for p, r in recs]
    [(0, '2024-03-07', 'synthetic-close-0'), (1, '2024-03-07', 'synthetic-close-1')]
    """
    month = next_month(stream.month_labels()[-1])
    scores = reference_frame(replace(stream, seed=stream.seed + 7919), n=partitions)
    day = f"{month}-{grace_days + 2:02d}"
    return [(p, {"record_id": f"{stream.model}-close-{p}", "model": stream.model,
                 "model_version": stream.model_version, "ref_date": day,
                 "score": float(scores["score"].iloc[p]), "target": int(scores["TARGET"].iloc[p])})
            for p in range(partitions)]


def next_month(month: str) -> str:
    """``YYYY-MM`` of the month after.

    >>> next_month("2024-12"), next_month("2024-01")
    ('2025-01', '2024-02')
    """
    return months_add(month, 1)


def month_end(month: str) -> dt.date:
    """The last day of a ``YYYY-MM``.

    >>> month_end("2024-02")
    datetime.date(2024, 2, 29)
    """
    year, mon = int(month[:4]), int(month[5:])
    return dt.date(year, mon, calendar.monthrange(year, mon)[1])


def stream_records(sc: AlertScenario, partitions: int, grace_days: int) -> list[tuple[int, dict]]:
    """The whole scenario in publishing order: every model's months (mixed within a month when
    there are several models), then the closing records.

    >>> sc = AlertScenario("t", (Scenario(months=2, monthly_volume=6),), order="ordered")
    >>> plan = stream_records(sc, 2, 5)
    >>> len(plan), [r["ref_date"][:7] for _, r in plan].count("2024-03")
    (14, 2)
    >>> first = [r["score"] for _, r in plan[:6]]; first == sorted(first)
    True
    """
    rng = random.Random(_stable_seed(sc.name))  # noqa: S311 - benchmark jitter/data, not security
    by_month: dict[str, list[dict]] = defaultdict(list)
    for stream in sc.streams:
        for record in generate(stream):
            record.pop("features", None)  # no feature profile is loaded: the score rules only
            by_month[record["ref_date"][:7]].append(record)
    months = [order_month(by_month[m], sc.order, rng) for m in sorted(by_month)]
    plan = publish_plan(months, partitions, sc.lag, seed=_stable_seed(sc.name))
    for stream in sc.streams:
        plan += closing_records(stream, partitions, grace_days)
    return plan


def _stable_seed(text: str) -> int:
    """A seed from a name, the same in every process (``hash`` is salted).

    >>> _stable_seed("quiet") == _stable_seed("quiet")
    True
    """
    return int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "big") % 2**32


# ---- truth ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Judgement:
    """A batch verdict: firing (with a severity) or ok; ``value`` is the metric judged."""

    firing: bool
    severity: str
    value: float


def psi_edges_raw(reference: np.ndarray, buckets: int = 10) -> np.ndarray:
    """Bucket upper edges (inclusive) at the reference's deciles, on raw values, as
    ``monitor/stats/psi.py`` documents: edge k is the first value where the reference CDF reaches
    k / buckets; duplicates collapse and an edge at the top value is dropped.

    >>> psi_edges_raw(np.array([0.1] * 5 + [0.2, 0.3, 0.4, 0.5, 0.6]), buckets=5).tolist()
    [0.1, 0.2, 0.4]
    """
    ref = np.sort(np.asarray(reference, dtype=float))
    n = ref.size
    index = np.array([math.ceil(k * n / buckets) - 1 for k in range(1, buckets)], dtype=np.int64)
    edges = np.unique(ref[index])
    return edges[edges < ref[-1]]


def psi_raw(live: np.ndarray, reference: np.ndarray, buckets: int = 10, epsilon: float = 1e-4) -> float:
    """PSI = sum (l - r) ln(l / r) over the reference's decile buckets; an empty bucket's share is epsilon.

    >>> ref = np.linspace(0, 1, 101)
    >>> round(psi_raw(np.linspace(0.2, 1, 101), ref), 4), psi_raw(ref, ref)
    (1.0117, 0.0)
    """
    edges = psi_edges_raw(reference, buckets)

    def shares(x):
        counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
        s = counts / len(x)
        return np.where(s > 0, s, epsilon)

    p, q = shares(np.asarray(live, dtype=float)), shares(np.asarray(reference, dtype=float))
    return float(np.sum((p - q) * np.log(p / q)))


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC, the one the AUC rule divides the drop by.

    >>> round(hanley_mcneil_se(0.8, 100, 400), 4)
    0.0279
    """
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def judge_scores(rule: str, scores: np.ndarray, targets: np.ndarray, reference: np.ndarray,
                 reference_auc: float | None, rules: RuleSet) -> Judgement | None:
    """The batch verdict of a score rule on one window's scores (targets: 1 bad, 0 good, -1
    unlabelled); None when the window has too little to judge (the rule keeps quiet).

    >>> rng = np.random.default_rng(0); ref = rng.random(4000)
    >>> judge_scores("ks_adherence", rng.random(1000), np.zeros(1000), ref, None, RuleSet()).firing
    False
    >>> v = judge_scores("ks_adherence", rng.random(1000) ** 2, np.zeros(1000), ref, None, RuleSet())
    >>> v.firing, v.severity
    (True, 'critical')
    >>> judge_scores("psi", rng.random(100), np.zeros(100), ref, None, RuleSet()) is None
    True
    """
    from scipy.stats import ks_2samp
    from sklearn.metrics import roc_auc_score

    if rule == "ks_adherence":
        r = rules.ks_adherence
        if not r.enabled or len(scores) < rules.min_records:
            return None
        res = ks_2samp(scores, reference)
        d, p = float(res.statistic), float(res.pvalue)
        return Judgement(bool(p < r.alpha and d > r.warning), "critical" if d > r.critical else "warning", d)
    if rule == "psi":
        psi = rules.psi
        if not psi.enabled or len(scores) < rules.min_records:
            return None
        value = psi_raw(scores, reference)
        return Judgement(value >= psi.warning, "critical" if value >= psi.critical else "warning", value)
    if rule == "auc":
        auc_rule = rules.auc
        labelled = targets >= 0
        y, s = targets[labelled], scores[labelled]
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        if not auc_rule.enabled or len(y) < rules.min_records or min(n_pos, n_neg) < auc_rule.min_class_records:
            return None
        auc = float(roc_auc_score(y, s))
        if auc < auc_rule.floor:
            return Judgement(True, "critical", auc)
        if reference_auc is not None:
            drop = reference_auc - auc
            se = hanley_mcneil_se(auc, n_pos, n_neg)
            significant = se > 0 and drop / se > auc_rule.z_drop
            if significant and drop > 2 * auc_rule.max_drop:
                return Judgement(True, "critical", auc)
            if significant and drop > auc_rule.max_drop:
                return Judgement(True, "warning", auc)
        return Judgement(False, "warning", auc)
    raise ValueError(f"unknown score rule {rule!r}")


def judge_volume_batch(counts: dict[str, int], month: str, closed: list[str], rules: RuleSet) -> Judgement | None:
    """The volume rule on a closed month: its count against the mean of the ``history_months``
    closed months before it (counted from the model's first month; a month without records is 0).

    >>> c = {"2024-01": 100, "2024-02": 100, "2024-03": 100, "2024-04": 50}
    >>> judge_volume_batch(c, "2024-04", sorted(c), RuleSet())
    Judgement(firing=True, severity='warning', value=-0.5)
    >>> judge_volume_batch(c, "2024-03", sorted(c), RuleSet()) is None
    True
    """
    r = rules.volume
    before = [m for m in closed if m < month]
    if not r.enabled or len(before) < r.history_months:
        return None
    mean = sum(counts.get(m, 0) for m in before[-r.history_months:]) / r.history_months
    if mean == 0:
        return None
    n = counts.get(month, 0)
    change = (n - mean) / mean
    return Judgement(n == 0 or abs(change) > r.max_change, "critical" if n == 0 else "warning", change)


def window_months(month: str, months: list[str], window: str, rolling_months: int) -> list[str]:
    """The months a window of ``month`` holds among the model's months.

    >>> ms = ["2024-01", "2024-02", "2024-03", "2024-04"]
    >>> window_months("2024-03", ms, "rolling", 2), window_months("2024-02", ms, "cumulative", 3)
    (['2024-02', '2024-03'], ['2024-01', '2024-02'])
    """
    if window == "month":
        return [month]
    earlier = [m for m in months if m <= month]
    if window == "cumulative":
        return earlier
    first = months_add(month, 1 - rolling_months)
    return [m for m in earlier if m >= first]  # 'YYYY-MM' compare in calendar order


def closed_by(watermark: dt.date, months: Iterable[str], grace_days: int) -> list[str]:
    """The months whose end + grace the watermark has passed.

    >>> closed_by(dt.date(2024, 4, 6), ["2024-02", "2024-03", "2024-04"], 5)
    ['2024-02', '2024-03']
    >>> closed_by(dt.date(2024, 4, 5), ["2024-02", "2024-03"], 5)
    ['2024-02']
    """
    return [m for m in sorted(months) if watermark > month_end(m) + dt.timedelta(days=grace_days)]


def model_truth(records: list[dict], reference: np.ndarray, reference_targets: np.ndarray, rules: RuleSet,
                rolling_months: int, quantize: float | None = None) -> dict[tuple[str, str, str], dict]:
    """Batch verdicts of one model's stream: {(rule, window, month): {"judgement", "closed"}}.

    Every month with records gets its score-rule verdicts (the closed ones are compared with the
    final verdicts); the volume rule judges the closed months. ``quantize``: judge the scores
    rounded to this resolution instead of the raw ones (as the monitor sees them).

    >>> rng = np.random.default_rng(1); ref = rng.random(5000); tgt = (rng.random(5000) < ref).astype(int)
    >>> recs = [{"ref_date": f"2024-0{m}-10", "score": float(s), "target": int(rng.random() < s)}
    ...         for m in (1, 2, 3, 4, 5) for s in rng.random(600)]
    >>> recs.append({"ref_date": "2024-06-07", "score": 0.5, "target": 0})
    >>> truth = model_truth(recs, ref, tgt, RuleSet(), 3)
    >>> truth[("psi", "rolling", "2024-03")]["closed"], truth[("psi", "month", "2024-06")]["judgement"]
    (True, None)
    >>> [k for k, v in truth.items() if v["judgement"] is not None and v["judgement"].firing]
    []
    >>> truth[("volume", "month", "2024-04")]["judgement"]
    Judgement(firing=False, severity='warning', value=0.0)
    """
    from sklearn.metrics import roc_auc_score

    def q(x):
        return np.rint(np.asarray(x, dtype=float) / quantize) if quantize else np.asarray(x, dtype=float)

    by_month: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_month[r["ref_date"][:7]].append(r)
    months = sorted(by_month)
    scores = {m: q([r["score"] for r in by_month[m]]) for m in months}
    targets = {m: np.array([-1 if r.get("target") is None else r["target"] for r in by_month[m]]) for m in months}
    ref = q(reference)
    ref_auc = float(roc_auc_score(reference_targets, ref))
    watermark = max(dt.date.fromisoformat(r["ref_date"]) for r in records)
    closed = closed_by(watermark, months, rules.grace_days)
    out: dict[tuple[str, str, str], dict] = {}
    for month in months:
        for window in rules.windows:
            span = window_months(month, months, window, rolling_months)
            s = np.concatenate([scores[m] for m in span])
            t = np.concatenate([targets[m] for m in span])
            for rule in SCORE_RULES:
                out[(rule, window, month)] = {"judgement": judge_scores(rule, s, t, ref, ref_auc, rules),
                                              "closed": month in closed}
    counts = {m: len(by_month[m]) for m in months}
    first = months[0]
    all_closed = [m for m in _month_range(first, closed[-1])] if closed else []
    for month in all_closed:
        out[("volume", "month", month)] = {"judgement": judge_volume_batch(counts, month, all_closed, rules),
                                           "closed": True}
    return out


def _month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last``, both included.

    >>> _month_range("2024-11", "2025-02")
    ['2024-11', '2024-12', '2025-01', '2025-02']
    """
    out = [first]
    while out[-1] < last:
        out.append(next_month(out[-1]))
    return out


# ---- events against the truth -------------------------------------------------------------------
def event_key(event: dict) -> tuple[str, str, str, str]:
    """(model, rule, window, month) of an event: the month is the event's (the alert id of the
    engine before issue 15 does not hold it)."""
    return event["model"], event["rule"], event["window"], event["month"]


def phase_of(event: dict) -> str:
    """An event's phase; an engine before issue 15 sends none: provisional.

    >>> phase_of({}), phase_of({"phase": "final"})
    ('provisional', 'final')
    """
    return event.get("phase") or "provisional"


def final_verdicts(events: list[dict]) -> dict[tuple[str, str, str, str], dict]:
    """The last final event of each (model, rule, window, month), events in emission order.

    >>> evs = [{"model": "m", "rule": "psi", "window": "month", "month": "2024-01", "status": "firing",
    ...         "phase": "final", "severity": "warning"},
    ...        {"model": "m", "rule": "psi", "window": "month", "month": "2024-01", "status": "resolved",
    ...         "phase": "final", "severity": "warning"},
    ...        {"model": "m", "rule": "ks_adherence", "window": "month", "month": "2024-01", "status": "firing"}]
    >>> {k[1]: v["status"] for k, v in final_verdicts(evs).items()}
    {'psi': 'resolved'}
    """
    out = {}
    for event in events:
        if phase_of(event) == "final":
            out[event_key(event)] = event
    return out


def _days(a: str | None, b: dt.date) -> int | None:
    return None if a is None else (dt.date.fromisoformat(a[:10]) - b).days


@dataclass
class FinalAgreement:
    """The final verdicts against the truth, over the closed (model, rule, window, month) keys."""

    judged: int = 0
    agree: int = 0
    false_alarms: int = 0  # final firing, truth ok
    misses: int = 0  # truth firing, final ok
    quantization: int = 0  # disagreements the monitor's quantized histograms explain
    severity_mismatches: int = 0  # both firing, at different severities
    disagreements: list[dict] = field(default_factory=list)


def final_agreement(truth: dict, quantized: dict, finals: dict) -> FinalAgreement:
    """Each closed truth against its final verdict (none: ok); a disagreement is listed, and counted as
    quantization when the truth on the monitor's quantized histograms agrees with the verdict.

    >>> fire = Judgement(True, "warning", 0.3)
    >>> final_agreement({"m": {("psi", "month", "2024-01"): {"judgement": fire, "closed": True}}},
    ...                 {"m": {("psi", "month", "2024-01"): {"judgement": fire}}}, {}).misses
    1
    """
    fa = FinalAgreement()
    for model, model_truths in truth.items():
        for (rule, window, month), t in model_truths.items():
            if not t["closed"]:
                continue
            fa.judged += 1
            want = t["judgement"] is not None and t["judgement"].firing
            final = finals.get((model, rule, window, month))
            got = final is not None and final["status"] == "firing"
            if want == got:
                fa.agree += 1
                if want and final is not None and final["severity"] != t["judgement"].severity:
                    fa.severity_mismatches += 1
                continue
            qt = quantized[model][(rule, window, month)]["judgement"]
            by_quantized = qt is not None and qt.firing
            fa.quantization += by_quantized == got
            fa.false_alarms += got and not want
            fa.misses += want and not got
            value = t["judgement"].value if t["judgement"] is not None else None
            fa.disagreements.append({"model": model, "rule": rule, "window": window, "month": month,
                                     "truth": "firing" if want else "ok", "final": "firing" if got else "ok",
                                     "truth_value": value, "quantization": by_quantized == got})
    return fa


def provisional_false_alarms(events: list[dict], truth: dict) -> tuple[int, int]:
    """(provisional firing events, those the truth does not fire on); an event without a phase is
    provisional, and a month still open has no truth that fires.

    >>> provisional_false_alarms([{"model": "m", "rule": "psi", "window": "month", "month": "2024-01",
    ...                            "status": "firing"}], {})
    (1, 1)
    """
    firing = false_alarms = 0
    for e in events:
        if e["status"] != "firing" or phase_of(e) != "provisional":
            continue
        firing += 1
        t = truth.get(e["model"], {}).get(event_key(e)[1:])
        false_alarms += not (t is not None and t["judgement"] is not None and t["judgement"].firing)
    return firing, false_alarms


def truth_firing(truth: dict) -> int:
    """How many closed truths fire.

    >>> truth_firing({"m": {"k": {"closed": True, "judgement": Judgement(True, "warning", 0.3)}}})
    1
    """
    return sum(1 for mt in truth.values() for t in mt.values()
               if t["closed"] and t["judgement"] is not None and t["judgement"].firing)


def analyse(sc: AlertScenario, events: list[dict], truth: dict, quantized: dict, counts: dict[str, dict[str, int]],
            redis_states: dict[str, dict[str, dict]], progress: list[tuple[float, int]], grace_days: int) -> dict:
    """The figures of one scenario from its events (in emission order) and its truths.

    ``truth`` / ``quantized``: {model: model_truth(...)}; ``counts``: {model: {month: records}};
    ``progress``: see :func:`detection`.
    """
    finals = final_verdicts(events)
    per_key = Counter(event_key(e) for e in events)
    fa = final_agreement(truth, quantized, finals)
    provisional_firing, prov_fa = provisional_false_alarms(events, truth)
    report: dict[str, Any] = {
        "scenario": sc.name, "order": sc.order, "lag": sc.lag, "models": len(sc.streams),
        "months": sc.streams[0].months, "records": sum(sum(c.values()) for c in counts.values()),
        "phase_seen": any("phase" in e for e in events), "events": len(events),
        "truth_judged": fa.judged,
        "truth_firing": truth_firing(truth),
        "final_events": sum(phase_of(e) == "final" for e in events),
        "final_false_alarms": fa.false_alarms, "final_misses": fa.misses,
        "agreement_pct": round(100.0 * fa.agree / fa.judged, 2) if fa.judged else None,
        "quantization_disagreements": fa.quantization, "severity_mismatches": fa.severity_mismatches,
        "disagreements": fa.disagreements[:50],
        "provisional_firing_events": provisional_firing, "provisional_false_alarms": prov_fa,
        "max_events_per_key": max(per_key.values(), default=0),
        "events_per_key": {str(k): v for k, v in sorted(Counter(per_key.values()).items())},
        "redis": redis_agreement(redis_states, finals),
    }
    years = len(sc.streams) * sc.streams[0].months / 12
    report["final_false_alarms_per_model_year"] = round(fa.false_alarms / years, 3) if years else None
    # On a quiet stream the truth itself fires now and then: the rules' own false positives (a
    # significance test at 5 % does that), which the monitor must reproduce, not avoid.
    report["truth_firing_per_model_year"] = round(report["truth_firing"] / years, 3) if years else None
    report["detection"] = detection(sc, events, truth, progress, grace_days)
    report["event_log"] = [_compact(e) for e in events]
    report["targets"] = targets(sc, report)
    return report


def detection(sc: AlertScenario, events: list[dict], truth: dict, progress: list[tuple[float, int]],
              grace_days: int) -> dict | None:
    """Delay from the drift start to the first provisional and the first final firing of a
    (rule, window, month) that the truth says fires: in drifted records (of the drift month or
    later) the monitor had counted when the event was emitted (``progress``: (unix time, drifted
    records counted) sampled every :data:`PROGRESS_POLL_S` during the run, the last sample before
    ``emitted_at``), and in event-time days (the event's ``event_time``, the latest ``ref_date``
    seen, minus the drift's first day). ``before_close``: the drifted month fired provisionally.

    >>> sc = AlertScenario("d", (Scenario(months=3, drift_start=1, score_shift=1.0),))
    >>> ev = {"status": "firing", "model": "synthetic", "rule": "psi", "window": "month", "month": "2024-02",
    ...       "event_time": "2024-02-12", "emitted_at": "2026-01-01T00:00:01+00:00"}
    >>> truth = {"synthetic": {("psi", "month", "2024-02"): {"judgement": Judgement(True, "warning", 0.3)}}}
    >>> t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    >>> d = detection(sc, [ev], truth, [(t0, 0), (t0 + 0.5, 700), (t0 + 1.5, 900)], 5)
    >>> d["provisional"]["records"], d["provisional"]["days"], d["final"], d["before_close"]
    (700, 11, None, True)
    """
    if sc.drift_month is None:  # quiet
        return None
    stream = sc.streams[0]
    drift_month = stream.month_labels()[sc.drift_month]
    start = dt.date.fromisoformat(f"{drift_month}-01")
    close = month_end(drift_month) + dt.timedelta(days=grace_days)
    out: dict = {"drift_month": drift_month, "drift_month_closes": close.isoformat()}  # by event time
    for phase in ("provisional", "final"):
        first = next((e for e in events if e["status"] == "firing" and phase_of(e) == phase
                      and e["month"] >= drift_month and _truth_fires(truth, e)), None)
        if first is None:
            out[phase] = None
            continue
        emitted = dt.datetime.fromisoformat(first["emitted_at"]).timestamp()
        counted = [n for t, n in progress if t <= emitted]
        out[phase] = {"rule": first["rule"], "window": first["window"], "month": first["month"],
                      "records": counted[-1] if counted else None,
                      "days": _days(first.get("event_time"), start), "event_time": first.get("event_time")}
    # Before the close: a provisional firing of the drifted month itself, i.e. while the engine's
    # closing watermark (the slowest partition) held it open. The event's event_time cannot say it:
    # it is the latest ref_date seen, which a partition read ahead moves past the close.
    out["before_close"] = any(e["status"] == "firing" and phase_of(e) == "provisional" and e["month"] == drift_month
                              and _truth_fires(truth, e) for e in events)
    return out


def _compact(event: dict) -> dict:
    """The fields of an event the report keeps.

    >>> _compact({"rule": "psi", "window": "month", "month": "2024-01", "status": "firing", "severity": "warning",
    ...           "n": 900, "value": 0.2, "event_time": "2024-01-20", "model": "m", "message": "..."})["phase"]
    'provisional'
    """
    keep = ("model", "rule", "window", "month", "status", "severity", "n", "value", "event_time", "emitted_at")
    return {**{k: event.get(k) for k in keep}, "phase": phase_of(event)}


def _truth_fires(truth: dict, event: dict) -> bool:
    t = truth.get(event["model"], {}).get(event_key(event)[1:])
    return t is not None and t["judgement"] is not None and t["judgement"].firing


def redis_agreement(states: dict[str, dict[str, dict]], finals: dict) -> dict:
    """Firing alert states in Redis against the final verdicts read from the events.

    A state's (rule, window, month) is read from its field (``rule|window[|month]``) or its
    ``month``. ``agree``: the same set of firing (model, rule, window, month).
    """
    firing = set()
    for model, fields in states.items():
        for name, state in fields.items():
            parts = name.split("|")
            if len(parts) < 2 or state.get("status") != "firing":
                continue
            month = parts[2] if len(parts) > 2 else state.get("month")
            firing.add((model, parts[0], parts[1], month))
    final_firing = {k for k, e in finals.items() if e["status"] == "firing"}
    return {"firing_states": len(firing), "agree_with_final_events": firing == final_firing}


def targets(sc: AlertScenario, r: dict) -> list[dict]:
    """The issue's targets for this scenario, with the figure and whether it is met."""
    out = [{"name": "agreement_pct", "value": r["agreement_pct"], "met": r["agreement_pct"] == 100.0},
           {"name": "final_false_alarms", "value": r["final_false_alarms"], "met": r["final_false_alarms"] == 0},
           {"name": "max_events_per_key", "value": r["max_events_per_key"], "met": r["max_events_per_key"] <= 2}]
    if sc.quiet and sc.order == "shuffled":
        out.append({"name": "provisional_false_alarms", "value": r["provisional_false_alarms"],
                    "met": r["provisional_false_alarms"] == 0})
    if not sc.quiet and sc.order == "shuffled" and not sc.name.startswith("volume"):
        before = r["detection"]["before_close"]
        out.append({"name": "detected_before_close", "value": before, "met": before})
    return out


# ---- running on the real worker ---------------------------------------------------------------
async def publish_plan_to(settings, plan: list[tuple[int, dict]], rate: float) -> None:
    """Publish in plan order, each record to its partition (keyed by record id); ``rate`` records/s."""
    from monitor.connect import kafka_producer

    producer = kafka_producer(settings)
    await producer.start()
    started, pending = time.monotonic(), []
    try:
        for i, (partition, record) in enumerate(plan):
            pending.append(await producer.send(settings.records_topic, value=orjson.dumps(record),
                                               key=record["record_id"].encode(), partition=partition))
            if len(pending) >= 512:
                await asyncio.gather(*pending)
                pending = []
            if rate:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read_events(settings, expected: int, idle_s: float = 3.0, timeout_s: float = 60.0) -> list[dict]:
    """Every event of the alerts topic (all partitions, from the start), in emission order."""
    from aiokafka import TopicPartition

    from monitor.connect import kafka_consumer

    consumer = kafka_consumer(settings, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    events: list[dict] = []
    try:
        parts = consumer.partitions_for_topic(settings.alerts_topic)
        deadline = time.monotonic() + timeout_s
        while not parts and time.monotonic() < deadline:
            await consumer.force_metadata_update()
            parts = consumer.partitions_for_topic(settings.alerts_topic)
        consumer.assign([TopicPartition(settings.alerts_topic, p) for p in sorted(parts or [])])
        last = time.monotonic()
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for msgs in batch.values():
                events += [orjson.loads(m.value) for m in msgs]
                last = time.monotonic()
            if len(events) >= expected and time.monotonic() - last > 0.5 or time.monotonic() - last > idle_s:
                break
    finally:
        await consumer.stop()
    return sorted(events, key=lambda e: e["emitted_at"])


async def wait_settled(settings, expected: dict[str, dict[str, int]], timeout_s: float, worker) -> int:
    """Until every record is counted and computed, the months closed by the idle partitions, and the
    alert history still for two metric passes; returns the history's length."""
    from monitor.errors import MonitorError
    from monitor.state import Store

    store = Store.connect(settings)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if worker.poll() is not None:
                raise MonitorError(f"the worker exited with code {worker.returncode}")
            if time.monotonic() > deadline:
                raise MonitorError(f"the worker did not count and compute every record within {timeout_s:.0f} s")
            done = True
            for model, months in expected.items():
                metrics = await store.metrics(model, "1")
                computed = {m: ((metrics.get(m) or {}).get("windows") or {}).get("month", {}).get("n")
                            for m in months}
                done &= computed == months
            if done:
                break
            await asyncio.sleep(0.25)
        # The partitions go idle, the watermark reaches the closing records, months close and settle.
        settle = getattr(settings, "month_settle_s", 0.0)
        await asyncio.sleep(max(settings.partition_idle_s, settle) + 2 * settings.metrics_interval_s)
        length, still = -1, 0
        while still < 3 and time.monotonic() < deadline:
            now = await store.alert_history_len()
            still = still + 1 if now == length else 0
            length = now
            await asyncio.sleep(settings.metrics_interval_s)
        return length
    finally:
        await store.close()


async def drive(settings, plan, counts, drifted: dict[str, list[str]], rate: float, worker, timeout_s: float):
    """Publish, sample the drifted records counted meanwhile, wait until settled, read events and
    states: (history length, events, states, progress)."""
    progress: list[tuple[float, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_progress(settings, drifted, progress, stop))
    try:
        await publish_plan_to(settings, plan, rate)
        history = await wait_settled(settings, counts, timeout_s, worker)
    finally:
        stop.set()
        await sampler
    events = await read_events(settings, history)
    states = await redis_states(settings, list(counts))
    return history, events, states, progress


PROGRESS_POLL_S = 0.02


async def sample_progress(settings, drifted: dict[str, list[str]], out: list[tuple[float, int]],
                          stop: asyncio.Event) -> None:
    """Append (unix time, records of the drifted months counted) every PROGRESS_POLL_S until ``stop``."""
    from monitor.state import Store

    if not drifted:
        return
    store = Store.connect(settings)
    try:
        while not stop.is_set():
            out.append((time.time(), await store.records_in({(model, "1"): months for model, months in drifted.items()})))
            await asyncio.sleep(PROGRESS_POLL_S)
    finally:
        await store.close()


async def redis_states(settings, models: list[str]) -> dict[str, dict[str, dict]]:
    from monitor.state import Store

    store = Store.connect(settings)
    try:
        return {m: await store.alert_states(m, "1") for m in models}
    finally:
        await store.close()


def run_scenario(sc: AlertScenario, base, work_dir: Path, rate: float, say=print, timeout_s: float = 600) -> dict:
    """Publish the scenario to fresh topics, run a worker, judge; the report of :func:`analyse`."""
    from monitor.alerts.rules import load_alert_config
    from monitor.ops import infra
    from monitor.ops.processes import start_worker, stop_process
    from monitor.ops.reference import save_reference

    name = f"ab-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(update={
        "records_topic": f"{name}-records", "outcomes_topic": f"{name}-outcomes", "alerts_topic": f"{name}-alerts",
        "dead_letter_topic": f"{name}-dead-letter", "consumer_group": name, "key_prefix": name})
    config = load_alert_config(settings)
    rules = config.rules_for(sc.streams[0].model, "1")
    started = time.monotonic()
    plan = stream_records(sc, settings.partitions, rules.grace_days)
    records_of: dict[str, list[dict]] = defaultdict(list)
    for _, record in plan:
        records_of[record["model"]].append(record)
    counts = {m: dict(sorted(Counter(r["ref_date"][:7] for r in recs).items())) for m, recs in records_of.items()}
    asyncio.run(infra.create_topics(settings))
    references = {}
    for stream in sc.streams:
        ref = reference_frame(stream)
        references[stream.model] = (ref["score"].to_numpy(), ref["TARGET"].to_numpy())
        asyncio.run(save_reference(settings, stream.model, stream.model_version, *references[stream.model],
                                   source=f"synthetic reference of {stream.name!r}"))
    drifted = {}
    if sc.drift_month is not None:  # not quiet
        stream = sc.streams[0]
        drifted = {stream.model: [m for m in counts[stream.model] if m >= stream.month_labels()[sc.drift_month]]}
    worker = start_worker(settings, work_dir / f"{sc.name}-worker.log")
    try:
        say(f"{sc.name}: publishing {len(plan):,} records ({sc.order}, lag {sc.lag}, {len(sc.streams)} model(s))")
        history, events, states, progress = asyncio.run(
            drive(settings, plan, counts, drifted, rate, worker, timeout_s))
    finally:
        stop_process(worker)
    truth, quantized = {}, {}
    for model, recs in records_of.items():
        ref_scores, ref_targets = references[model]
        model_rules = config.rules_for(model, "1")
        truth[model] = model_truth(recs, ref_scores, ref_targets, model_rules, settings.rolling_months)
        quantized[model] = model_truth(recs, ref_scores, ref_targets, model_rules, settings.rolling_months,
                                       quantize=settings.resolution)
    report = analyse(sc, events, truth, quantized, counts, states, progress, rules.grace_days)
    report["history_events"] = history
    report["seconds"] = round(time.monotonic() - started, 1)
    say(format_line(report))
    return report


BENCH_SETTINGS = {"partition_idle_s": 5.0, "metrics_interval_s": 1.0, "month_settle_s": 1.5}
"""Settings that differ from the defaults, to compress weeks into seconds: a partition idle for 5 s
(not 60) no longer holds the watermark back, so the closing records close the months within seconds
of the stream's end; a closed month is judged final once none of its records came for 1.5 s (not 10),
shorter than a month's publishing at the default rate."""


def bench_settings(run_dir: Path):
    """Throwaway servers' settings on free ports, with :data:`BENCH_SETTINGS`."""
    from monitor.ops import infra
    from monitor.settings import Settings

    extra: dict[str, Any] = {k: v for k, v in BENCH_SETTINGS.items() if k in Settings.model_fields}
    return Settings(kafka_bootstrap=f"127.0.0.1:{infra.free_port()}",
                    redis_url=f"redis://127.0.0.1:{infra.free_port()}/0", run_dir=run_dir, **extra)


def run(names: list[str] | None, scale: Scale, work_dir: Path | None = None, say=print) -> dict:
    """Every chosen scenario on one pair of throwaway servers; the JSON document."""
    from monitor.ops import infra

    chosen = [s for s in build_scenarios(scale) if not names or s.name in names]
    reports = []
    with tempfile.TemporaryDirectory(prefix="alertbench-", dir=work_dir) as tmp:
        base = bench_settings(Path(tmp))
        with infra.running(base):
            for sc in chosen:
                reports.append(run_scenario(sc, base, Path(tmp), scale.rate, say))
    return {"scale": scale.__dict__, "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "engine_phase": any(r["phase_seen"] for r in reports), "targets_text": TARGETS_TEXT,
            "scenarios": reports}


def format_line(r: dict) -> str:
    det = r.get("detection") or {}

    def delay(phase):
        d = det.get(phase)
        return "-" if not d else f"{d['records']} rec/{d['days']} d"

    return (f"{r['scenario']:26} truth firing {r['truth_firing']:3}/{r['truth_judged']:<4} "
            f"final FA {r['final_false_alarms']} miss {r['final_misses']} agree {r['agreement_pct']}% "
            f"(quant {r['quantization_disagreements']})  prov FA {r['provisional_false_alarms']}  "
            f"events {r['events']} max/key {r['max_events_per_key']} {r['events_per_key']}  "
            f"delay prov {delay('provisional')} final {delay('final')}"
            + (f" before-close {det.get('before_close')}" if det else ""))


def markdown_table(doc: dict) -> str:
    """The figures as the table of docs/benchmarks.md."""
    head = ("| scenario | records | truth firing / judged | final FA | final misses | agreement % "
            "(quantization) | prov. FA | events | max / key | events per key (count: keys) | "
            "first prov. firing (records, days) | first final firing (records, days) | before close |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in doc["scenarios"]:
        det = r.get("detection") or {}

        def delay(phase, det=det):
            d = det.get(phase)
            return "-" if not d else f"{d['records']:,}, {d['days']} ({d['rule']}/{d['window']})"

        lines.append(
            f"| {r['scenario']} | {r['records']:,} | {r['truth_firing']} / {r['truth_judged']} | "
            f"{r['final_false_alarms']} | {r['final_misses']} | {r['agreement_pct']} ({r['quantization_disagreements']}) | "
            f"{r['provisional_false_alarms']} | {r['events']} | {r['max_events_per_key']} | "
            f"{', '.join(f'{k}: {v}' for k, v in r['events_per_key'].items()) or '-'} | "
            f"{delay('provisional') if det else 'n/a'} | {delay('final') if det else 'n/a'} | "
            f"{det.get('before_close', 'n/a') if det else 'n/a'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.bench.alerts", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small",
                        help="small (CI: 2,000 records a month, 3 models in the many-models stream) or full")
    parser.add_argument("--volume", type=int, help="records per month of the single-model streams")
    parser.add_argument("--models", type=int, help="models of the many-models stream")
    parser.add_argument("--rate", type=float, help="records/s published (0: as fast as possible; 1000)")
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--json", type=Path, default=Path("artifacts/alert-quality.json"))
    parser.add_argument("--markdown", action="store_true", help="also print the docs/benchmarks.md table")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--check-targets", action="store_true",
                        help="exit 1 when a target is not met (only meaningful on an engine that sends phases)")
    a = parser.parse_args(argv)
    scale = SCALES[a.scale]
    scale = replace(scale, **{k: v for k, v in (("monthly_volume", a.volume), ("many_models", a.models),
                                                 ("rate", a.rate)) if v is not None})
    if a.list:
        for sc in build_scenarios(scale):
            print(sc.name)
        return 0
    unknown = set(a.scenario or []) - {s.name for s in build_scenarios(scale)}
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; see --list")
    started = time.monotonic()
    doc = run(a.scenario, scale, a.work_dir, say=lambda line: print(f"{time.monotonic() - started:6.1f}s {line}",
                                                                    flush=True))
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print()
    for r in doc["scenarios"]:
        print(format_line(r))
        unmet = [f"{t['name']}={t['value']}" for t in r["targets"] if not t["met"]]
        if unmet:
            print(f"{'':26} targets not met: {', '.join(unmet)}")
    print(f"\ntargets: {TARGETS_TEXT}")
    print(f"engine sends phases: {doc['engine_phase']}; JSON written to {a.json}")
    if a.markdown:
        print(markdown_table(doc))
    if a.check_targets and any(not t["met"] for r in doc["scenarios"] for t in r["targets"]):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
