"""Alert rules on a window's metrics, and their lifecycle: ok -> firing -> resolved.

A rule looks at one window's metrics and says ``firing`` (with a severity) or ``ok``, or
nothing when the window has too few records to judge (the alert then keeps its state).
A transition is written to Redis atomically (compare-and-set in a Lua script), so of two
workers judging the same metrics only one emits the event.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Literal

import orjson
from pydantic import BaseModel

from monitor.settings import Settings

Severity = Literal["warning", "critical"]


class AlertEvent(BaseModel):
    """What the alerts topic carries; the Kafka key is ``alert_id``."""

    alert_id: str
    event_id: str
    status: Literal["firing", "resolved"]
    severity: Severity
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
    emitted_at: dt.datetime


@dataclass(frozen=True)
class Verdict:
    firing: bool
    severity: Severity
    value: float | None
    threshold: float
    message: str
    pvalue: float | None = None


def judge_ks_adherence(m: dict, s: Settings) -> Verdict | None:
    if m.get("ks_d") is None or m["n"] < s.min_records:
        return None
    d, p = m["ks_d"], m["ks_pvalue"]
    significant = p is not None and p < s.ks_alpha
    severity: Severity = "critical" if d > s.ks_critical else "warning"
    threshold = s.ks_critical if severity == "critical" else s.ks_warning
    firing = significant and d > s.ks_warning
    return Verdict(firing, severity, d, threshold,
                   f"KS adherence D={d:.3f} (p={p:.2g}) against the reference; warning above {s.ks_warning}, "
                   f"critical above {s.ks_critical}", pvalue=p)


def judge_psi(m: dict, s: Settings) -> Verdict | None:
    if m.get("psi") is None or m["n"] < s.min_records:
        return None
    psi = m["psi"]
    severity: Severity = "critical" if psi >= s.psi_critical else "warning"
    return Verdict(psi >= s.psi_warning, severity, psi,
                   s.psi_critical if severity == "critical" else s.psi_warning,
                   f"PSI={psi:.3f} against the reference; warning from {s.psi_warning}, critical from {s.psi_critical}")


def judge_auc_floor(m: dict, s: Settings) -> Verdict | None:
    if (m.get("auc") is None or m["n_labelled"] < s.min_records
            or min(m["n_pos"], m["n_neg"]) < s.min_class_records):
        return None
    auc = m["auc"]
    return Verdict(auc < s.auc_floor, "critical", auc, s.auc_floor,
                   f"AUC={auc:.3f} (Gini {2 * auc - 1:.3f}) is below the floor {s.auc_floor}")


RULES = {"ks_adherence": judge_ks_adherence, "psi": judge_psi, "auc_floor": judge_auc_floor}

# KEYS[1] alert states hash, KEYS[2] history list. ARGV: field, new state JSON, status, severity,
# event JSON, history cap. Writes and returns 1 only when status or severity changed.
TRANSITION_LUA = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
local old_status, old_severity = 'ok', ''
if old then
  local state = cjson.decode(old)
  old_status, old_severity = state['status'], state['severity']
end
if old_status == ARGV[3] and (ARGV[3] ~= 'firing' or old_severity == ARGV[4]) then return 0 end
if old_status ~= 'firing' and ARGV[3] ~= 'firing' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[5])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
return 1
"""


class AlertEvaluator:
    """Judges windows, records transitions in Redis and returns the events to emit."""

    def __init__(self, store, settings: Settings, history_cap: int = 10_000):
        self.store = store
        self.settings = settings
        self.history_cap = history_cap
        self._transition = store.redis.register_script(TRANSITION_LUA)

    async def evaluate(self, model: str, version: str, month: str, window: str, metrics: dict,
                       reference_n: int | None) -> list[AlertEvent]:
        events = []
        for rule, judge in RULES.items():
            verdict = judge(metrics, self.settings)
            if verdict is None:
                continue
            alert_id = f"{model}:{version}:{window}:{month}:{rule}"
            now = dt.datetime.now(dt.timezone.utc)
            event = AlertEvent(
                alert_id=alert_id, event_id=uuid.uuid4().hex, status="firing" if verdict.firing else "resolved",
                severity=verdict.severity, rule=rule, model=model, model_version=version, window=window,
                month=month, value=verdict.value, threshold=verdict.threshold, n=metrics["n"],
                reference_n=reference_n, pvalue=verdict.pvalue, message=verdict.message, emitted_at=now)
            state = {"status": "firing" if verdict.firing else "ok", "severity": verdict.severity,
                     "value": verdict.value, "since": now.isoformat(), "message": verdict.message}
            changed = await self._transition(
                keys=[f"{self.store.base(model, version)}:alerts", self.store.history_key()],
                args=[f"{rule}|{window}|{month}", orjson.dumps(state), state["status"], verdict.severity,
                      event.model_dump_json(), self.history_cap])
            if changed:
                events.append(event)
        return events

    async def firing(self, model: str, version: str) -> dict[str, dict]:
        raw = await self.store.redis.hgetall(f"{self.store.base(model, version)}:alerts")
        states = {k.decode(): orjson.loads(v) for k, v in raw.items()}
        return {k: v for k, v in states.items() if v["status"] == "firing"}
