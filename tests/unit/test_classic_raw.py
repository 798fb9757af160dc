"""The classic endpoints' raw-score computations (monitor.api.classic_engine) equal scikit-learn and scipy
on the raw scores (issue 19); the histogram path stays what it was."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from monitor.api.classic_engine import (
    ClassicRecord,
    adherence_of,
    performance_of,
    raw_discrimination,
    raw_ks_adherence,
    records_frame,
)
from monitor.stats import ScoreHistogram
from monitor.stats.ks import ks_adherence
from monitor.stats.roc import auc_standard_error

# Scores as a model emits them (any double in [0, 1]) and a few repeated values: ties matter to AUC and KS.
SCORES = st.one_of(st.floats(0.0, 1.0, allow_nan=False), st.sampled_from([0.0, 0.25, 0.5, 1.0]))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(SCORES, st.integers(0, 1)), min_size=1, max_size=200))
def test_raw_discrimination_equals_sklearn_and_scipy(pairs):
    scores = np.array([s for s, _ in pairs])
    y = np.array([t for _, t in pairs])
    got = raw_discrimination(y, scores)
    if y.min() == y.max():  # one class only: no AUC, no KS
        assert got["auc"] is None and got["ks_good_bad"] is None and got["gini"] is None
        return
    auc = roc_auc_score(y, scores)
    assert got["auc"] == pytest.approx(auc, abs=1e-12)
    assert got["gini"] == pytest.approx(2 * auc - 1, abs=1e-12)
    assert got["ks_good_bad"] == pytest.approx(ks_2samp(scores[y == 1], scores[y == 0]).statistic, abs=1e-12)
    assert got["auc_bound"] == 0.0
    assert got["auc_se"] == auc_standard_error(got["auc"], int(y.sum()), int((y == 0).sum()))


@settings(max_examples=150, deadline=None)
@given(st.lists(SCORES, min_size=1, max_size=150), st.lists(SCORES, min_size=1, max_size=150))
def test_raw_ks_adherence_equals_scipy_ks_2samp(live, reference):
    live, reference = np.array(live), np.array(reference)
    got = raw_ks_adherence(live, reference)
    expected = ks_2samp(live, reference)
    assert got.d == pytest.approx(expected.statistic, abs=1e-12)
    assert got.pvalue == pytest.approx(min(max(expected.pvalue, 0.0), 1.0), abs=1e-12)
    assert got.location == expected.statistic_location and got.bound == 0.0
    assert (got.n, got.m) == (live.size, reference.size)


def test_raw_ks_adherence_of_an_empty_sample_is_none():
    assert raw_ks_adherence(np.array([]), np.array([0.3])) is None


def test_performance_equals_sklearn_on_raw_scores_per_month_and_overall():
    rng = np.random.default_rng(5)
    n = 3000
    months = rng.choice(["2024-01", "2024-02", "2024-03"], n)
    y = rng.integers(0, 2, n).astype(float)
    scores = np.clip(rng.beta(2, 5, n) + 0.15 * y, 0, 1)
    y[rng.random(n) < 0.1] = np.nan  # unlabelled: counted, not in the AUC
    recs = [ClassicRecord.model_validate({"REF_DATE": f"{m}-15", "TARGET": None if np.isnan(t) else int(t),
                                          "score": float(s)}) for m, t, s in zip(months, y, scores)]
    result = performance_of(records_frame(recs), scores, 1e-4)
    labelled = ~np.isnan(y)
    assert result["scores"] == "raw" and result["resolution"] == 1e-4
    assert result["records"] == n and result["n_labelled"] == int(labelled.sum())
    assert result["auc"] == pytest.approx(roc_auc_score(y[labelled], scores[labelled]), abs=1e-12)
    assert result["auc_bound"] == 0.0
    for row in result["months"]:
        mask = (months == row["month"]) & labelled
        s, t = scores[mask], y[mask]
        assert row["n"] == int((months == row["month"]).sum()) == result["volumetry"][row["month"]]
        assert row["auc"] == pytest.approx(roc_auc_score(t, s), abs=1e-12)
        assert row["ks_good_bad"] == pytest.approx(ks_2samp(s[t == 1], s[t == 0]).statistic, abs=1e-12)
        assert row["bad_rate"] == pytest.approx(t.mean(), abs=1e-15)


def test_adherence_with_raw_reference_scores_is_scipy_else_the_histogram():
    rng = np.random.default_rng(9)
    ref_scores, live_scores = rng.beta(2, 5, 4000), rng.beta(2.4, 5, 2500)
    reference = ScoreHistogram.from_scores(ref_scores, 1e-4)
    raw = adherence_of(live_scores, reference, reference_scores=ref_scores)
    expected = ks_2samp(live_scores, ref_scores)
    assert raw["scores"] == "raw" and raw["ks_bound"] == 0.0 and raw["reference_n"] == 4000
    assert raw["ks_d"] == pytest.approx(expected.statistic, abs=1e-12)
    assert raw["ks_pvalue"] == pytest.approx(expected.pvalue, abs=1e-12)
    binned = adherence_of(live_scores, reference)
    ks = ks_adherence(ScoreHistogram.from_scores(live_scores, 1e-4), reference)
    assert binned["scores"] == "histogram" and (binned["ks_d"], binned["ks_pvalue"]) == (ks.d, ks.pvalue)
    assert raw["psi"] == binned["psi"]  # PSI is over the reference histogram's deciles either way


def test_a_card_whose_reference_scores_are_not_probabilities_is_refused():
    from models.registry import ModelCard, RegistryError, reference_scores

    for bad in (["x"], [0.2, 1.5], [[0.1]], [float("nan")]):
        with pytest.raises(RegistryError, match="reference scores"):
            reference_scores(ModelCard(name="m", version="1", created="", reference={"scores": bad}))
