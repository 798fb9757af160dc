"""Alert rules on a model's monthly metrics, and their lifecycle: provisional, then final.

One alert per (model, version, window, rule, month). The score rules (KS adherence, PSI, AUC,
feature PSI) judge the windows (month, rolling, cumulative as configured) of every month whose
metrics changed; the volume rule judges *closed* months. A rule says firing (with a severity),
ok, or nothing when the window has too few records to judge, and the alert then keeps its state.

A month is *open* until the event-time watermark passes its end plus ``grace_days``, then
*closed* (a month's rolling and cumulative windows close with it: their earlier months closed
before). Verdicts on an open month are **provisional**, on a closed month **final**:

- provisional: ok -> firing emits ``firing`` (phase ``provisional``), once: while the month is open
  its alert neither resolves nor changes severity (a month's records may come in any order: its
  first half says little about the whole), and it fires only when the month holds enough evidence
  (``RuleSet.provisional_min_share`` of its expected volume, see :func:`has_evidence`);
- final: when the month closes, a firing verdict emits ``firing`` (phase ``final``) even if it fired
  provisionally, an ok one emits ``resolved`` if it had fired, and nothing if it never did. A late
  record for a closed month judges it again: an event only when the final verdict changes.

So an alert emits at most one provisional and one final event, unless late records change the
final verdict. A transition is a compare-and-set in Redis that also appends the event to the
model's outbox, from which the worker publishes it to the alerts topic: a transition is decided
once, and never lost.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import orjson
from pydantic import BaseModel

from monitor.alerts.rules import RuleSet
from monitor.months import index as month_index
from monitor.months import month_of
from monitor.months import name as month_name
from monitor.state import ALERT_HISTORY_CAP
from monitor.state.keys import alert_field, parse_alert_field  # noqa: F401 - the alerts hash fields, re-exported

Severity = Literal["warning", "critical"]
Phase = Literal["provisional", "final"]


class AlertEvent(BaseModel):
    """What the alerts topic carries; the Kafka key is ``alert_id`` (``model:version:window:month:rule``)."""

    alert_id: str
    event_id: str
    status: Literal["firing", "resolved"]
    phase: Phase = "final"
    severity: Severity
    previous_severity: Severity | None = None
    rule: str
    model: str
    model_version: str
    window: str
    month: str
    value: float | None
    threshold: float
    n: int
    reference_n: int | None = None
    pvalue: float | None = None
    message: str
    event_time: str | None = None
    emitted_at: dt.datetime


@dataclass(frozen=True)
class Verdict:
    """A rule's judgement of one window."""

    firing: bool
    severity: Severity
    value: float | None
    threshold: float
    message: str
    n: int
    pvalue: float | None = None


def judge_ks_adherence(m: dict, rules: RuleSet, reference_auc: float | None = None) -> Verdict | None:
    """KS adherence D against the reference, when significant.

    >>> v = judge_ks_adherence({"n": 900, "ks_d": 0.25, "ks_pvalue": 1e-9}, RuleSet())
    >>> v.firing, v.severity, v.threshold
    (True, 'critical', 0.2)
    >>> judge_ks_adherence({"n": 20, "ks_d": 0.5, "ks_pvalue": 0.01}, RuleSet()) is None
    True
    """
    r = rules.ks_adherence
    if not r.enabled or m.get("ks_d") is None or m["n"] < rules.min_records:
        return None
    d, p = m["ks_d"], m["ks_pvalue"]
    severity: Severity = "critical" if d > r.critical else "warning"
    firing = p is not None and p < r.alpha and d > r.warning
    return Verdict(firing, severity, d, r.critical if severity == "critical" else r.warning,
                   f"KS adherence D={d:.3f} (p={p:.2g}) against the reference; warning above {r.warning}, "
                   f"critical above {r.critical}, if p < {r.alpha}", m["n"], pvalue=p)


def judge_psi(m: dict, rules: RuleSet, reference_auc: float | None = None) -> Verdict | None:
    """PSI of the window's scores against the reference's deciles.

    >>> judge_psi({"n": 900, "psi": 0.12}, RuleSet()).severity
    'warning'
    """
    return _psi_verdict(rules.psi, m.get("psi"), m["n"], rules.min_records, "the reference")


def _psi_verdict(r, psi: float | None, n: int, min_records: int, against: str, what: str = "") -> Verdict | None:
    if not r.enabled or psi is None or n < min_records:
        return None
    severity: Severity = "critical" if psi >= r.critical else "warning"
    return Verdict(psi >= r.warning, severity, psi, r.critical if severity == "critical" else r.warning,
                   f"{what}PSI={psi:.3f} against {against}; warning from {r.warning}, critical from {r.critical}", n)


def judge_auc(m: dict, rules: RuleSet, reference_auc: float | None = None) -> Verdict | None:
    """AUC under the floor (critical), or significantly more than ``max_drop`` under the reference AUC.

    >>> m = {"n": 2000, "n_labelled": 2000, "n_pos": 200, "n_neg": 1800, "auc": 0.72, "auc_se": 0.02}
    >>> v = judge_auc(m, RuleSet(), reference_auc=0.80)
    >>> v.firing, v.severity, round(v.value, 2)
    (True, 'warning', 0.72)
    >>> judge_auc({**m, "auc": 0.55}, RuleSet(), reference_auc=0.80).severity
    'critical'
    """
    r = rules.auc
    if (not r.enabled or m.get("auc") is None or m["n_labelled"] < rules.min_records
            or min(m["n_pos"], m["n_neg"]) < r.min_class_records):
        return None
    auc = m["auc"]
    if auc < r.floor:
        return Verdict(True, "critical", auc, r.floor,
                       f"AUC={auc:.3f} (Gini {2 * auc - 1:.3f}) is below the floor {r.floor}", m["n_labelled"])
    if reference_auc is not None:
        drop = reference_auc - auc
        z = drop / m["auc_se"] if m.get("auc_se") else 0.0
        significant = z > r.z_drop
        if significant and drop > 2 * r.max_drop:
            return Verdict(True, "critical", auc, reference_auc - 2 * r.max_drop,
                           f"AUC={auc:.3f} is {drop:.3f} below the reference {reference_auc:.3f} "
                           f"({z:.1f} standard errors)", m["n_labelled"])
        if significant and drop > r.max_drop:
            return Verdict(True, "warning", auc, reference_auc - r.max_drop,
                           f"AUC={auc:.3f} is {drop:.3f} below the reference {reference_auc:.3f} "
                           f"({z:.1f} standard errors)", m["n_labelled"])
    return Verdict(False, "warning", auc, r.floor, f"AUC={auc:.3f} is within bounds", m["n_labelled"])


def judge_feature_psi(feature: str, drift: dict, rules: RuleSet) -> Verdict | None:
    """PSI of one feature's live buckets against its reference profile.

    >>> judge_feature_psi("utilization", {"n": 900, "psi": 0.3, "missing_share": 0.0}, RuleSet()).severity
    'critical'
    """
    return _psi_verdict(rules.feature_psi, drift.get("psi"), drift["n"], rules.min_records,
                        "the reference profile", what=f"feature {feature}: ")


SCORE_RULES = {"ks_adherence": judge_ks_adherence, "psi": judge_psi, "auc": judge_auc}


def expected_volume(counts: dict[str, int], month: str, history_months: int) -> float | None:
    """The mean volume of the ``history_months`` months before ``month`` (a month with no record
    counts as 0), or None when the model has fewer months before it.

    >>> expected_volume({"2024-01": 100, "2024-02": 300, "2024-03": 50}, "2024-03", 2)
    200.0
    >>> expected_volume({"2024-01": 100, "2024-03": 50}, "2024-03", 2), expected_volume({"2024-03": 5}, "2024-03", 1)
    (50.0, None)
    """
    first = month_index(min(counts)) if counts else month_index(month)
    start = month_index(month) - history_months
    if start < first:
        return None
    return sum(counts.get(month_name(i), 0) for i in range(start, month_index(month))) / history_months


def months_to_close(months: list[str], watermark: str, grace_days: int) -> set[str]:
    """The closed months that matter among a model's (sorted) ``months``: those with records, and the
    first month of each gap (its volume, zero, is judged once, however long the gap: a record dated
    far in the future must not make thousands of empty months to judge).

    >>> sorted(months_to_close(["2024-01", "2024-02", "2024-05", "9999-12"], "9999-12-31", 5))
    ['2024-01', '2024-02', '2024-03', '2024-05', '2024-06']
    >>> sorted(months_to_close(["2024-01", "2024-02"], "2024-03-10", 5))
    ['2024-01', '2024-02']
    """
    mark = dt.date.fromisoformat(watermark) - dt.timedelta(days=grace_days)
    last_closed = month_index(month_of(mark)) - 1
    present = set(months)
    out = set()
    for month in months:
        i = month_index(month)
        if i <= last_closed:
            out.add(month)
            if i + 1 <= last_closed and month_name(i + 1) not in present:
                out.add(month_name(i + 1))
    return out


def judge_volume(counts: dict[str, int], month: str, rules: RuleSet) -> Verdict | None:
    """A closed month's volume against the mean of the ``history_months`` months before it.

    Months with no record count as 0.

    >>> v = judge_volume({"2024-01": 100, "2024-02": 100, "2024-03": 100, "2024-04": 50}, "2024-04", RuleSet())
    >>> v.firing, round(v.value, 2)
    (True, -0.5)
    >>> judge_volume({"2024-01": 100, "2024-02": 100, "2024-03": 100}, "2024-03", RuleSet()) is None
    True
    """
    r = rules.volume
    mean = expected_volume(counts, month, r.history_months) if r.enabled else None
    if not mean:
        return None
    n = counts.get(month, 0)
    change = (n - mean) / mean
    firing = n == 0 or abs(change) > r.max_change
    return Verdict(firing, "critical" if n == 0 else "warning", change, r.max_change,
                   f"{n} records in {month}, {change:+.0%} against the mean {mean:.0f} of the "
                   f"{r.history_months} months before; alert beyond ±{r.max_change:.0%} or at zero", n)


def provisional_rules(rules: RuleSet) -> RuleSet:
    """The rules for an open month: an AUC drop must be more significant (``provisional_z_drop``), as
    an open month is judged at every checkpoint on part of its records: at the final test's 5 %,
    quiet models would fire by chance (2 provisional false alarms in 3 quiet model-years, measured).

    >>> m = {"n": 2000, "n_labelled": 2000, "n_pos": 200, "n_neg": 1800, "auc": 0.74, "auc_se": 0.02}  # z = 3.0
    >>> judge_auc(m, RuleSet(), reference_auc=0.80).firing, judge_auc(m, provisional_rules(RuleSet()), 0.80).firing
    (True, False)
    """
    return rules.model_copy(update={"auc": rules.auc.model_copy(update={"z_drop": rules.auc.provisional_z_drop})})


def has_evidence(counts: dict[str, int], month: str, rules: RuleSet) -> bool:
    """Whether an open month holds enough records for a provisional verdict: ``min_records``, and
    ``provisional_min_share`` of its expected volume (the mean of the months before it, when the
    model has them). A month's records often arrive ordered (by hour, channel, branch): its first
    part is not a sample of the whole.

    >>> counts = {"2024-01": 3000, "2024-02": 3000, "2024-03": 3000, "2024-04": 1000}
    >>> has_evidence(counts, "2024-04", RuleSet()), has_evidence({**counts, "2024-04": 2500}, "2024-04", RuleSet())
    (False, True)
    >>> has_evidence({"2024-01": 600}, "2024-01", RuleSet())
    True
    """
    n = counts.get(month, 0)
    expected = expected_volume(counts, month, rules.volume.history_months)
    return n >= rules.min_records and (expected is None or n >= rules.provisional_min_share * expected)


def decide(old: dict | None, verdict: Verdict, phase: Phase) -> tuple[str, str | None] | None:
    """The event a verdict of ``phase`` causes given the stored state: (status, previous severity) or None.

    >>> v = Verdict(True, "warning", 0.12, 0.1, "", 900)
    >>> decide(None, v, "provisional"), decide({"status": "firing", "severity": "warning", "phase": "provisional"}, v, "final")
    (('firing', None), ('firing', None))
    >>> ok = Verdict(False, "warning", 0.02, 0.1, "", 900)
    >>> critical = Verdict(True, "critical", 0.3, 0.25, "", 900)
    >>> provisional = {"status": "firing", "severity": "warning", "phase": "provisional"}
    >>> decide(provisional, ok, "provisional"), decide(provisional, critical, "provisional")
    (None, None)
    >>> decide(provisional, ok, "final"), decide(None, ok, "final")
    (('resolved', 'warning'), None)
    >>> final = {"status": "firing", "severity": "warning", "phase": "final"}
    >>> decide(final, v, "final"), decide(final, critical, "final"), decide(final, ok, "final")
    (None, ('firing', 'warning'), ('resolved', 'warning'))
    """
    was_firing = old is not None and old["status"] == "firing"
    if phase == "provisional":  # once per alert, and only to fire: the month's close settles it
        return ("firing", None) if verdict.firing and not was_firing else None
    if old is None or not was_firing:
        return ("firing", None) if verdict.firing else None
    if verdict.firing and old.get("phase", "final") == "provisional":  # the close confirms it
        return "firing", None if old["severity"] == verdict.severity else old["severity"]
    if verdict.firing and old["severity"] != verdict.severity:
        return "firing", old["severity"]
    if not verdict.firing:
        return "resolved", old["severity"]
    return None


class AlertEvaluator:
    """Turns verdicts into transitions in Redis (and events in the model's outbox)."""

    def __init__(self, store, history_cap: int = ALERT_HISTORY_CAP):
        self.store = store
        self.history_cap = history_cap

    async def apply(self, model: str, version: str, rule: str, window: str, month: str, verdict: Verdict,
                    phase: Phase, reference_n: int | None, event_time: str | None,
                    states: dict[bytes, bytes] | None = None) -> AlertEvent | None:
        """Record the verdict on ``month``; return the event when it is a transition (and this call made it).

        ``states``: the model's stored alert states (HGETALL of its alerts hash) when the caller
        read them already; the transition script checks them, so a stale copy costs no event.
        """
        field = alert_field(rule, window, month)
        if states is None:
            old_raw = await self.store.alert_state_raw(model, version, field)
        else:
            old_raw = states.get(field.encode())
        old = orjson.loads(old_raw) if old_raw else None
        if old is not None and old.get("phase") == "final":
            phase = "final"  # a closed month that a lagging partition seems to reopen stays closed
        transition = decide(old, verdict, phase)
        if transition is None:
            return None
        status, previous = transition
        now = dt.datetime.now(dt.timezone.utc)
        event = AlertEvent(
            alert_id=f"{model}:{version}:{window}:{month}:{rule}", event_id=uuid.uuid4().hex, status=status,
            phase=phase, severity=previous if status == "resolved" else verdict.severity, previous_severity=previous,
            rule=rule, model=model, model_version=version, window=window, month=month, value=verdict.value,
            threshold=verdict.threshold, n=verdict.n, reference_n=reference_n, pvalue=verdict.pvalue,
            message=verdict.message, event_time=event_time, emitted_at=now)
        state = {"status": "firing" if verdict.firing else "ok", "phase": phase, "severity": event.severity,
                 "rule": rule, "window": window, "month": month, "value": verdict.value, "since": now.isoformat(),
                 "message": verdict.message, "event_id": event.event_id}
        changed = await self.store.transition_alert(model, version, field, old_raw or b"", orjson.dumps(state),
                                                    event.model_dump_json(), self.history_cap)
        return event if changed else None
