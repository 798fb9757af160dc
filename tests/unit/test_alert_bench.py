"""The alert-quality benchmark's pure parts: the batch truth, the scenarios' publishing order, the figures."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from monitor.bench import alerts as ab
from monitor.alerts.rules import RuleSet
from monitor.stats import ScoreHistogram
from monitor.stats.ks import ks_adherence
from monitor.stats.psi import psi
from monitor.stats.roc import roc_auc
from producers.synthetic import Scenario

LOOSE = RuleSet.model_validate({"min_records": 1, "auc": {"min_class_records": 1}})


# ---- truth against hand examples -----------------------------------------------------------------
def test_psi_raw_on_a_hand_example():
    reference = np.arange(1, 11) / 10  # deciles: every value its own bucket
    live = np.array([0.05] * 5 + [0.95] * 5)  # half below the first edge, half in the last bucket
    eps = 1e-4
    want = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (eps - 0.1) * math.log(eps / 0.1)
    assert ab.psi_raw(live, reference) == pytest.approx(want, rel=1e-12)
    assert ab.psi_edges_raw(reference).tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])


def test_judgements_on_hand_examples():
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    # D = 0.5 but p = 0.77 with 4 + 4 scores: not significant, no alert
    ks = ab.judge_scores("ks_adherence", np.array([0.3, 0.4, 0.5, 0.6]), np.full(4, -1), ref, None, LOOSE)
    assert (ks.firing, ks.value) == (False, 0.5)
    far = ab.judge_scores("ks_adherence", np.full(40, 0.9), np.full(40, -1), ref, None, LOOSE)
    assert (far.firing, far.severity, far.value) == (True, "critical", 1.0)
    # Perfect ranking: AUC 1, no drop from a reference of 1; reversed ranking: under the floor
    scores, targets = np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 1, 0, 0])
    assert ab.judge_scores("auc", scores, targets, ref, 1.0, LOOSE) == ab.Judgement(False, "warning", 1.0)
    assert ab.judge_scores("auc", scores, 1 - targets, ref, 1.0, LOOSE) == ab.Judgement(True, "critical", 0.0)
    # Unlabelled records (-1) do not count towards the AUC
    assert ab.judge_scores("auc", scores, np.full(4, -1), ref, 1.0, LOOSE) is None
    counts = {"2024-01": 100, "2024-02": 100, "2024-03": 100, "2024-04": 0, "2024-05": 125}
    closed = sorted(counts)
    assert ab.judge_volume_batch(counts, "2024-04", closed, RuleSet()) == ab.Judgement(True, "critical", -1.0)
    assert ab.judge_volume_batch(counts, "2024-05", closed, RuleSet()).firing is True  # 125 vs mean 66.7


def test_quantized_truth_is_the_monitors_exact_value():
    """On scores rounded to 1e-4 the batch metrics equal the monitor's histogram metrics: a
    disagreement that the quantized truth reproduces is the rounding's, not the engine's."""
    rng = np.random.default_rng(3)
    ref, live = np.round(rng.beta(2, 5, 3000), 6), np.round(rng.beta(2.3, 5, 1200), 6)
    labels = (rng.random(1200) < live).astype(int)
    q = lambda x: np.rint(x / 1e-4)  # noqa: E731
    h_ref, h_live = ScoreHistogram.from_scores(ref), ScoreHistogram.from_scores(live)
    assert ab.psi_raw(q(live), q(ref)) == pytest.approx(psi(h_live, h_ref), abs=1e-12)
    ks = ab.judge_scores("ks_adherence", q(live), labels, q(ref), None, RuleSet())
    assert ks.value == pytest.approx(ks_adherence(h_live, h_ref).d, abs=1e-12)
    monitor_auc = roc_auc(ScoreHistogram.from_scores(live[labels == 1]), ScoreHistogram.from_scores(live[labels == 0]))
    assert roc_auc_score(labels, q(live)) == pytest.approx(monitor_auc, abs=1e-12)


def test_model_truth_windows_and_closed_months():
    rng = np.random.default_rng(1)
    ref = rng.random(4000)
    ref_targets = (rng.random(4000) < ref).astype(int)
    records = [{"ref_date": f"2024-0{m}-1{m}", "score": float(s), "target": int(rng.random() < s)}
               for m in range(1, 6) for s in (rng.random(600) if m < 5 else rng.random(600) ** 3)]
    records.append({"ref_date": "2024-06-07", "score": 0.5, "target": None})
    truth = ab.model_truth(records, ref, ref_targets, RuleSet(), rolling_months=3)
    closed = {k for k, v in truth.items() if v["closed"]}
    assert {k[2] for k in closed} == {"2024-01", "2024-02", "2024-03", "2024-04", "2024-05"}
    firing = {k for k, v in truth.items() if v["judgement"] is not None and v["judgement"].firing}
    # month 5 is drawn skewed: its month window fires on KS and PSI; so does the next month's rolling window
    assert {("ks_adherence", "month", "2024-05"), ("psi", "month", "2024-05")} <= firing
    assert all(k[2] >= "2024-05" for k in firing)
    assert truth[("psi", "month", "2024-06")]["judgement"] is None  # one record: too few
    assert truth[("volume", "month", "2024-03")]["judgement"] is None  # 2 closed months of history only
    assert truth[("volume", "month", "2024-04")]["judgement"].firing is False


# ---- scenario construction ----------------------------------------------------------------------
def _months(n_months=4, per_month=40):
    return [[{"record_id": f"{m}-{i}", "m": m, "score": (i * 7919 % per_month) / per_month}
             for i in range(per_month)] for m in range(n_months)]


def test_publish_plan_keeps_every_record_once_in_month_order():
    months = _months()
    plan = ab.publish_plan(months, 4, "none")
    assert [r["record_id"] for _, r in plan] == [r["record_id"] for month in months for r in month]
    assert Counter(p for p, _ in plan) == {0: 40, 1: 40, 2: 40, 3: 40}


def test_one_partition_a_month_behind():
    plan = ab.publish_plan(_months(), 4, "partition")
    assert sorted(r["record_id"] for _, r in plan) == sorted(r["record_id"] for m in _months() for r in m)
    # the last partition holds month m where the others are at month m + 1, and nothing else
    lagging = [r["m"] for p, r in plan if p == 3]
    assert lagging == sorted(lagging) and len(lagging) == 40
    for m in range(3):
        first_next = next(i for i, (p, r) in enumerate(plan) if r["m"] == m + 1 and p != 3)
        last_lagged = max(i for i, (p, r) in enumerate(plan) if r["m"] == m and p == 3)
        assert first_next < last_lagged
        assert all(r["m"] != m for p, r in plan[last_lagged + 1:] if p != 3)


def test_five_percent_two_months_late():
    months = _months(n_months=4, per_month=100)
    plan = ab.publish_plan(months, 4, "late", seed=1)
    assert len(plan) == 400
    position = {r["record_id"]: i for i, (_, r) in enumerate(plan)}
    first_of = [min(position[r["record_id"]] for r in month) for month in months]
    for m in range(4):
        late = [r for r in months[m] if m + 1 < 4 and position[r["record_id"]] > first_of[m + 1]]
        if m + 1 < 4:
            assert len(late) == 5, m
            # two months late: after month m + 2 started (or after every month, at the end of the stream)
            assert all(position[r["record_id"]] > (first_of[m + 2] if m + 2 < 4 else 380) for r in late)
    last = [r["m"] for _, r in plan[-10:]]
    assert last == [2] * 5 + [3] * 5  # months 2 and 3's late records come after the last month


def test_ordered_scenario_publishes_each_month_by_ascending_score():
    sc = ab.AlertScenario("t", (Scenario(months=3, monthly_volume=50, seed=2),), order="ordered")
    plan = ab.stream_records(sc, 4, grace_days=5)
    for month in ("2024-01", "2024-02", "2024-03"):
        scores = [r["score"] for _, r in plan if r["ref_date"][:7] == month]
        assert scores == sorted(scores) and len(scores) == 50
    closing = plan[-4:]
    assert [p for p, _ in closing] == [0, 1, 2, 3]
    assert {r["ref_date"] for _, r in closing} == {"2024-04-07"}  # past 2024-03's end + 5 grace days
    assert ab.closed_by(ab.dt.date(2024, 4, 7), ["2024-03", "2024-04"], 5) == ["2024-03"]


def test_scenario_list_covers_the_issue():
    names = [s.name for s in ab.build_scenarios()]
    for drift in ("score_shift", "population_shift", "performance_decay", "volume_drop"):
        assert f"{drift}-shuffled" in names and f"{drift}-ordered" in names
    many = ab.build_scenarios(ab.SCALES["full"])[-1]
    assert len(many.streams) == 30 and many.streams[0].months == 12
    assert len({s.model for s in many.streams}) == 30


# ---- figures from events -------------------------------------------------------------------------
def _event(rule, month, status="firing", phase=None, window="month", severity="warning"):
    e = {"model": "m", "rule": rule, "window": window, "month": month, "status": status, "severity": severity,
         "n": 600, "event_time": f"{month}-20", "emitted_at": f"2026-01-01T00:00:0{len(month) % 10}+00:00"}
    if phase:
        e["phase"] = phase
    return e


def test_analyse_counts_false_alarms_misses_and_events_per_key():
    sc = ab.AlertScenario("quiet", (Scenario(months=2, monthly_volume=10),))
    fire, ok = ab.Judgement(True, "warning", 0.3), ab.Judgement(False, "warning", 0.01)
    truth = {"m": {("psi", "month", "2024-01"): {"judgement": ok, "closed": True},
                   ("psi", "month", "2024-02"): {"judgement": fire, "closed": True},
                   ("ks_adherence", "month", "2024-01"): {"judgement": ok, "closed": True},
                   ("ks_adherence", "month", "2024-03"): {"judgement": ok, "closed": False}}}
    events = [_event("psi", "2024-01", phase="provisional"), _event("psi", "2024-01", phase="final"),
              _event("ks_adherence", "2024-01"), _event("ks_adherence", "2024-01", "resolved"),
              _event("ks_adherence", "2024-01", phase="final"), _event("ks_adherence", "2024-03")]
    r = ab.analyse(sc, events, truth, truth, {"m": {"2024-01": 10, "2024-02": 10}}, {"m": {}}, [], 5)
    assert r["truth_judged"] == 3 and r["truth_firing"] == 1
    assert (r["final_false_alarms"], r["final_misses"]) == (2, 1)  # psi 01 and ks 01 fired; psi 02 did not
    assert r["agreement_pct"] == 0.0 and r["quantization_disagreements"] == 0
    assert r["provisional_false_alarms"] == 3  # no phase = provisional; the open month counts too
    assert r["max_events_per_key"] == 3 and r["events_per_key"] == {"1": 1, "2": 1, "3": 1}
    assert r["phase_seen"] is True and r["detection"] is None
    assert {t["name"] for t in r["targets"]} == {"agreement_pct", "final_false_alarms", "max_events_per_key",
                                                 "provisional_false_alarms"}
    assert r["redis"] == {"firing_states": 0, "agree_with_final_events": False}


def test_a_resolved_final_event_is_an_ok_verdict():
    finals = ab.final_verdicts([_event("psi", "2024-01", phase="final"),
                                _event("psi", "2024-01", "resolved", phase="final")])
    assert finals[("m", "psi", "month", "2024-01")]["status"] == "resolved"
    states = {"m": {"psi|month|2024-01": {"status": "ok"}, "ks_adherence|month": {"status": "firing",
                                                                                 "month": "2024-02"}}}
    agreement = ab.redis_agreement(states, {("m", "ks_adherence", "month", "2024-02"): {"status": "firing"}})
    assert agreement == {"firing_states": 1, "agree_with_final_events": True}
