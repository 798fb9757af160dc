"""Pydantic models of the API's requests and responses (they make the OpenAPI document).

Handlers return pre-serialised JSON for speed; these models describe it, and the tests check
that real responses validate against them.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from monitor.alerts.lifecycle import AlertEvent

MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,128}$"
Window = Literal["month", "rolling", "cumulative"]


class ErrorBody(BaseModel):
    detail: str = Field(description="What went wrong and what to do.")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: bool = Field(description="Redis answered PING.")
    redis_url: str | None = Field(None, description="Redis (password redacted); null without a token.")
    key_prefix: str | None = Field(None, description="The deployment's key prefix; null without a token.")
    models: int | None = Field(None, description="Monitored (model, version) pairs; null without a token.")


class Counts(BaseModel):
    n: int = Field(description="Records counted in the month (exact).")
    bad: int = Field(description="Records with TARGET 1.")
    good: int = Field(description="Records with TARGET 0.")
    unlabeled: int = Field(description="Records without a label yet.")


class MetricSetModel(BaseModel):
    """Every metric of one window (monitor.stats.MetricSet); null where undefined, never NaN."""

    n: int
    n_labelled: int
    n_pos: int
    n_neg: int
    bad_rate: float | None
    auc: float | None = Field(description="ROC AUC (Mann-Whitney, ties 1/2), exact on quantized scores.")
    auc_bound: float | None = Field(description="|AUC on raw scores - auc| <= auc_bound.")
    auc_se: float | None = Field(description="Hanley-McNeil standard error of the AUC.")
    gini: float | None
    ks_good_bad: float | None
    ks_good_bad_location: float | None
    ks_d: float | None = Field(description="KS adherence D against the reference (two-sample KS).")
    ks_location: float | None
    ks_pvalue: float | None
    ks_bound: float | None = Field(description="D on raw scores lies in [ks_d, ks_d + ks_bound].")
    ks_critical: float | None
    psi: float | None = Field(description="PSI over the reference's deciles.")
    psi_critical: float | None
    reference_n: int | None


class FiringAlert(BaseModel):
    rule: str
    window: str
    phase: Literal["provisional", "final"] = Field("final", description="provisional while the month is open")
    severity: Literal["warning", "critical"]
    value: float | None = None
    since: str | None = None


class ModelFiringAlert(BaseModel):
    rule: str
    window: str
    phase: Literal["provisional", "final"] = Field("final", description="provisional while the month is open")
    severity: Literal["warning", "critical"]
    month: str
    value: float | None = None


class ReferenceCard(BaseModel):
    n: int
    resolution: float | None = None
    source: str | None = None
    auc: float | None = None
    loaded_at: str | None = None


class ModelSummary(BaseModel):
    model: str
    model_version: str
    months: list[str]
    records: int = Field(description="Records counted over every month.")
    watermark: str | None = Field(None, description="Latest REF_DATE seen.")
    reference: ReferenceCard | None
    firing_alerts: list[ModelFiringAlert]


class MonthRow(BaseModel):
    month: str
    counts: Counts
    n_computed: int | None = Field(description="Records the stored metrics cover (null: not computed yet).")
    metrics_current: bool = Field(description="The metrics cover every counted record.")
    bad_rate: float | None
    auc: float | None
    gini: float | None
    ks_good_bad: float | None
    ks_d: float | None
    ks_pvalue: float | None
    psi: float | None
    computed_at: str | None
    firing_alerts: list[FiringAlert]


class Windows(BaseModel):
    month: MetricSetModel
    rolling: MetricSetModel
    cumulative: MetricSetModel


class MonthDetail(BaseModel):
    model: str
    model_version: str
    month: str
    counts: Counts
    metrics_current: bool
    computed_at: str | None
    resolution: float | None
    rolling_months: list[str] | None
    reference_n: int | None
    reference_auc: float | None
    windows: Windows | None = Field(description="null until the worker computed this month.")
    firing_alerts: list[FiringAlert]


class AlertState(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    model_version: str
    rule: str
    window: str
    status: Literal["ok", "firing"]
    phase: Literal["provisional", "final"] = Field("final", description="provisional while the month is open")
    severity: Literal["warning", "critical"]
    month: str
    value: float | None = None
    since: str | None = None
    message: str | None = None


# ---- classic endpoints ------------------------------------------------------------------------
class ClassicMonth(BaseModel):
    month: str
    n: int
    n_labelled: int
    n_pos: int
    n_neg: int
    bad_rate: float | None
    auc: float | None
    auc_bound: float | None
    auc_se: float | None
    gini: float | None
    ks_good_bad: float | None


class PerformanceResult(BaseModel):
    endpoint: Literal["performance"] = "performance"
    model: str
    model_version: str | None = Field(description="The registered version that scored (null: every record had a score).")
    records: int
    scored_by_model: int = Field(description="Records without a score, scored by the registered model.")
    volumetry: dict[str, int] = Field(description="Records per month (REF_DATE).")
    months: list[ClassicMonth]
    n_labelled: int
    auc: float | None = Field(description="ROC AUC of every labelled record of the request.")
    auc_bound: float | None
    gini: float | None
    ks_good_bad: float | None
    unseen_categories: dict[str, dict[str, int]] = Field(default_factory=dict)
    resolution: float = Field(description="MONITOR_RESOLUTION: the stream bins these records at it (the numbers "
                                          "here are on the raw scores).")
    scores: Literal["raw", "histogram"] = Field(
        "histogram", description="`raw`: AUC = scikit-learn roc_auc_score and KS good/bad = scipy ks_2samp on the "
        "raw scores (auc_bound 0). A result saved before issue 19 has no field: it was binned at `resolution`.")
    computed_at: dt.datetime


class AdherenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096,
                      description="A CSV, CSV.gz or JSON-list file inside the data directory (MONITOR_DATA_DIR).")
    model: str = Field("default", pattern=NAME_PATTERN, description="Model whose test base is the reference.")
    version: str | None = Field(None, pattern=NAME_PATTERN, description="Default: the latest registered version.")
    score_column: str | None = Field(None, min_length=1, max_length=256,
                                     description="Use this column as the score instead of scoring with the model.")


class AdherenceResult(BaseModel):
    endpoint: Literal["aderencia"] = "aderencia"
    path: str
    model: str
    model_version: str
    records: int
    scored_by: Literal["model", "column"]
    score_column: str | None
    reference: str = Field(description="Where the reference (test base) came from.")
    reference_n: int
    ks_d: float | None
    ks_pvalue: float | None
    ks_location: float | None
    ks_bound: float | None
    ks_critical: float | None
    psi: float | None
    psi_critical: float | None
    volumetry: dict[str, int] | None = Field(None, description="Records per month, when the file has REF_DATE.")
    unseen_categories: dict[str, dict[str, int]] = Field(default_factory=dict)
    resolution: float = Field(description="The reference histogram's resolution (PSI's deciles; KS when `scores` "
                                          "is `histogram`).")
    scores: Literal["raw", "histogram"] = Field(
        "histogram", description="`raw`: KS D, p-value and location are scipy ks_2samp of the raw scores against the "
        "reference's raw test scores (ks_bound 0). `histogram`: the reference has only a histogram (a card "
        "registered before issue 19, or `monitor reference load`); KS is on the binned scores, raw D within "
        "ks_bound. PSI is over the reference histogram's deciles either way.")
    computed_at: dt.datetime


__all__ = ["AlertEvent", "AdherenceRequest", "AdherenceResult", "AlertState", "ErrorBody", "Health", "MonthDetail",
           "MonthRow", "ModelSummary", "PerformanceResult"]
