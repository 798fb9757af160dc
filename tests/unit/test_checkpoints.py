"""When a write makes a model due at once (``reaches_checkpoint``): only at a point where one of its
month's verdicts can change. A due model is computed ahead of the timer pass, so a checkpoint that
cannot change a verdict only queues the models that can (issue 18: with 1,000 models taking live
traffic, every model's goods reached ``min_class_records`` within seconds, and the drifted models
waited behind them)."""

from hypothesis import given
from hypothesis import strategies as st

from monitor.alerts.lifecycle import has_evidence, judge_auc
from monitor.alerts.rules import RuleSet
from monitor.state import MonthChange
from monitor.worker.engine import reaches_checkpoint

RULES = RuleSet()
MIN, MIN_CLASS = RULES.min_records, RULES.auc.min_class_records


def test_a_class_reaching_its_minimum_in_a_month_too_small_to_judge_is_no_checkpoint():
    goods_reach_it = MonthChange("2026-10", 120, 5, MIN_CLASS, 3, 0, 2)
    assert not has_evidence({"2026-10": goods_reach_it.n}, "2026-10", RULES)  # nothing judged: no verdict moves
    assert not reaches_checkpoint(goods_reach_it, MIN, MIN_CLASS)


def test_a_class_reaching_its_minimum_in_a_judged_month_is_a_checkpoint():
    bads_reach_it = MonthChange("2026-10", 900, MIN_CLASS, 800, 3, 2, 1)
    auc = {"auc": 0.6, "n_labelled": bads_reach_it.bad + bads_reach_it.good, "n_pos": bads_reach_it.bad,
           "n_neg": bads_reach_it.good}
    assert judge_auc(auc, RULES) is not None  # the AUC is judged from this write on
    assert reaches_checkpoint(bads_reach_it, MIN, MIN_CLASS)


@given(n=st.integers(0, 5 * MIN), added=st.integers(1, 200), bad=st.integers(0, 200), good=st.integers(0, 200),
       added_bad=st.integers(0, 50), added_good=st.integers(0, 50))
def test_below_the_judged_volume_only_reaching_it_is_a_checkpoint(n, added, bad, good, added_bad, added_good):
    change = MonthChange("m", n, bad, good, min(added, n), min(added_bad, bad), min(added_good, good))
    if change.n < MIN:
        assert not reaches_checkpoint(change, MIN, MIN_CLASS)
    if change.n - change.added_n < MIN <= change.n:
        assert reaches_checkpoint(change, MIN, MIN_CLASS)
