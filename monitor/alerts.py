"""Alert rules on a model's latest metrics, and their lifecycle: ok -> firing -> resolved.

One alert per (model, version, window, rule). The score rules (KS adherence, PSI, AUC) judge
the latest month's windows (month, rolling, cumulative as configured); the volume rule judges
the latest *closed* month. A rule says firing (with a severity), ok, or nothing when the window
has too few records to judge, and the alert then keeps its state.

Transitions: ok -> firing emits ``firing``; a change of severity emits ``firing`` again with
``previous_severity``; firing -> ok emits ``resolved``; nothing else emits. A transition is a
compare-and-set in Redis that also appends the event to the model's outbox, from which the
worker publishes it to the alerts topic: a transition is decided once, and never lost.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import orjson
from pydantic import BaseModel

from monitor.rules import RuleSet

Severity = Literal["warning", "critical"]


class AlertEvent(BaseModel):
    """What the alerts topic carries; the Kafka key is ``alert_id``."""

    alert_id: str
    event_id: str
    status: Literal["firing", "resolved"]
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


def month_index(month: str) -> int:
    year, mon = month.split("-")
    return int(year) * 12 + int(mon) - 1


def month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def event_time_watermark(partitions: dict[str, tuple[str, int]], now: int, idle_s: float) -> str | None:
    """The ref_date up to which a model's records have all arrived, from each partition's latest
    ref_date and the time it last delivered: the earliest among partitions still delivering.

    One partition can run far ahead of another (a backlog is read a fetch at a time), so the
    latest date seen would close a month whose records still wait in a slower partition. A
    partition that delivered nothing for ``idle_s`` seconds has caught up and holds nothing back;
    when all have, it is the latest date.

    >>> parts = {"t:0": ("2024-12-31", 100), "t:1": ("2024-11-20", 95), "t:2": ("2024-06-01", 10)}
    >>> event_time_watermark(parts, now=101, idle_s=60), event_time_watermark(parts, now=200, idle_s=60)
    ('2024-11-20', '2024-12-31')
    >>> event_time_watermark({}, now=0, idle_s=60) is None
    True
    """
    if not partitions:
        return None
    active = [day for day, seen in partitions.values() if now - seen < idle_s]
    return min(active) if active else max(day for day, _ in partitions.values())


def closed_months(first_month: str, watermark: str, grace_days: int) -> list[str]:
    """Months from the first one that the watermark has closed: it is past their end + grace.

    >>> closed_months("2024-01", "2024-04-03", 5)
    ['2024-01', '2024-02']
    >>> closed_months("2024-01", "2024-04-06", 5)
    ['2024-01', '2024-02', '2024-03']
    """
    mark = dt.date.fromisoformat(watermark) - dt.timedelta(days=grace_days)
    last_closed = mark.year * 12 + mark.month - 2  # the month before the (grace-shifted) watermark's
    return [month_name(i) for i in range(month_index(first_month), last_closed + 1)]


def judge_volume(counts: dict[str, int], closed: list[str], rules: RuleSet) -> tuple[str, Verdict] | None:
    """The latest closed month's volume against the mean of the closed months before it.

    Months with no record count as 0.

    >>> month, v = judge_volume({"2024-01": 100, "2024-02": 100, "2024-03": 100, "2024-04": 50},
    ...                         ["2024-01", "2024-02", "2024-03", "2024-04"], RuleSet())
    >>> month, v.firing, round(v.value, 2)
    ('2024-04', True, -0.5)
    """
    r = rules.volume
    if not r.enabled or len(closed) < r.history_months + 1:
        return None
    month = closed[-1]
    n = counts.get(month, 0)
    history = [counts.get(m, 0) for m in closed[-r.history_months - 1:-1]]
    mean = sum(history) / len(history)
    if mean == 0:
        return None
    change = (n - mean) / mean
    firing = n == 0 or abs(change) > r.max_change
    return month, Verdict(firing, "critical" if n == 0 else "warning", change, r.max_change,
                          f"{n} records in {month}, {change:+.0%} against the mean {mean:.0f} of the "
                          f"{r.history_months} closed months before; alert beyond ±{r.max_change:.0%} or at zero", n)


def decide(old: dict | None, verdict: Verdict) -> tuple[str, str | None] | None:
    """The event a verdict causes given the stored state: (status, previous severity) or None.

    >>> v = Verdict(True, "warning", 0.12, 0.1, "", 900)
    >>> decide(None, v), decide({"status": "firing", "severity": "warning"}, v)
    (('firing', None), None)
    >>> decide({"status": "firing", "severity": "critical"}, v)
    ('firing', 'critical')
    >>> decide({"status": "firing", "severity": "warning"}, Verdict(False, "warning", 0.0, 0.1, "", 900))
    ('resolved', 'warning')
    """
    was_firing = old is not None and old["status"] == "firing"
    if verdict.firing and not was_firing:
        return "firing", None
    if verdict.firing and old["severity"] != verdict.severity:
        return "firing", old["severity"]
    if not verdict.firing and was_firing:
        return "resolved", old["severity"]
    return None


# KEYS: alert states hash, history list, outbox list.
# ARGV: field, expected stored state ("" = none), new state, event, history cap.
TRANSITION_LUA = """
local old = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if old ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('LPUSH', KEYS[2], ARGV[4])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
redis.call('RPUSH', KEYS[3], ARGV[4])
return 1
"""


class AlertEvaluator:
    """Turns verdicts into transitions in Redis (and events in the model's outbox)."""

    def __init__(self, store, history_cap: int = 10_000):
        self.store = store
        self.history_cap = history_cap
        self._transition = store.redis.register_script(TRANSITION_LUA)

    async def apply(self, model: str, version: str, rule: str, window: str, month: str, verdict: Verdict,
                    reference_n: int | None, event_time: str | None,
                    states: dict[bytes, bytes] | None = None) -> AlertEvent | None:
        """Record the verdict; return the event when it is a transition (and this call made it).

        ``states``: the model's stored alert states (HGETALL of its alerts hash) when the caller
        read them already; the transition script checks them, so a stale copy costs no event.
        """
        base = self.store.base(model, version)
        field = f"{rule}|{window}"
        if states is None:
            old_raw = await self.store.redis.hget(f"{base}:alerts", field)
        else:
            old_raw = states.get(field.encode())
        old = orjson.loads(old_raw) if old_raw else None
        transition = decide(old, verdict)
        if transition is None:
            return None
        status, previous = transition
        now = dt.datetime.now(dt.timezone.utc)
        event = AlertEvent(
            alert_id=f"{model}:{version}:{window}:{rule}", event_id=uuid.uuid4().hex, status=status,
            severity=previous if status == "resolved" else verdict.severity, previous_severity=previous,
            rule=rule, model=model, model_version=version, window=window, month=month, value=verdict.value,
            threshold=verdict.threshold, n=verdict.n, reference_n=reference_n, pvalue=verdict.pvalue,
            message=verdict.message, event_time=event_time, emitted_at=now)
        state = {"status": "firing" if verdict.firing else "ok", "severity": event.severity, "month": month,
                 "value": verdict.value, "since": now.isoformat(), "message": verdict.message,
                 "event_id": event.event_id}
        changed = await self._transition(
            keys=[f"{base}:alerts", self.store.history_key(), f"{base}:outbox"],
            args=[field, old_raw or b"", orjson.dumps(state), event.model_dump_json(), self.history_cap])
        return event if changed else None
