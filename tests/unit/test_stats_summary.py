"""LabelledHistograms and compute_metrics: every field defined or None, never NaN, never raising."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from monitor.errors import StatsError
from monitor.stats import (
    LabelledHistograms,
    MetricSet,
    ScoreHistogram,
    auc_standard_error,
    compute_metrics,
    ks_critical_value,
    psi,
    psi_critical_value,
    quantize,
)

FIELDS = {f.name for f in dataclasses.fields(MetricSet)}


def labelled(pos=(), neg=(), unlabeled=(), resolution=0.01):
    h = LabelledHistograms.empty(resolution)
    h.pos.update_many(list(pos))
    h.neg.update_many(list(neg))
    h.unlabeled.update_many(list(unlabeled))
    return h


def assert_json_clean(m: MetricSet):
    d = m.to_dict()
    assert set(d) == FIELDS
    json.dumps(d, allow_nan=False)  # raises on NaN / inf
    for value in d.values():
        assert value is None or isinstance(value, (int, float))
        assert not (isinstance(value, float) and not math.isfinite(value))


def test_field_list_is_the_agreed_interface():
    assert FIELDS == {
        "n", "n_labelled", "n_pos", "n_neg", "bad_rate", "auc", "auc_bound", "auc_se", "gini",
        "ks_good_bad", "ks_good_bad_location", "ks_d", "ks_location", "ks_pvalue", "ks_bound",
        "ks_critical", "psi", "psi_critical", "reference_n",
    }


def test_empty_window_without_reference():
    m = compute_metrics(LabelledHistograms.empty(), None)
    assert (m.n, m.n_labelled, m.n_pos, m.n_neg) == (0, 0, 0, 0)
    assert all(getattr(m, f) is None for f in FIELDS - {"n", "n_labelled", "n_pos", "n_neg"})
    assert_json_clean(m)


def test_empty_window_with_reference_and_empty_reference():
    ref = ScoreHistogram.from_scores([0.2, 0.4], 0.01)
    m = compute_metrics(LabelledHistograms.empty(0.01), ref)
    assert m.reference_n == 2 and m.ks_d is None and m.psi is None and m.ks_critical is None
    m = compute_metrics(labelled(unlabeled=[0.5]), ScoreHistogram(0.01))
    assert m.reference_n == 0 and m.ks_d is None and m.psi is None and m.psi_critical is None
    assert_json_clean(m)


def test_single_class_gives_none_auc_but_adherence_metrics():
    ref = ScoreHistogram.from_scores(np.linspace(0, 1, 50), 0.01)
    m = compute_metrics(labelled(pos=[0.9, 0.8], unlabeled=[0.1, 0.5]), ref)
    assert (m.n, m.n_labelled, m.n_pos, m.n_neg) == (4, 2, 2, 0)
    assert m.bad_rate == 1.0
    for f in ("auc", "auc_bound", "auc_se", "gini", "ks_good_bad", "ks_good_bad_location"):
        assert getattr(m, f) is None
    assert m.ks_d is not None and m.ks_pvalue is not None and m.psi is not None
    assert_json_clean(m)


def test_unlabelled_only_has_no_bad_rate():
    m = compute_metrics(labelled(unlabeled=[0.3]), None)
    assert m.bad_rate is None and m.n == 1 and m.n_labelled == 0


def test_full_window_matches_reference_implementations():
    rng = np.random.default_rng(11)
    labels = rng.random(3000) < 0.2
    scores = np.clip(rng.beta(2, 5, 3000) + 0.2 * labels, 0, 1)
    unlabeled = rng.beta(2, 5, 1000)
    ref_scores = rng.beta(2, 5.3, 12_000)
    h = labelled(scores[labels], scores[~labels], unlabeled, resolution=1e-3)
    ref = ScoreHistogram.from_scores(ref_scores, 1e-3)
    m = compute_metrics(h, ref)

    q = lambda x: quantize(x, 1e-3)  # noqa: E731
    auc = roc_auc_score(labels, q(scores))
    assert abs(m.auc - auc) <= 1e-12
    assert m.gini == pytest.approx(2 * auc - 1, abs=1e-12)
    assert m.auc_se == auc_standard_error(m.auc, int(labels.sum()), int((~labels).sum()))
    assert m.bad_rate == labels.sum() / 3000
    good_bad = stats.ks_2samp(q(scores[labels]), q(scores[~labels]))
    assert abs(m.ks_good_bad - good_bad.statistic) <= 1e-12
    assert m.ks_good_bad_location == pytest.approx(good_bad.statistic_location, abs=1e-15)
    everything = np.r_[scores, unlabeled]
    adherence = stats.ks_2samp(q(everything), q(ref_scores), method="auto")  # 4000 vs 12000: asymp
    assert abs(m.ks_d - adherence.statistic) <= 1e-12
    assert abs(m.ks_pvalue - adherence.pvalue) <= 1e-9
    assert m.ks_location == pytest.approx(adherence.statistic_location, abs=1e-15)
    assert 0 <= m.ks_bound <= 1 and 0 <= m.auc_bound <= 0.5
    assert m.ks_critical == ks_critical_value(4000, 12_000)
    assert m.psi == psi(h.all(), ref)
    assert m.psi_critical == psi_critical_value(4000, 12_000, buckets=10)
    assert m.reference_n == 12_000 and m.n == 4000
    assert_json_clean(m)


def test_psi_critical_uses_the_buckets_actually_formed():
    ref = ScoreHistogram.from_scores([0.5] * 90 + [0.9] * 10, 0.1)  # heavy ties: 2 buckets
    m = compute_metrics(labelled(unlabeled=[0.5, 0.9, 0.2], resolution=0.1), ref)
    assert m.psi_critical == psi_critical_value(3, 100, buckets=2)


hist_scores = st.lists(st.floats(0, 1, allow_nan=False), max_size=25)


@settings(max_examples=150, deadline=None)
@given(hist_scores, hist_scores, hist_scores, st.none() | hist_scores, st.sampled_from([0.5, 0.1, 1e-4]))
def test_never_nan_never_raises(pos, neg, unl, ref, resolution):
    h = labelled(pos, neg, unl, resolution)
    reference = None if ref is None else ScoreHistogram.from_scores(ref, resolution)
    m = compute_metrics(h, reference)
    assert_json_clean(m)
    assert m.n == len(pos) + len(neg) + len(unl)
    assert (m.auc is None) == (not pos or not neg)
    if m.auc is not None:
        assert 0 <= m.auc <= 1 and 0 <= m.auc_bound <= 0.5 and m.auc_se >= 0
    assert (m.ks_d is None) == (reference is None or reference.n == 0 or m.n == 0)
    if m.ks_pvalue is not None:
        assert 0 <= m.ks_pvalue <= 1 and m.psi >= 0


# --- LabelledHistograms ---------------------------------------------------------------------


def test_labelled_algebra_and_late_label_move():
    a = labelled(pos=[0.9], neg=[0.1, 0.2], unlabeled=[0.5, 0.6])
    b = labelled(neg=[0.3], unlabeled=[0.5])
    total = a + b
    assert (total.n, total.n_labelled) == (7, 4)
    assert total - b == a
    assert total.all() == ScoreHistogram.from_scores([0.9, 0.1, 0.2, 0.5, 0.6, 0.3, 0.5], 0.01)
    # A late label: a record scored 0.5 turns out bad -> move it from unlabeled to pos.
    move = labelled(unlabeled=[0.5])
    total -= move
    total.pos.update(0.5)
    assert (total.pos.n, total.unlabeled.n, total.n) == (2, 2, 7)
    with pytest.raises(StatsError):
        total -= labelled(pos=[0.77])
    c = a.copy()
    c += b
    assert c == a + b and a.n == 5


def test_labelled_resolution_checks_and_dict_round_trip():
    with pytest.raises(StatsError):
        LabelledHistograms(ScoreHistogram(0.1), ScoreHistogram(0.01), ScoreHistogram(0.1))
    with pytest.raises(StatsError):
        labelled(resolution=0.1) + labelled(resolution=0.01)
    h = labelled(pos=[0.9], neg=[0.1], unlabeled=[0.4], resolution=0.1)
    assert LabelledHistograms.from_dict(json.loads(json.dumps(h.to_dict()))) == h
    assert h.resolution == 0.1
    assert LabelledHistograms().resolution == 1e-4  # defaults
