"""The synthetic credit stream: reproducible, counted exactly, and drifting as told."""

from __future__ import annotations

import calendar
import json
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from monitor.errors import MonitorError
from producers.synthetic import (
    CATEGORIES,
    FEATURES,
    SCENARIOS,
    InvalidScenario,
    Scenario,
    generate,
    monthly_counts,
    reference_frame,
    reference_scores,
)

NUMERIC = ("income", "debt_to_income", "utilization", "age", "months_employed")


def by_month(scenario: Scenario) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in generate(scenario):
        out.setdefault(r["ref_date"][:7], []).append(r)
    return out


def scores(records: list[dict]) -> np.ndarray:
    return np.array([r["score"] for r in records])


def feature(records: list[dict], name: str) -> np.ndarray:
    return np.array([r["features"][name] for r in records])


def auc(records: list[dict]) -> float:
    return roc_auc_score([r["target"] for r in records], scores(records))


def ks(a, b) -> float:
    return float(ks_2samp(a, b).statistic)


@pytest.fixture(scope="module")
def baseline() -> dict[str, list[dict]]:
    return by_month(SCENARIOS["baseline"])


# --- shape of the records ---------------------------------------------------------------


def test_records_have_the_documented_shape_and_are_json_ready():
    s = Scenario(months=3, monthly_volume=400, label_fraction=0.5, start_month="2024-02")
    recs = list(generate(s))
    assert len(recs) == 1200
    assert len({r["record_id"] for r in recs}) == len(recs)
    assert recs[0]["record_id"] == "synthetic-2024-02-0000000"
    dates = [r["ref_date"] for r in recs]
    assert dates == sorted(dates)
    for r in recs:
        assert set(r) == {"record_id", "model", "model_version", "ref_date", "score", "target", "features"}
        assert (r["model"], r["model_version"]) == ("synthetic", "1")
        assert type(r["score"]) is float and 0.0 <= r["score"] <= 1.0
        assert round(r["score"], 6) == r["score"]
        assert r["target"] in (0, 1, None) and type(r["target"]) in (int, type(None))
        f = r["features"]
        assert set(f) == set(FEATURES)
        assert type(f["income"]) is float and f["income"] > 0
        assert type(f["debt_to_income"]) is float and f["debt_to_income"] >= 0
        assert type(f["utilization"]) is float and 0.0 <= f["utilization"] <= 1.0
        assert type(f["age"]) is int and 18 <= f["age"] <= 90
        assert type(f["months_employed"]) is int and 0 <= f["months_employed"] <= (f["age"] - 18) * 12
        assert f["home_ownership"] in CATEGORIES["home_ownership"]
        assert f["purpose"] in CATEGORIES["purpose"]
        year, month, day = (int(p) for p in r["ref_date"].split("-"))
        assert 1 <= day <= calendar.monthrange(year, month)[1]
        assert r["record_id"].startswith(f"synthetic-{year:04d}-{month:02d}-")
    json.dumps(recs)  # plain python types only
    # the days are spread over the month, not all on the 1st
    assert len({r["ref_date"] for r in recs if r["ref_date"].startswith("2024-02")}) >= 25


def test_months_roll_over_the_year_and_leap_february():
    s = Scenario(start_month="2023-11", months=4, monthly_volume=200)
    assert list(monthly_counts(s)) == ["2023-11", "2023-12", "2024-01", "2024-02"]
    feb = [r["ref_date"] for r in generate(s) if r["ref_date"].startswith("2024-02")]
    assert max(feb) <= "2024-02-29"


def test_model_name_and_version_are_carried():
    r = next(generate(Scenario(model="pd-retail", model_version="3.2", months=1, monthly_volume=1)))
    assert (r["model"], r["model_version"], r["record_id"]) == ("pd-retail", "3.2", "pd-retail-2024-01-0000000")


# --- reproducibility ----------------------------------------------------------------------


def test_same_seed_same_records_other_seed_other_records():
    s = Scenario(months=2, monthly_volume=300)
    assert list(generate(s)) == list(generate(s))
    other = list(generate(replace(s, seed=8)))
    assert [r["score"] for r in other] != [r["score"] for r in generate(s)]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    months=st.integers(1, 5),
    extra=st.integers(1, 4),
    volume=st.integers(0, 60),
)
def test_month_k_does_not_depend_on_how_many_months(seed, months, extra, volume):
    short = Scenario(seed=seed, months=months, monthly_volume=volume)
    long = replace(short, months=months + extra)
    a = list(generate(short))
    b = list(generate(long))
    assert b[: len(a)] == a


def test_months_before_drift_equal_the_baseline_and_shift_keeps_the_draws(baseline):
    shifted = by_month(SCENARIOS["score_shift"])
    months = list(baseline)
    for m in months[:6]:
        assert shifted[m] == baseline[m]
    for m in months[6:]:
        # same applicants, same labels: only the score moved, upward
        assert [r["features"] for r in shifted[m]] == [r["features"] for r in baseline[m]]
        assert [r["target"] for r in shifted[m]] == [r["target"] for r in baseline[m]]
        assert (scores(shifted[m]) >= scores(baseline[m])).all()


# --- counts -----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    months=st.integers(0, 6),
    volume=st.integers(0, 120),
    drift_start=st.one_of(st.none(), st.integers(0, 7)),
    factor=st.sampled_from([0.0, 0.25, 0.3, 1.0, 1.5, 3.0]),
    start=st.sampled_from(["2024-01", "2023-12", "1999-07"]),
)
def test_monthly_counts_is_exactly_what_generate_yields(months, volume, drift_start, factor, start):
    s = Scenario(months=months, monthly_volume=volume, drift_start=drift_start,
                 volume_factor=factor, start_month=start)
    expected = monthly_counts(s)
    assert len(expected) == months
    got = Counter(r["ref_date"][:7] for r in generate(s))
    assert {m: c for m, c in expected.items() if c} == dict(got)
    for k, (m, c) in enumerate(expected.items()):
        drifted = drift_start is not None and k >= drift_start
        assert c == (round(volume * factor) if drifted else volume)


@pytest.mark.parametrize("factor, after", [(0.0, 0), (0.3, 1500), (3.0, 15000)])
def test_volume_factor_changes_counts_from_drift_start(factor, after):
    s = Scenario(months=4, drift_start=2, volume_factor=factor)
    counts = monthly_counts(s)
    assert list(counts.values()) == [5000, 5000, after, after]
    assert Counter(r["ref_date"][:7] for r in generate(s)) == Counter({m: c for m, c in counts.items() if c})


def test_volume_presets():
    assert list(monthly_counts(SCENARIOS["volume_drop"]).values())[5:7] == [5000, 1500]
    assert list(monthly_counts(SCENARIOS["volume_spike"]).values())[5:7] == [5000, 15000]


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_label_fraction_leaves_the_right_share_unlabelled(fraction):
    s = Scenario(months=2, monthly_volume=1001, label_fraction=fraction)
    for recs in by_month(s).values():
        labelled = sum(r["target"] is not None for r in recs)
        assert labelled == round(1001 * fraction)


def test_unlabelled_records_are_a_random_subset():
    recs = list(generate(Scenario(months=1, monthly_volume=4000, label_fraction=0.5)))
    labelled = np.array([r["target"] is not None for r in recs])
    # not the first or last half of the month
    assert 0.4 < labelled[:2000].mean() < 0.6
    # the unlabelled records' scores look like the labelled ones'
    s = scores(recs)
    assert ks(s[labelled], s[~labelled]) < 0.06


# --- statistics ---------------------------------------------------------------------------


def test_baseline_has_no_drift_and_plausible_performance(baseline):
    months = list(baseline)
    assert len(months) == 12
    assert ks(scores(baseline[months[0]]), scores(baseline[months[11]])) < 0.05
    for m in months:
        assert 0.74 <= auc(baseline[m]) <= 0.83
        bad = np.mean([r["target"] for r in baseline[m]])
        assert 0.065 <= bad <= 0.095
        for name in NUMERIC:
            assert ks(feature(baseline[months[0]], name), feature(baseline[m], name)) < 0.05


@pytest.mark.parametrize("bad_rate", [0.02, 0.08, 0.2])
def test_bad_rate_is_approximately_honoured(bad_rate):
    recs = list(generate(Scenario(months=1, monthly_volume=20000, bad_rate=bad_rate)))
    got = np.mean([r["target"] for r in recs])
    assert abs(got - bad_rate) < 0.15 * bad_rate + 0.005
    # scores are calibrated probabilities, roughly
    assert abs(scores(recs).mean() - bad_rate) < 0.15 * bad_rate + 0.005


def test_score_shift_moves_scores_not_auc(baseline):
    shifted = by_month(SCENARIOS["score_shift"])
    months = list(shifted)
    assert ks(scores(shifted[months[0]]), scores(shifted[months[5]])) < 0.05
    for m in months[6:]:
        assert ks(scores(shifted[months[0]]), scores(shifted[m])) > 0.1
        assert abs(auc(shifted[m]) - auc(baseline[m])) < 0.005


def test_population_shift_moves_scores_and_only_the_drifted_features(baseline):
    s = SCENARIOS["population_shift"]
    shifted = by_month(s)
    months = list(shifted)
    first = shifted[months[0]]
    for m in months[6:]:
        assert ks(scores(first), scores(shifted[m])) > 0.1
        for name in s.drifted_features:
            assert ks(feature(first, name), feature(shifted[m], name)) > 0.1
        for name in set(FEATURES) - set(s.drifted_features):
            # the other features are untouched: the very values of the baseline month
            assert feature(shifted[m], name).tolist() == feature(baseline[m], name).tolist()
    m = months[6]
    # the risky direction: income down, utilisation up, more defaults
    assert np.median(feature(shifted[m], "income")) < np.median(feature(first, "income"))
    assert np.median(feature(shifted[m], "utilization")) > np.median(feature(first, "utilization"))
    assert np.mean([r["target"] for r in shifted[m]]) > np.mean([r["target"] for r in first]) + 0.02


def test_default_drifted_feature_is_utilization_and_categories_can_drift():
    s = Scenario(months=2, drift_start=1, population_shift=1.0)
    recs = by_month(s)
    a, b = recs["2024-01"], recs["2024-02"]
    assert ks(feature(a, "utilization"), feature(b, "utilization")) > 0.2
    assert ks(feature(a, "income"), feature(b, "income")) < 0.05
    c = by_month(replace(s, drifted_features=("home_ownership",)))
    share = lambda rs: np.mean([r["features"]["home_ownership"] == "RENT" for r in rs])  # noqa: E731
    assert share(c["2024-02"]) > share(c["2024-01"]) + 0.2


def test_performance_decay_lowers_auc_but_not_the_score_distribution(baseline):
    decayed = by_month(SCENARIOS["performance_decay"])
    months = list(decayed)
    for m in months[:6]:
        assert decayed[m] == baseline[m]
    for m in months[6:]:
        assert auc(baseline[m]) - auc(decayed[m]) >= 0.1
        assert scores(decayed[m]).tolist() == scores(baseline[m]).tolist()
        bad = np.mean([r["target"] for r in decayed[m]])
        assert 0.06 <= bad <= 0.10  # the bad rate stays put
    full = by_month(Scenario(months=2, drift_start=1, performance_decay=1.0, monthly_volume=20000))
    assert abs(auc(full["2024-02"]) - 0.5) < 0.03


def test_reference_resembles_month_zero_but_is_its_own_draw(baseline):
    s = SCENARIOS["baseline"]
    ref = reference_scores(s)
    assert ref.shape == (20000,)
    month0 = scores(baseline["2024-01"])
    assert ks(ref, month0) < 0.05
    assert ref[:100].tolist() != month0[:100].tolist()
    # the drift knobs do not touch the reference
    for name in ("score_shift", "population_shift", "performance_decay", "volume_drop"):
        assert np.array_equal(reference_scores(SCENARIOS[name]), ref)


def test_reference_frame_is_the_same_draw_as_reference_scores():
    s = SCENARIOS["demo"]
    df = reference_frame(s, n=5000)
    assert list(df.columns) == ["score", "TARGET", *FEATURES]
    assert np.array_equal(df["score"].to_numpy(), reference_scores(s, n=5000))
    assert set(df["TARGET"].unique()) == {0, 1}
    assert 0.74 <= roc_auc_score(df["TARGET"], df["score"]) <= 0.83
    assert set(df["home_ownership"]) == set(CATEGORIES["home_ownership"])
    month0 = list(generate(replace(s, months=1)))
    for name in NUMERIC:
        assert ks(df[name].to_numpy(), feature(month0, name)) < 0.06


def test_demo_fires_ks_psi_and_auc_after_month_3():
    s = SCENARIOS["demo"]
    assert (s.months, s.monthly_volume, s.drift_start) == (6, 3000, 3)
    ref = reference_scores(s)
    edges = np.quantile(ref, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf

    def psi(a):
        p = np.clip(np.histogram(ref, edges)[0] / len(ref), 1e-6, None)
        q = np.clip(np.histogram(a, edges)[0] / len(a), 1e-6, None)
        return float(((q - p) * np.log(q / p)).sum())

    months = by_month(s)
    for k, (m, recs) in enumerate(months.items()):
        sc = scores(recs)
        if k < 3:
            assert ks(sc, ref) < 0.05 and psi(sc) < 0.05 and auc(recs) > 0.72
        else:
            assert ks(sc, ref) > 0.2 and psi(sc) > 0.25 and auc(recs) < 0.6


def test_all_presets_exist_and_are_valid():
    assert set(SCENARIOS) >= {"baseline", "score_shift", "population_shift", "performance_decay",
                              "volume_drop", "volume_spike", "demo"}
    for name, s in SCENARIOS.items():
        assert s.name == name
        assert sum(monthly_counts(s).values()) > 0
    assert SCENARIOS["baseline"].drift_start is None


# --- validation and speed -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bad_rate": 0.0},
        {"bad_rate": 1.0},
        {"months": -1},
        {"monthly_volume": -5},
        {"start_month": "2024-13"},
        {"start_month": "24-01"},
        {"drift_start": -1},
        {"performance_decay": 1.5},
        {"volume_factor": -0.1},
        {"label_fraction": 1.2},
        {"drifted_features": ("salary",)},
        {"drifted_features": "income"},
        {"score_shift": float("nan")},
    ],
)
def test_invalid_scenarios_are_refused(kwargs):
    with pytest.raises(InvalidScenario) as info:
        Scenario(**kwargs)
    assert isinstance(info.value, MonitorError) and isinstance(info.value, ValueError)


def test_reference_refuses_a_bad_n():
    with pytest.raises(InvalidScenario):
        reference_scores(Scenario(), n=0)


def test_generation_is_fast():
    s = Scenario(months=20, monthly_volume=5000)
    t0 = time.perf_counter()
    n = sum(1 for _ in generate(s))
    elapsed = time.perf_counter() - t0
    assert n == 100_000
    assert elapsed < 2.0, f"{n} records took {elapsed:.2f}s"
