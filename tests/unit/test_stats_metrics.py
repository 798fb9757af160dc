"""AUC, KS and PSI on histograms against sklearn / scipy on the quantized raw scores, and the bounds."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from monitor.errors import StatsError
from monitor.stats import (
    ScoreHistogram,
    auc_quantization_bound,
    auc_standard_error,
    gini,
    ks_adherence,
    ks_critical_value,
    ks_good_bad,
    psi,
    psi_critical_value,
    psi_edges,
    quantize,
    roc_auc,
)
from monitor.stats._kstwo import kstwo_sf

DATA = Path(__file__).resolve().parents[1] / "data" / "breast_cancer_scores.csv"


def scipy_ks(a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.ks_2samp(a, b, method="auto")


def tied_scores(rng, n, shift=0.0, resolution=1e-3):
    """Beta scores on a coarse grid (many ties), with exact 0s and 1s mixed in."""
    s = np.clip(rng.beta(2, 5, n) + shift, 0, 1)
    s = np.round(s / resolution) * resolution
    extremes = rng.random(n)
    s[extremes < 0.02] = 0.0
    s[extremes > 0.98] = 1.0
    return s


def check_against_references(bads, goods, live, ref, resolution):
    """All comparisons the issue asks for, on scores quantized to the resolution."""
    pos, neg = ScoreHistogram.from_scores(bads, resolution), ScoreHistogram.from_scores(goods, resolution)
    hl, hr = ScoreHistogram.from_scores(live, resolution), ScoreHistogram.from_scores(ref, resolution)
    qb, qg, ql, qr = (quantize(x, resolution) for x in (bads, goods, live, ref))

    if len(bads) and len(goods):
        y = np.r_[np.ones(len(qb)), np.zeros(len(qg))]
        assert abs(roc_auc(pos, neg) - roc_auc_score(y, np.r_[qb, qg])) <= 1e-12
        ours, theirs = ks_good_bad(pos, neg), scipy_ks(qb, qg)
        assert abs(ours.d - theirs.statistic) <= 1e-12
        assert ours.location == pytest.approx(theirs.statistic_location, abs=1e-15)
        assert ours.pvalue is None
    else:
        assert roc_auc(pos, neg) is None and ks_good_bad(pos, neg) is None

    ours, theirs = ks_adherence(hl, hr), scipy_ks(ql, qr)
    assert abs(ours.d - theirs.statistic) <= 1e-12
    assert abs(ours.pvalue - theirs.pvalue) <= 1e-9
    assert ours.location == pytest.approx(theirs.statistic_location, abs=1e-15)
    assert (ours.n, ours.m) == (len(live), len(ref))


# --- equality with sklearn / scipy --------------------------------------------------------

# (records in the live month, records in the reference): around scipy's exact/asymp switch
# at max(n, m) = 10000, and up to 200k.
SIZES = [(1, 7), (7, 1), (7, 500), (500, 7), (500, 800), (9000, 10000), (10000, 10000),
         (11000, 9000), (10001, 3), (200_000, 150_000)]


@pytest.mark.parametrize("n, m", SIZES)
@pytest.mark.parametrize("resolution", [1e-4, 1e-3])
def test_matches_sklearn_and_scipy_on_random_tied_data(n, m, resolution):
    rng = np.random.default_rng(n * 7919 + m + int(1 / resolution))
    labels = rng.random(n) < 0.3
    live = tied_scores(rng, n, resolution=resolution) + 0.15 * labels * rng.random(n)
    live = np.clip(live, 0, 1)
    ref = tied_scores(rng, m, shift=0.01, resolution=resolution)
    check_against_references(live[labels], live[~labels], live, ref, resolution)


@pytest.mark.parametrize("n", [1, 2, 7, 500])
def test_single_class_and_tiny_samples(n):
    rng = np.random.default_rng(n)
    live = tied_scores(rng, n)
    ref = tied_scores(rng, 3)
    check_against_references(live, np.array([]), live, ref, 1e-3)


def test_scores_exactly_0_and_1():
    bads = np.array([1.0, 1.0, 0.0, 1.0, 0.5])
    goods = np.array([0.0, 0.0, 1.0, 0.0])
    check_against_references(bads, goods, np.r_[bads, goods], np.array([0.0, 1.0, 1.0]), 1e-4)
    pos, neg = ScoreHistogram.from_scores(bads), ScoreHistogram.from_scores(goods)
    # Pairs by hand: bad 1.0 (x3) beat 3 goods at 0 and tie 1 at 1 -> 3.5 each; bad 0 ties 3,
    # loses 1 -> 1.5; bad 0.5 beats 3 -> 3. Total 15 / 20.
    assert roc_auc(pos, neg) == 0.75
    assert auc_quantization_bound(pos, neg) == 0.5 * (3 * 1 + 1 * 3) / 20  # 6 tied pairs of 20


def test_real_dataset_breast_cancer_not_credit():
    """Real data (NOT credit; see the file header), 569 records with many scores at exactly 0 and 1."""
    table = np.loadtxt(DATA, delimiter=",", comments="#", skiprows=6)
    scores, labels = table[:, 0], table[:, 1].astype(bool)
    assert scores.size == 569 and labels.sum() == 212
    for resolution in (1e-4, 1e-2):
        # Reference = benign half of the file, live = everything: a real distribution shift.
        check_against_references(scores[labels], scores[~labels], scores, scores[~labels][::2], resolution)
    pos = ScoreHistogram.from_scores(scores[labels])
    neg = ScoreHistogram.from_scores(scores[~labels])
    auc_raw = roc_auc_score(labels, scores)
    assert abs(roc_auc(pos, neg) - auc_raw) <= auc_quantization_bound(pos, neg) + 1e-15
    assert 0.98 < roc_auc(pos, neg) < 1.0


# --- bounds on the distance to raw scores -----------------------------------------------------


@pytest.mark.parametrize("resolution", [0.1, 0.01, 1e-3, 1e-4])
@pytest.mark.parametrize("n", [5, 300, 20_000])
def test_bounds_hold_on_raw_unquantized_scores(resolution, n):
    rng = np.random.default_rng(n + int(1 / resolution))
    labels = rng.random(n) < 0.4
    raw = np.clip(rng.beta(2, 4, n) + 0.1 * labels, 0, 1)
    ref_raw = rng.beta(2.2, 4, n + 3)
    pos, neg = ScoreHistogram.from_scores(raw[labels], resolution), ScoreHistogram.from_scores(raw[~labels], resolution)
    auc_raw = roc_auc_score(labels, raw)
    assert abs(roc_auc(pos, neg) - auc_raw) <= auc_quantization_bound(pos, neg) + 1e-15

    for a, b, ours in [
        (raw[labels], raw[~labels], ks_good_bad(pos, neg)),
        (raw, ref_raw, ks_adherence(ScoreHistogram.from_scores(raw, resolution),
                                    ScoreHistogram.from_scores(ref_raw, resolution))),
    ]:
        d_raw = scipy_ks(a, b).statistic
        assert ours.d <= d_raw + 1e-12  # quantized D never exceeds raw D
        assert d_raw <= ours.d + ours.bound + 1e-12
    if resolution == 0.1:  # coarse bins: the bounds are not vacuous zeros
        assert auc_quantization_bound(pos, neg) > 0


raw_lists = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(raw_lists, raw_lists, st.sampled_from([0.5, 0.1, 0.05, 1e-4]))
def test_bounds_property(a, b, resolution):
    ha, hb = ScoreHistogram.from_scores(a, resolution), ScoreHistogram.from_scores(b, resolution)
    y = np.r_[np.ones(len(a)), np.zeros(len(b))]
    auc_raw = roc_auc_score(y, np.r_[a, b])
    assert abs(roc_auc(ha, hb) - auc_raw) <= auc_quantization_bound(ha, hb) + 1e-12
    r = ks_good_bad(ha, hb)
    d_raw = scipy_ks(a, b).statistic
    assert r.d <= d_raw + 1e-12 <= r.d + r.bound + 2e-12
    # The KS bound is at most the largest single-bin share of either sample.
    biggest = max(ha.counts.max() / ha.n, hb.counts.max() / hb.n)
    assert r.bound <= biggest + 1e-12


# --- properties ----------------------------------------------------------------------------

bins_st = st.lists(st.integers(0, 20), max_size=40)


def hist(bins):
    h = ScoreHistogram(0.05)
    h.add_bins(np.array(bins, dtype=np.int64))
    return h


@settings(max_examples=200)
@given(bins_st, bins_st)
def test_auc_in_unit_interval_and_antisymmetric(a, b):
    pos, neg = hist(a), hist(b)
    auc = roc_auc(pos, neg)
    if not a or not b:
        assert auc is None and gini(auc) is None and auc_quantization_bound(pos, neg) is None
        return
    assert 0.0 <= auc <= 1.0
    assert auc + roc_auc(neg, pos) == pytest.approx(1.0, abs=1e-15)
    assert -1.0 <= gini(auc) <= 1.0
    # Exact rational check against a brute-force Mann-Whitney count.
    wins = sum((x > y) + Fraction(1, 2) * (x == y) for x in a for y in b)
    assert auc == float(wins / (len(a) * len(b)))


@settings(max_examples=200)
@given(bins_st)
def test_psi_of_identical_histograms_is_exactly_zero(a):
    h = hist(a)
    if not a:
        assert psi(h, h) is None
        return
    assert psi(h, h) == 0.0
    assert psi(h, h.copy() + h) == pytest.approx(0.0, abs=1e-12)  # same shape, twice the records


@settings(max_examples=200)
@given(bins_st, bins_st)
def test_psi_nonnegative_and_ks_in_unit_interval(a, b):
    ha, hb = hist(a), hist(b)
    if not a or not b:
        assert psi(ha, hb) is None and ks_adherence(ha, hb) is None
        return
    assert psi(ha, hb) >= 0.0
    r = ks_adherence(ha, hb)
    assert 0.0 <= r.d <= 1.0 and 0.0 <= r.pvalue <= 1.0 and r.bound >= 0.0


# --- PSI definition ------------------------------------------------------------------------


def psi_from_raw(live, ref, buckets=10, eps=1e-4):
    """Independent PSI on raw arrays: edges = smallest reference value whose ECDF reaches k/buckets."""
    ref_sorted = np.sort(ref)
    m = ref_sorted.size
    edges = sorted({ref_sorted[-(-k * m // buckets) - 1] for k in range(1, buckets)})
    edges = [e for e in edges if e < ref_sorted[-1]]
    shares = []
    for sample in (live, ref):
        counts = np.bincount(np.searchsorted(edges, sample, side="left"), minlength=len(edges) + 1)
        shares.append(counts / sample.size)
    l, r = (np.where(s > 0, s, eps) for s in shares)
    return float(np.sum((l - r) * np.log(l / r))), len(edges) + 1


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_independent_computation_on_raw_arrays(seed):
    rng = np.random.default_rng(seed)
    ref = tied_scores(rng, 3000, resolution=0.01)
    live = tied_scores(rng, 2000, shift=0.05 * seed, resolution=0.01)
    expected, n_buckets = psi_from_raw(live, ref)
    hl, hr = ScoreHistogram.from_scores(live, 0.01), ScoreHistogram.from_scores(ref, 0.01)
    assert psi(hl, hr) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert psi_edges(hr).size + 1 == n_buckets


def test_psi_by_hand_and_epsilon():
    ref = ScoreHistogram.from_scores(np.arange(10) / 10, resolution=0.1)  # one record per decile
    live = ScoreHistogram.from_scores([0.0] * 4, resolution=0.1)  # everything in the first decile
    expected = (1 - 0.1) * math.log(1 / 0.1) + 9 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert psi(live, ref) == pytest.approx(expected, rel=1e-12)
    with_eps = (1 - 0.1) * math.log(1 / 0.1) + 9 * (1e-6 - 0.1) * math.log(1e-6 / 0.1)
    assert psi(live, ref, epsilon=1e-6) == pytest.approx(with_eps, rel=1e-12)


def test_psi_heavy_ties_collapse_buckets():
    ref = ScoreHistogram.from_scores([0.5] * 90 + [0.9] * 10, resolution=0.1)
    assert psi_edges(ref).tolist() == [5]  # all deciles but the top sit on bin 5
    single = ScoreHistogram.from_scores([0.3] * 5, resolution=0.1)
    assert psi_edges(single).size == 0  # one bucket only
    assert psi(ScoreHistogram.from_scores([0.9], resolution=0.1), single) == 0.0


# --- small helpers -------------------------------------------------------------------------


def test_empty_and_mismatched_inputs():
    empty, h = ScoreHistogram(), ScoreHistogram.from_scores([0.5])
    for f in (roc_auc, auc_quantization_bound, ks_good_bad, ks_adherence, psi):
        assert f(empty, h) is None and f(h, empty) is None and f(empty, empty) is None
    with pytest.raises(StatsError):
        roc_auc(h, ScoreHistogram.from_scores([0.5], resolution=0.1))
    with pytest.raises(StatsError):
        ks_adherence(h, [0.5])


def test_hanley_mcneil_equals_mann_whitney_null_variance_at_half():
    # At AUC = 0.5 Hanley-McNeil reduces to the exact null variance (n1 + n2 + 1) / (12 n1 n2).
    for n1, n2 in [(10, 10), (30, 700), (1, 5)]:
        expected = math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
        assert auc_standard_error(0.5, n1, n2) == pytest.approx(expected, rel=1e-12)
    assert auc_standard_error(1.0, 50, 50) == 0.0
    assert auc_standard_error(None, 5, 5) is None and auc_standard_error(0.7, 0, 5) is None


def test_critical_values():
    # c(alpha) = sqrt(-ln(alpha/2)/2) is the first term of the Kolmogorov limit's upper quantile.
    for alpha in (0.01, 0.05, 0.1):
        limit = stats.kstwobign.isf(alpha) * math.sqrt(2)
        assert ks_critical_value(1, 1, alpha) == pytest.approx(limit, rel=1e-4)
    assert ks_critical_value(400, 100, alpha=0.01) == pytest.approx(
        math.sqrt(-math.log(0.005) / 2) * math.sqrt(500 / 40000), rel=1e-15)
    assert psi_critical_value(1000, 1000) == pytest.approx(16.918977604620448 * 0.002, rel=1e-12)
    assert psi_critical_value(1000, 500, buckets=5, alpha=0.1) == pytest.approx(
        stats.chi2.ppf(0.9, 4) * (1 / 1000 + 1 / 500), rel=1e-15)
    assert ks_critical_value(0, 5) is None and psi_critical_value(5, 0) is None
    assert psi_critical_value(5, 5, buckets=1) is None


def test_int64_overflow_falls_back_to_exact_python_ints():
    pos, neg = ScoreHistogram(0.1), ScoreHistogram(0.1)
    pos.add_bins([5, 9], [2**40, 3])
    neg.add_bins([5, 1], [2**40 + 1, 7])
    n_pos, n_neg = pos.n, neg.n
    wins = Fraction(2**40 * 7 + 3 * (2**40 + 1 + 7)) + Fraction(2**40 * (2**40 + 1), 2)
    assert roc_auc(pos, neg) == float(wins / (n_pos * n_neg))
    assert auc_quantization_bound(pos, neg) == float(Fraction(2**40 * (2**40 + 1), 2 * n_pos * n_neg))
    r = ks_good_bad(pos, neg)
    # F_pos - F_neg at bin 1: -7/n_neg; at bin 5: 2^40/n_pos - 1.
    expected = max(Fraction(7, n_neg), 1 - Fraction(2**40, n_pos))
    assert r.d == float(expected)


# --- kstwo.sf fast path ------------------------------------------------------------------


@pytest.mark.parametrize("n", [141, 900, 1500, 4200, 10_001, 50_000, 115_000, 400_000])
@pytest.mark.parametrize("nd2", [0.01, 0.3, 2.19, 2.2, 3.0, 10.0, 60.0, 300.0])
def test_kstwo_sf_equals_scipy(n, nd2):
    d = math.sqrt(nd2 / n)
    assert abs(kstwo_sf(d, n) - float(stats.kstwo.sf(d, n))) <= 1e-12


def test_kstwo_sf_at_scipy_smirnov_limit():
    # n = 10^6 is the last n scipy sums exactly; above it scipy uses a closed form we call.
    for n in (1_000_000, 1_000_001):
        d = math.sqrt(4.0 / n)
        assert abs(kstwo_sf(d, n) - float(stats.kstwo.sf(d, n))) <= 1e-12


# --- merged halves (what a streaming update would give) -------------------------------------


def test_metrics_of_merged_halves_equal_those_of_the_whole():
    rng = np.random.default_rng(3)
    scores = tied_scores(rng, 400, resolution=0.01)
    labels = rng.random(400) < 0.3
    ref = ScoreHistogram.from_scores(tied_scores(rng, 300, resolution=0.01))
    halves = [(ScoreHistogram.from_scores(scores[part][labels[part]]),
               ScoreHistogram.from_scores(scores[part][~labels[part]]))
              for part in (slice(0, 150), slice(150, 400))]
    pos, neg = halves[0]
    pos += halves[1][0]
    neg += halves[1][1]
    live = pos + neg
    assert roc_auc(pos, neg) == roc_auc(ScoreHistogram.from_scores(scores[labels]),
                                        ScoreHistogram.from_scores(scores[~labels]))
    whole = ScoreHistogram.from_scores(scores)
    assert ks_adherence(live, ref) == ks_adherence(whole, ref) and psi(live, ref) == psi(whole, ref)


def test_no_unused_streaming_classes():
    import monitor.stats
    for name in ("RocAuc", "KolmogorovSmirnov", "KSAdherence", "PopulationStabilityIndex"):
        assert not hasattr(monitor.stats, name), name  # the engine's API is histograms + functions
