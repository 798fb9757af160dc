"""Feature drift: reference profile, live bucket counts, PSI / KS / chi-square per feature."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from monitor.errors import StatsError
from monitor.stats import (
    CategoricalReference,
    FeatureCounter,
    FeatureDrift,
    FeatureProfile,
    NumericReference,
    feature_drift,
)
from monitor.stats.psi import DEFAULT_EPSILON
from producers.synthetic import Scenario, generate, reference_frame

FIELDS = {f.name for f in dataclasses.fields(FeatureDrift)}


@pytest.fixture(scope="module")
def synthetic_reference() -> pd.DataFrame:
    return reference_frame(Scenario(), n=20000)


@pytest.fixture(scope="module")
def synthetic_profile(synthetic_reference) -> FeatureProfile:
    return FeatureProfile.from_frame(synthetic_reference)


def small_profile() -> FeatureProfile:
    """A numeric, an integer, a categorical and a bool feature, with missing values and ties."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "x": np.r_[rng.normal(size=190), [np.nan] * 10],
            "k": rng.integers(0, 4, size=200),
            "c": rng.choice(["a", "b", "c"], size=200).astype(object),
            "flag": rng.random(200) < 0.3,
        }
    )
    frame.loc[:4, "c"] = None
    return FeatureProfile.from_frame(frame)


PROFILE = small_profile()


# --- profile ----------------------------------------------------------------------------


def test_profile_kinds_and_default_features(synthetic_profile):
    assert synthetic_profile.features == (
        "income", "debt_to_income", "utilization", "age", "months_employed", "home_ownership", "purpose",
    )  # score and TARGET left out
    assert [synthetic_profile.kind(f) for f in synthetic_profile.features] == ["numeric"] * 5 + ["categorical"] * 2
    assert PROFILE.kind("flag") == "categorical"
    assert PROFILE.reference("flag").as_mapping().keys() == {"True", "False"}
    assert PROFILE.reference("x").missing == 10 and PROFILE.reference("c").missing == 5
    assert "x" in PROFILE and "nope" not in PROFILE
    with pytest.raises(StatsError):
        PROFILE.kind("nope")
    with pytest.raises(StatsError):
        FeatureProfile.from_frame(pd.DataFrame({"a": [1]}), features=["b"])


def test_profile_round_trip_is_exact(synthetic_profile):
    for profile in (synthetic_profile, PROFILE):
        state = json.loads(json.dumps(profile.to_dict()))
        again = FeatureProfile.from_dict(state)
        assert again == profile
        assert again.to_dict() == profile.to_dict()
        assert hash(again) == hash(profile)
    spec = synthetic_profile.to_dict()["utilization"]
    assert spec["kind"] == "numeric" and len(spec["counts"]) == len(spec["edges"]) + 1 == 10
    assert synthetic_profile.to_dict()["purpose"]["kind"] == "categorical"


def test_edges_are_inverted_cdf_quantiles_and_every_bucket_has_reference_mass(synthetic_reference, synthetic_profile):
    for name in ("income", "age", "months_employed", "utilization"):
        values = synthetic_reference[name].to_numpy(dtype=float)
        expected = np.unique(np.quantile(values, np.arange(1, 10) / 10, method="inverted_cdf"))
        expected = expected[expected < values.max()]
        ref = synthetic_profile.reference(name)
        assert list(ref.edges) == expected.tolist()
        assert all(c > 0 for c in ref.counts)
        assert list(ref.counts) == np.bincount(np.searchsorted(expected, values, side="left")).tolist()
    assert len(synthetic_profile.reference("age").edges) <= 9  # integer ties may collapse edges


def test_degenerate_columns():
    p = FeatureProfile.from_frame(pd.DataFrame({"same": [3.0] * 5, "none": [np.nan] * 5, "obj": [None] * 5}))
    assert p.reference("same") == NumericReference((), (5,), 0)
    assert p.reference("none") == NumericReference((), (0,), 5)
    assert p.reference("obj") == CategoricalReference({}, 5)
    c = FeatureCounter(p)
    c.update({"same": 3.0, "none": 1.0, "obj": "x"})
    drift = feature_drift(c, p)
    assert drift["same"].psi == 0.0 and drift["same"].ks_d == 0.0 and drift["same"].ks_pvalue == 1.0
    assert drift["none"].psi is None and drift["none"].ks_d is None and drift["none"].reference_missing_share == 1.0
    assert drift["obj"].psi is None and drift["obj"].chi2 is None and drift["obj"].unseen == 1


def test_reference_category_cap_lumps_the_tail_and_live_follows_it():
    frame = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"]})
    p = FeatureProfile.from_frame(frame, max_categories=2)
    assert p.reference("c").as_mapping() == {"a": 5, "b": 4, "__other__": 4}
    live = FeatureCounter(p)
    live.update_many({"c": ["a", "c", "zzz"]})
    assert live.counts("c") == {"a": 1, "__other__": 2}
    assert feature_drift(live, p)["c"].unseen == 0


def test_invalid_profiles():
    with pytest.raises(StatsError):
        NumericReference((2.0, 1.0), (1, 1, 1))
    with pytest.raises(StatsError):
        NumericReference((1.0,), (1,))
    with pytest.raises(StatsError):
        NumericReference((1.0,), (1, -1))
    with pytest.raises(StatsError):
        FeatureProfile.from_dict({"a": {"kind": "text", "counts": {}}})
    with pytest.raises(StatsError):
        FeatureProfile({"a|b": NumericReference((), (1,))})


# --- binning ----------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=40), st.lists(finite, max_size=40), st.integers(1, 12))
def test_bucket_convention_is_searchsorted_left(reference, live, buckets):
    p = FeatureProfile.from_frame(pd.DataFrame({"x": reference}), buckets=buckets)
    edges = np.asarray(p.reference("x").edges)
    expected = np.bincount(np.searchsorted(edges, live, side="left"), minlength=edges.size + 1)
    one = FeatureCounter(p)
    for v in live:
        one.update({"x": v})
    many = FeatureCounter(p)
    many.update_many({"x": live})
    assert one.counts("x") == many.counts("x") == expected.tolist()
    # bucket i = (edges[i-1], edges[i]]: an edge itself belongs to the bucket below it
    for i, e in enumerate(edges.tolist()):
        c = FeatureCounter(p)
        c.update({"x": e})
        assert c.counts("x")[i] == 1


def test_missing_non_scalar_absent_and_unknown_features():
    c = FeatureCounter(PROFILE)
    c.update({"x": [1.0], "k": {"a": 1}, "c": ["a"], "flag": np.array([True]), "extra": 3})
    c.update({"x": "not a number", "k": None, "c": float("nan"), "flag": pd.NA})
    c.update({})
    for f in PROFILE.features:
        assert c.missing(f) == 3 and c.total(f) == 3
    c.update({"x": "1.5", "k": np.int64(2), "c": np.str_("a"), "flag": np.bool_(True)})
    assert c.counts("c") == {"a": 1} and c.counts("flag") == {"True": 1}
    assert sum(c.counts("x")) == 1 and sum(c.counts("k")) == 1
    with pytest.raises(StatsError):
        c.update([1, 2])
    with pytest.raises(StatsError):
        c.update_many({"x": [1.0], "k": [1, 2]})


# --- drift statistics -------------------------------------------------------------------


def test_reference_against_itself_is_exactly_zero(synthetic_reference, synthetic_profile):
    live = FeatureCounter(synthetic_profile)
    live.update_many({name: synthetic_reference[name] for name in synthetic_profile.features})
    drift = feature_drift(live, synthetic_profile)
    for name, d in drift.items():
        assert d.psi == 0.0, name
        assert d.n == d.reference_n == 20000
        assert d.missing_share == 0.0
        if d.kind == "numeric":
            assert live.counts(name) == list(synthetic_profile.reference(name).counts)
            assert d.ks_d == 0.0 and d.ks_pvalue == 1.0
        else:
            assert d.chi2 == 0.0 and d.chi2_pvalue == 1.0 and d.unseen == 0 and d.unseen_categories == ()
    # the record path (one dict per record, as from Kafka) counts the same
    one = FeatureCounter(synthetic_profile)
    for record in synthetic_reference.head(500).to_dict("records"):
        one.update(record)
    part = FeatureCounter(synthetic_profile)
    part.update_many({name: synthetic_reference[name].head(500) for name in synthetic_profile.features})
    assert one == part


def brute_force_psi(live_values, ref_values, edges, epsilon=DEFAULT_EPSILON):
    """Independent PSI: Python loops over (lo, hi] buckets, math.log."""
    bounds = [-math.inf, *edges, math.inf]
    total = 0.0
    for lo, hi in zip(bounds, bounds[1:]):
        l = sum(1 for v in live_values if lo < v <= hi) / len(live_values) or epsilon
        r = sum(1 for v in ref_values if lo < v <= hi) / len(ref_values) or epsilon
        total += (l - r) * math.log(l / r)
    return total


def test_numeric_psi_and_ks_match_independent_computations():
    rng = np.random.default_rng(3)
    ref_values = np.round(rng.normal(size=3000), 2)  # ties on purpose
    live_values = np.round(rng.normal(0.3, 1.2, size=1700), 2)
    p = FeatureProfile.from_frame(pd.DataFrame({"x": ref_values}), buckets=10)
    live = FeatureCounter(p)
    live.update_many({"x": live_values})
    d = feature_drift(live, p)["x"]
    edges = p.reference("x").edges
    assert d.psi == pytest.approx(brute_force_psi(live_values.tolist(), ref_values.tolist(), edges), rel=1e-12)
    # KS on bucketed data: ks_2samp on each value replaced by its bucket index
    ref_b = np.searchsorted(edges, ref_values, side="left")
    live_b = np.searchsorted(edges, live_values, side="left")
    assert d.ks_d == pytest.approx(stats.ks_2samp(live_b, ref_b).statistic, abs=1e-15)
    asymp = stats.ks_2samp(live_b, ref_b, method="asymp").pvalue
    assert d.ks_pvalue == pytest.approx(asymp, rel=1e-9, abs=1e-15)
    n, m = 1700, 3000
    assert d.ks_pvalue == pytest.approx(stats.kstwo.sf(d.ks_d, round(n * m / (n + m))), rel=1e-9, abs=1e-15)
    # lower bound of the raw-value D, within ks_bound of it
    raw = stats.ks_2samp(live_values, ref_values).statistic
    assert d.ks_d <= raw + 1e-15 and raw <= d.ks_d + d.ks_bound + 1e-15


def test_categorical_chi2_equals_scipy_and_unseen_counted():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + ["d"] * 0
    live = ["a"] * 20 + ["b"] * 40 + ["new1"] * 7 + ["new2"] * 3 + [None] * 5
    p = FeatureProfile.from_frame(pd.DataFrame({"c": ref}))
    counter = FeatureCounter(p)
    counter.update_many({"c": live})
    d = feature_drift(counter, p)["c"]
    # 2 x K table over the union, "c" (0 live) kept, unseen included
    table = np.array([[50, 30, 20, 0, 0], [20, 40, 0, 7, 3]])
    expected = stats.chi2_contingency(table)
    assert d.chi2 == pytest.approx(expected.statistic, rel=1e-12)
    assert d.chi2_pvalue == pytest.approx(expected.pvalue, rel=1e-9)
    assert d.unseen == 10 and d.unseen_categories == ("new1", "new2")
    assert d.n == 75 and d.reference_n == 100 and d.missing_share == pytest.approx(5 / 75)
    # PSI over reference categories + one unseen bucket, epsilon for empty shares
    l, r = [20 / 70, 40 / 70, DEFAULT_EPSILON, 10 / 70], [0.5, 0.3, 0.2, DEFAULT_EPSILON]
    assert d.psi == pytest.approx(sum((a - b) * math.log(a / b) for a, b in zip(l, r)), rel=1e-12)
    # two categories: scipy's default Yates correction, as chi2_contingency itself
    p2 = FeatureProfile.from_frame(pd.DataFrame({"c": ["a", "b"] * 10}))
    c2 = FeatureCounter(p2)
    c2.update_many({"c": ["a"] * 9 + ["b"]})
    assert feature_drift(c2, p2)["c"].chi2 == pytest.approx(stats.chi2_contingency([[10, 10], [9, 1]]).statistic)


def test_unseen_categories_listed_at_most_20_and_capped_counter():
    p = FeatureProfile.from_frame(pd.DataFrame({"c": ["a"] * 10}))
    c = FeatureCounter(p, max_categories=30)
    names = [f"n{i:03d}" for i in range(40)]
    c.update_many({"c": names + ["a"]})
    counts = c.counts("c")
    assert set(counts) == {"a", "__other__", *names[:30]} and counts["__other__"] == 10
    d = feature_drift(c, p)["c"]
    assert d.unseen == 40
    assert len(d.unseen_categories) == 20 and d.unseen_categories[0] == "__other__"  # most frequent first
    assert json.loads(json.dumps(d.to_dict()))["unseen_categories"] == list(d.unseen_categories)


def test_empty_inputs_never_raise_and_give_none():
    live = FeatureCounter(PROFILE)
    drift = feature_drift(live, PROFILE)
    assert set(drift) == set(PROFILE.features)
    for d in drift.values():
        assert set(d.to_dict()) == FIELDS
        assert d.n == 0 and d.psi is None and d.missing_share is None
        assert d.ks_d is None and d.ks_pvalue is None and d.chi2 is None and d.chi2_pvalue is None
        json.dumps(d.to_dict())
    assert drift["c"].unseen == 0 and drift["x"].unseen is None
    empty = FeatureProfile({})
    assert feature_drift(FeatureCounter(empty), empty) == {}
    live.update_many({})
    live.update_many({"x": []})
    assert live.total("x") == 0


def test_mismatched_profiles_and_bad_epsilon_raise():
    other = FeatureProfile.from_frame(pd.DataFrame({"x": [1.0, 2.0]}))
    with pytest.raises(StatsError):
        feature_drift(FeatureCounter(other), PROFILE)
    with pytest.raises(StatsError):
        FeatureCounter(PROFILE).__iadd__(FeatureCounter(other))
    with pytest.raises(StatsError):
        feature_drift(FeatureCounter(PROFILE), PROFILE, epsilon=0.0)


def test_drifted_synthetic_feature_is_flagged(synthetic_profile):
    scenario = Scenario(population_shift=0.8, drifted_features=("utilization",), drift_start=0,
                        months=1, monthly_volume=5000)
    live = FeatureCounter(synthetic_profile)
    for record in generate(scenario):
        live.update(record["features"])
    drift = feature_drift(live, synthetic_profile)
    assert drift["utilization"].n == 5000
    assert drift["utilization"].psi > 0.1
    assert drift["utilization"].ks_pvalue < 1e-6
    for name in ("age", "income", "home_ownership"):
        assert drift[name].psi < 0.05, name
    assert drift["purpose"].unseen == 0


# --- redis fields and state -------------------------------------------------------------


def test_redis_fields_round_trip_and_escaping():
    p = FeatureProfile({"x": NumericReference((0.0, 1.0), (1, 1, 1)), "c": CategoricalReference({"a": 1})})
    c = FeatureCounter(p)
    c.update_many({"x": [-1.0, 0.5, 2.0, None], "c": ["a", "missing", "~x", None]})
    fields = c.to_redis_fields()
    assert fields == {"x|0": 1, "x|1": 1, "x|2": 1, "x|missing": 1,
                      "c|missing": 1, "c|a": 1, "c|~missing": 1, "c|~~x": 1}
    as_bytes = {k.encode(): str(v).encode() for k, v in fields.items()}
    back = FeatureCounter.from_redis_fields(as_bytes, p)
    assert back == c and back.counts("c") == {"a": 1, "missing": 1, "~x": 1}
    assert FeatureCounter.from_redis_fields(fields, p) == c
    for bad in ({"x|9": 1}, {"x|one": 1}, {"nofield": 1}, {"x|0": -1}, {"x|0": b"x"}):
        with pytest.raises(StatsError):
            FeatureCounter.from_redis_fields(bad, p)
    assert FeatureCounter.from_redis_fields({"gone|3": 1}, p) == FeatureCounter(p)


def test_redis_hash_accumulated_over_batches_reads_as_one_counter():
    p = FeatureProfile({"c": CategoricalReference({"a": 1})})
    batches = [["z", "y", "x", "a"], ["b", "y"], ["c", "z", "q"]]
    redis_hash: Counter = Counter()
    for batch in batches:
        part = FeatureCounter(p, max_categories=2)
        part.update_many({"c": batch})
        redis_hash.update(part.to_redis_fields())  # HINCRBY per field
    whole = FeatureCounter(p, max_categories=2)
    whole.update_many({"c": [v for b in batches for v in b]})
    assert FeatureCounter.from_redis_fields(redis_hash, p, max_categories=2) == whole
    assert whole.counts("c") == {"a": 1, "b": 1, "c": 1, "__other__": 6}


# --- properties -------------------------------------------------------------------------

numeric_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5),
    st.none(),
    st.booleans(),
    st.sampled_from(["0.5", "abc", [1.0], {"a": 1}]),
)
category_values = st.one_of(
    st.sampled_from(["a", "b", "c", "d", "e", "f", "missing", "~", "__other__", ""]),
    st.none(),
    st.just(float("nan")),
    st.booleans(),
    st.integers(0, 3),
    st.just(["a"]),
)
records = st.fixed_dictionaries(
    {},
    optional={"x": numeric_values, "k": numeric_values, "c": category_values, "flag": category_values,
              "extra": st.integers()},
)
record_lists = st.lists(records, max_size=25)


def counter_of(rows, max_categories=2) -> FeatureCounter:
    c = FeatureCounter(PROFILE, max_categories=max_categories)
    for row in rows:
        c.update(row)
    return c


@given(record_lists, record_lists, record_lists)
def test_merge_is_associative_and_commutative(a, b, c):
    ca, cb, cc = counter_of(a), counter_of(b), counter_of(c)
    assert (ca + cb) + cc == ca + (cb + cc) == counter_of(a + b + c)
    assert ca + cb == cb + ca


@given(record_lists)
def test_update_many_equals_sequence_of_updates(rows):
    n = len(rows)
    # A profile column absent from every row is left out (counted missing); "extra" is not
    # in the profile and carries the batch length. Absent keys and None both count as missing.
    columns = {"extra": [r.get("extra") for r in rows]}
    for name in ("x", "k", "c", "flag"):
        if any(name in r for r in rows):
            columns[name] = [r.get(name) for r in rows]
    many = FeatureCounter(PROFILE, max_categories=2)
    many.update_many(columns)
    assert many == counter_of(rows)
    if n:
        assert all(many.total(f) == n for f in PROFILE.features)


@given(record_lists)
def test_state_round_trips(rows):
    c = counter_of(rows)
    assert FeatureCounter.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert FeatureCounter.from_redis_fields(c.to_redis_fields(), PROFILE, max_categories=2) == c


@settings(max_examples=50)
@given(record_lists, st.floats(min_value=1e-9, max_value=0.5))
def test_psi_is_non_negative_and_statistics_are_never_nan(rows, epsilon):
    for name, d in feature_drift(counter_of(rows), PROFILE, epsilon=epsilon).items():
        for key, value in d.to_dict().items():
            assert not (isinstance(value, float) and math.isnan(value)), (name, key)
        assert d.psi is None or d.psi >= 0.0
        if d.ks_pvalue is not None:
            assert 0.0 <= d.ks_pvalue <= 1.0 and 0.0 <= d.ks_d <= 1.0
        if d.chi2_pvalue is not None:
            assert 0.0 <= d.chi2_pvalue <= 1.0 and d.chi2 >= 0.0


def test_the_feature_statistics_live_in_named_rooms_and_keep_their_public_imports():
    import monitor.stats.features as package
    from monitor.stats.features import counter, drift, encoding, profile, values
    assert package.FeatureCounter is counter.FeatureCounter and package.feature_drift is drift.feature_drift
    assert package.FeatureProfile is profile.FeatureProfile and package.OTHER == values.OTHER
    assert "to_redis_fields" in vars(encoding.RedisFields)
