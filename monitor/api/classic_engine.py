"""The classic batch endpoints' computations, on the monitor's own engine (monitor.stats). No I/O here
except reading a file the caller already confined to the data directory.

* performance: records (REF_DATE, TARGET, and a score or the model's features) -> per month
  volumetry, AUC, Gini, KS good/bad, and the same over the whole request;
* aderencia (adherence): a file's scores against the model's reference (test base) histogram ->
  KS D, p-value (scipy ks_2samp semantics), PSI over the reference's deciles.

Scores are binned at the settings' resolution like the worker does, so a classic result equals
what the stream would show for the same records.

>>> recs = [ClassicRecord.model_validate(r) for r in [
...     {"REF_DATE": "2024-01-03", "TARGET": 1, "score": 0.9}, {"REF_DATE": "2024-01-20", "TARGET": 0, "score": 0.2},
...     {"REF_DATE": "2024-02-01", "TARGET": 0, "score": 0.4}, {"REF_DATE": "2024-02-11", "TARGET": 1, "score": 0.3}]]
>>> r = performance_of(records_frame(recs), np.array([r.score for r in recs]), 1e-4)
>>> r["volumetry"], r["auc"], r["gini"], [m["auc"] for m in r["months"]]
({'2024-01': 2, '2024-02': 2}, 0.75, 0.5, [1.0, 0.0])
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator)

from monitor.errors import MonitorError
from monitor.paths import PathRejected, confine  # noqa: F401 (monitor.api imports them from here)
from monitor.schema import strict_label
from monitor.stats import LabelledHistograms, ScoreHistogram, compute_metrics
from monitor.stats.ks import ks_adherence, ks_critical_value
from monitor.stats.psi import psi, psi_critical_value, psi_edges
from monitor.stats.summary import ALPHA, PSI_BUCKETS

MAX_RECORDS = 1_000_000
SCALARS = (str, int, float, bool, type(None))


class ClassicRecord(BaseModel):
    """One record of ``POST /v1/performance/{model_from}``.

    ``REF_DATE`` (ISO date or datetime), ``TARGET`` (0, 1 or null), and either ``score`` (a
    probability of bad in [0, 1]) or the model's features, as top-level fields or in a
    ``features`` object. Any other top-level scalar field is a feature.

    >>> ClassicRecord.model_validate({"REF_DATE": "2024-03-05T10:00:00", "TARGET": 1, "income": 10}).feature_values()
    {'income': 10}
    >>> ClassicRecord.model_validate({"REF_DATE": "2024-03-05", "TARGET": 2})
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for ClassicRecord
    TARGET
      Value error, TARGET must be 0, 1 or null [type=value_error, input_value=2, input_type=int]
        For further information visit https://errors.pydantic.dev/2.13/v/value_error
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    REF_DATE: dt.date = Field(validation_alias=AliasChoices("REF_DATE", "ref_date"),
                              description="Reference date; its month is the record's month.")
    TARGET: Literal[0, 1] | None = Field(None, validation_alias=AliasChoices("TARGET", "target"),
                                         description="1 = bad, 0 = good, null = not known yet.")
    score: float | None = Field(None, ge=0.0, le=1.0, description="Probability of bad; when absent the model scores "
                                                                  "the record from its features.")
    record_id: str | None = Field(None, max_length=256)
    features: dict[str, str | bool | int | float | None] | None = Field(None, max_length=2000)

    @field_validator("REF_DATE", mode="before")
    @classmethod
    def _date_of_datetime(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > 10:
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
            except ValueError:
                raise ValueError(f"REF_DATE {value!r} is not an ISO date or datetime") from None
        return value

    @field_validator("TARGET", mode="before")
    @classmethod
    def _strict_label(cls, value: Any) -> Any:
        return strict_label(value, "TARGET")

    @field_validator("score", mode="before")
    @classmethod
    def _finite_number(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("score must be a JSON number (or absent: the model scores the record)")
        if not math.isfinite(value):
            raise ValueError("score must be finite")
        return value

    @model_validator(mode="after")
    def _flat_features(self) -> ClassicRecord:
        for key, value in (self.model_extra or {}).items():
            if not isinstance(value, SCALARS):
                raise ValueError(f"feature {key!r} must be a string, number, boolean or null")
        return self

    def feature_values(self) -> dict[str, Any]:
        return {**(self.features or {}), **(self.model_extra or {})}


def records_frame(records: list[ClassicRecord]) -> pd.DataFrame:
    """The request as a frame: REF_DATE (``YYYY-MM-DD``), TARGET (float, NaN = none), score, features.

    >>> f = records_frame([ClassicRecord.model_validate({"REF_DATE": "2024-01-02", "x": 1.5})])
    >>> f.to_dict("records")
    [{'REF_DATE': '2024-01-02', 'TARGET': nan, 'score': nan, 'x': 1.5}]
    """
    if not records:
        raise MonitorError("the request holds no records: send a JSON list of at least one record")
    if len(records) > MAX_RECORDS:
        raise MonitorError(f"{len(records)} records in one request; the limit is {MAX_RECORDS}")
    base = pd.DataFrame({
        "REF_DATE": [r.REF_DATE.isoformat() for r in records],
        "TARGET": np.array([np.nan if r.TARGET is None else r.TARGET for r in records], dtype=float),
        "score": np.array([np.nan if r.score is None else r.score for r in records], dtype=float),
    })
    features = pd.DataFrame.from_records([r.feature_values() for r in records], index=base.index)
    features = features.drop(columns=[c for c in features.columns if c in base.columns])
    return pd.concat([base, features], axis=1) if len(features.columns) else base


def month_histograms(months: np.ndarray, targets: np.ndarray, scores: np.ndarray,
                     resolution: float) -> dict[str, LabelledHistograms]:
    """Per month: bads, goods and unlabelled scores as histograms (what the worker stores).

    >>> h = month_histograms(np.array(["2024-01", "2024-01"]), np.array([1.0, np.nan]), np.array([0.5, 0.25]), 0.01)
    >>> h["2024-01"].pos.n, h["2024-01"].unlabeled.n
    (1, 1)
    """
    out = {}
    for month in sorted(set(months.tolist())):
        in_month = months == month
        out[month] = LabelledHistograms(
            ScoreHistogram.from_scores(scores[in_month & (targets == 1)], resolution),
            ScoreHistogram.from_scores(scores[in_month & (targets == 0)], resolution),
            ScoreHistogram.from_scores(scores[in_month & np.isnan(targets)], resolution))
    return out


MONTH_FIELDS = ("n", "n_labelled", "n_pos", "n_neg", "bad_rate", "auc", "auc_bound", "auc_se", "gini", "ks_good_bad")


def performance_of(frame: pd.DataFrame, scores: np.ndarray, resolution: float) -> dict:
    """Volumetry and discrimination per month and over the whole request (monitor.stats.compute_metrics)."""
    months = frame["REF_DATE"].str.slice(0, 7).to_numpy()
    targets = frame["TARGET"].to_numpy(dtype=float)
    per_month = month_histograms(months, targets, np.asarray(scores, dtype=float), resolution)
    total = LabelledHistograms.empty(resolution)
    rows = []
    for month, h in per_month.items():
        total += h
        m = compute_metrics(h, None).to_dict()
        rows.append({"month": month, **{k: m[k] for k in MONTH_FIELDS}})
    overall = compute_metrics(total, None)
    return {
        "records": int(len(frame)), "volumetry": {r["month"]: r["n"] for r in rows}, "months": rows,
        "n_labelled": overall.n_labelled, "auc": overall.auc, "auc_bound": overall.auc_bound,
        "gini": overall.gini, "ks_good_bad": overall.ks_good_bad, "resolution": resolution,
    }


def adherence_of(scores: np.ndarray, reference: ScoreHistogram, months: np.ndarray | None = None) -> dict:
    """KS adherence (D, p-value, where, bound, critical D) and PSI of scores against the reference.

    >>> ref = ScoreHistogram.from_scores([0.1, 0.2, 0.3, 0.4], resolution=0.1)
    >>> r = adherence_of(np.array([0.3, 0.4, 0.5, 0.6]), ref)
    >>> round(r["ks_d"], 4), round(r["ks_pvalue"], 4), r["records"]
    (0.5, 0.7714, 4)
    """
    live = ScoreHistogram.from_scores(np.asarray(scores, dtype=float), reference.resolution)
    ks = ks_adherence(live, reference)
    psi_value = psi(live, reference, PSI_BUCKETS)
    psi_crit = None
    if psi_value is not None:
        psi_crit = psi_critical_value(live.n, reference.n, psi_edges(reference, PSI_BUCKETS).size + 1, ALPHA)
    volumetry = None
    if months is not None:
        names, counts = np.unique(months, return_counts=True)
        volumetry = {str(m): int(c) for m, c in zip(names, counts)}
    return {
        "records": live.n, "reference_n": reference.n,
        "ks_d": ks.d if ks else None, "ks_pvalue": ks.pvalue if ks else None,
        "ks_location": ks.location if ks else None, "ks_bound": ks.bound if ks else None,
        "ks_critical": ks_critical_value(live.n, reference.n, ALPHA), "psi": psi_value, "psi_critical": psi_crit,
        "volumetry": volumetry, "resolution": reference.resolution,
    }
