"""ScoreHistogram: binning, exact merge/subtraction algebra, validation, serialisation."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import StatsError
from monitor.stats import ScoreHistogram, quantize

# Coarse resolutions force many ties; 1e-6 exercises the sorting (non-dense) merge path.
RESOLUTIONS = [0.1, 0.01, 1e-4, 1e-6]
scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
score_lists = st.lists(scores, max_size=60)
resolutions = st.sampled_from(RESOLUTIONS)


def counter_of(values, resolution):
    """Independent reference: Python round-half-even of s / resolution, counted."""
    return Counter(round(v / resolution) for v in values)


def as_counter(h: ScoreHistogram) -> Counter:
    return Counter(dict(zip(h.bins.tolist(), h.counts.tolist())))


# --- binning --------------------------------------------------------------------------


def test_bin_is_nearest_multiple_with_ties_to_even():
    h = ScoreHistogram.from_scores([0.25, 0.75, 0.0, 1.0, 0.74], resolution=0.5)
    assert h.bins.tolist() == [0, 1, 2]
    assert h.counts.tolist() == [2, 1, 2]  # {0.0, 0.25 (tie -> even 0)}, {0.74}, {0.75 (tie -> even 2), 1.0}
    assert h.max_bin == 2


def test_default_resolution_covers_0_and_1():
    h = ScoreHistogram.from_scores([0.0, 1.0, 0.00004, 0.99996])
    assert h.resolution == 1e-4
    assert h.bins.tolist() == [0, 10000]
    assert h.counts.tolist() == [2, 2]
    assert h.values().tolist() == [0.0, 1.0]


@given(st.lists(scores, min_size=1, max_size=60), resolutions)
def test_binning_matches_independent_rounding(values, resolution):
    h = ScoreHistogram.from_scores(values, resolution)
    assert as_counter(h) == counter_of(values, resolution)
    assert h.n == len(values)
    assert len(h) == len(set(h.bins.tolist()))
    assert np.all(np.diff(h.bins) > 0) and np.all(h.counts > 0)
    assert h.bins.dtype == np.int64 and h.counts.dtype == np.int64


@given(st.lists(scores, min_size=1, max_size=60), resolutions)
def test_quantize_gives_the_values_the_histogram_stores(values, resolution):
    q = quantize(values, resolution)
    h = ScoreHistogram.from_scores(values, resolution)
    assert sorted(set(q.tolist())) == h.values().tolist()
    assert np.all(np.abs(q - np.asarray(values)) <= resolution / 2 + 1e-15)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.0001, 1.0001, -1.0])
def test_invalid_scores_raise(bad):
    h = ScoreHistogram(0.01)
    with pytest.raises(StatsError):
        h.update(bad)
    with pytest.raises(StatsError):
        h.update_many([0.5, bad])
    assert h.n == 0  # nothing half-added


@pytest.mark.parametrize("resolution", [0.0, -0.1, float("nan"), 2.0])
def test_invalid_resolution_raises(resolution):
    with pytest.raises(StatsError):
        ScoreHistogram(resolution)


def test_update_many_with_counts_and_add_bins():
    h = ScoreHistogram(0.1)
    h.update_many([0.1, 0.1, 0.9], counts=[1, 2, 5])
    h.add_bins(np.array([1, 4]), np.array([1, 1]))
    h.update(0.4, count=3)
    assert as_counter(h) == Counter({1: 4, 4: 4, 9: 5})
    assert h.n == 13 and len(h) == 3


def test_add_bins_validation():
    h = ScoreHistogram(0.1)
    with pytest.raises(StatsError):
        h.add_bins([11])  # max bin is 10
    with pytest.raises(StatsError):
        h.add_bins([-1])
    with pytest.raises(StatsError):
        h.add_bins([1.5])
    with pytest.raises(StatsError):
        h.add_bins([1, 2], [1])
    with pytest.raises(StatsError):
        h.add_bins([1], [0.5])
    assert h.n == 0


def test_negative_counts_move_records_but_never_below_zero():
    h = ScoreHistogram.from_scores([0.3, 0.3, 0.7], resolution=0.1)
    h.add_bins([3], [-1])
    assert as_counter(h) == Counter({3: 1, 7: 1})
    h.add_bins([7], [-1])
    assert as_counter(h) == Counter({3: 1})  # zero counts are dropped
    before = h.copy()
    with pytest.raises(StatsError):
        h.add_bins([3, 5], [-2, 1])
    assert h == before


# --- algebra ------------------------------------------------------------------------


@given(score_lists, score_lists, score_lists, resolutions)
def test_merge_is_associative_and_commutative(a, b, c, resolution):
    ha, hb, hc = (ScoreHistogram.from_scores(x, resolution) for x in (a, b, c))
    assert (ha + hb) + hc == ha + (hb + hc)
    assert ha + hb == hb + ha
    assert ScoreHistogram.merge([ha, hb, hc]) == ha + hb + hc


@given(score_lists, score_lists, resolutions)
def test_histogram_of_union_is_sum_and_difference_undoes_it(a, b, resolution):
    ha, hb = ScoreHistogram.from_scores(a, resolution), ScoreHistogram.from_scores(b, resolution)
    union = ScoreHistogram.from_scores(a + b, resolution)
    assert ha + hb == union
    assert union - hb == ha
    inplace = union.copy()
    inplace -= ha
    assert inplace == hb
    assert (union - union).n == 0 and len(union - union) == 0


@given(st.lists(scores, min_size=1, max_size=30), score_lists, resolutions)
def test_subtraction_below_zero_raises_and_leaves_histogram_unchanged(extra, base, resolution):
    small = ScoreHistogram.from_scores(base, resolution)
    big = small + ScoreHistogram.from_scores(extra, resolution)
    before = small.copy()
    with pytest.raises(StatsError):
        small -= big
    assert small == before
    with pytest.raises(StatsError):
        _ = small - big


def test_combining_different_resolutions_raises():
    a, b = ScoreHistogram(0.1), ScoreHistogram(0.01)
    for op in (lambda: a + b, lambda: a - b, lambda: ScoreHistogram.merge([a, b])):
        with pytest.raises(StatsError):
            op()
    with pytest.raises(StatsError):
        a += b
    with pytest.raises(StatsError):
        a += [0.1]  # not a histogram


def test_add_returns_new_object_and_copy_is_independent():
    a = ScoreHistogram.from_scores([0.1, 0.2])
    b = ScoreHistogram.from_scores([0.3])
    c = a + b
    c.update(0.4)
    assert a.n == 2 and b.n == 1 and c.n == 4
    d = a.copy()
    d.update(0.9)
    assert a.n == 2


def test_equality():
    a = ScoreHistogram.from_scores([0.1, 0.2], resolution=0.1)
    assert a == ScoreHistogram.from_scores([0.2, 0.1], resolution=0.1)
    assert a != ScoreHistogram.from_scores([0.1, 0.2], resolution=0.01)
    assert a != ScoreHistogram.from_scores([0.1], resolution=0.1)
    assert a != "not a histogram"


def test_merge_of_nothing_is_empty():
    h = ScoreHistogram.merge([], resolution=0.01)
    assert h.n == 0 and len(h) == 0 and h.resolution == 0.01


def test_large_counts_stay_exact():
    h = ScoreHistogram(0.1)
    h.add_bins([1, 1], [2**61, 2**61 - 1])
    assert int(h.counts[0]) == 2**62 - 1


# --- serialisation ------------------------------------------------------------------


@given(score_lists, resolutions)
def test_redis_round_trip_bytes_str_and_int(values, resolution):
    h = ScoreHistogram.from_scores(values, resolution)
    fields = h.to_redis_fields()
    assert all(isinstance(k, str) and isinstance(v, int) for k, v in fields.items())
    as_bytes = {k.encode(): str(v).encode() for k, v in fields.items()}  # what HGETALL returns
    assert ScoreHistogram.from_redis_fields(as_bytes, resolution) == h
    assert ScoreHistogram.from_redis_fields(fields, resolution) == h
    as_str = {k: str(v) for k, v in fields.items()}
    assert ScoreHistogram.from_redis_fields(as_str, resolution) == h


def test_redis_fields_in_hash_order_and_with_zero_counts():
    fields = {b"10": b"3", b"2": b"1", b"7": b"0"}
    h = ScoreHistogram.from_redis_fields(fields, 0.1)
    assert h.bins.tolist() == [2, 10] and h.counts.tolist() == [1, 3]


def test_redis_fields_large_hash_matches_python_int_parsing():
    rng = np.random.default_rng(7)
    bins = rng.permutation(10_001)[:10_000]
    counts = rng.integers(1, 2**40, size=bins.size)
    fields = {str(b).encode(): str(c).encode() for b, c in zip(bins, counts)}
    h = ScoreHistogram.from_redis_fields(fields, 1e-4)
    expected = dict(sorted((int(k), int(v)) for k, v in fields.items()))
    assert h.bins.tolist() == list(expected) and h.counts.tolist() == list(expected.values())


@pytest.mark.parametrize(
    "fields",
    [{b"x": b"1"}, {b"1": b"1.5"}, {b"1 2": b"1"}, {b"1": b"-1"}, {b"99999999": b"1"}, {"1": "a"}],
)
def test_bad_redis_fields_raise(fields):
    with pytest.raises(StatsError):
        ScoreHistogram.from_redis_fields(fields, 1e-4)


@given(score_lists, resolutions)
def test_dict_round_trip_through_json(values, resolution):
    h = ScoreHistogram.from_scores(values, resolution)
    state = json.loads(json.dumps(h.to_dict()))
    assert ScoreHistogram.from_dict(state) == h


def test_repr_and_len():
    h = ScoreHistogram.from_scores([0.5, 0.5, 0.25], resolution=0.25)
    assert len(h) == 2 and h.n == 3
    assert "n=3" in repr(h)


@settings(max_examples=25)
@given(st.lists(st.integers(0, 10_000), max_size=200), st.lists(st.integers(0, 10_000), max_size=200))
def test_dense_and_sorting_merge_paths_agree(bins_a, bins_b):
    dense = ScoreHistogram(1e-4)  # 10,001 bins: dense path
    sparse = ScoreHistogram(1e-6)  # 1,000,001 bins: sorting path
    for h in (dense, sparse):
        h.add_bins(np.array(bins_a, dtype=np.int64))
        h.add_bins(np.array(bins_b, dtype=np.int64))
    assert dense.bins.tolist() == sparse.bins.tolist()
    assert dense.counts.tolist() == sparse.counts.tolist()
    assert as_counter(dense) == Counter(bins_a) + Counter(bins_b)
