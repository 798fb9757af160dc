"""Train, evaluate, register and score the ``default`` and ``enhanced`` model of a dataset.

* ``default``: logistic regression on numeric features (median imputation with missing
  indicators, standard scaling) and categorical features (most-frequent imputation, one-hot
  encoding that ignores unseen categories).
* ``enhanced``: histogram gradient boosting on the raw numeric features (missing values handled
  natively) and ordinal-encoded categorical features (native categorical splits; an unseen
  category is treated as missing).

Split (:func:`split_indices`): where the dataset's months come from the data
(``card.dates_from_data``) and there are at least three, the earliest months train, the
second-to-last month is the test split and the last month is the out-of-time split; with two
months, train on the first and test on the second. Otherwise a stratified 70/30 train/test
split with a fixed seed. Every estimator has a fixed ``random_state``: the same data gives the
same model and the same scores.

Scoring (:func:`score_frame`) needs every feature column; categories never seen in training
are counted per column (:class:`ScoringReport`) and scored like the encoder treats them,
never an error.

>>> MODEL_KINDS
('default', 'enhanced')
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from monitor.errors import MonitorError

MODEL_KINDS = ("default", "enhanced")
SEED = 20240101
TEST_SIZE = 0.3


class MissingFeatures(MonitorError):
    """A frame to score lacks feature columns the model was trained on."""


# ---- the model -----------------------------------------------------------------------------
@dataclass
class TrainedModel:
    """A fitted pipeline and what scoring needs to know about its inputs (saved as skops in the registry)."""

    dataset: str
    kind: str
    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]  # per categorical column: the values seen in training
    pipeline: Pipeline

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


@dataclass
class ScoringReport:
    """What scoring met that training did not: unseen categories and unreadable numbers, per column.

    >>> r = ScoringReport(n=3, unseen={"purpose": {"boat": 2}}, invalid_numeric={"income": 1})
    >>> r.unseen_total, r.summary()
    (2, '3 records scored; unseen categories: purpose: 2 (boat: 2); non-numeric values read as missing: income: 1')
    """

    n: int = 0
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)
    invalid_numeric: dict[str, int] = field(default_factory=dict)

    @property
    def unseen_total(self) -> int:
        return sum(sum(v.values()) for v in self.unseen.values())

    def to_dict(self) -> dict:
        return {"n": self.n, "unseen": self.unseen, "unseen_total": self.unseen_total,
                "invalid_numeric": self.invalid_numeric}

    def summary(self, max_values: int = 5) -> str:
        parts = [f"{self.n} records scored"]
        if self.unseen:
            cols = []
            for col, values in self.unseen.items():
                top = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:max_values]
                more = "" if len(values) <= max_values else f", +{len(values) - max_values} more"
                cols.append(f"{col}: {sum(values.values())} ({', '.join(f'{v}: {c}' for v, c in top)}{more})")
            parts.append("unseen categories: " + "; ".join(cols))
        else:
            parts.append("no unseen categories")
        if self.invalid_numeric:
            parts.append("non-numeric values read as missing: "
                         + ", ".join(f"{c}: {k}" for c, k in self.invalid_numeric.items()))
        return "; ".join(parts)


def _category_text(value: Any) -> Any:
    """A category as text (``3.0`` -> ``"3"``, so a CSV's numbers match training's strings); missing -> NaN."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return np.nan
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def prepare(frame: pd.DataFrame, numeric: list[str], categorical: list[str],
            report: ScoringReport | None = None) -> pd.DataFrame:
    """The model's input: numeric columns as float (unreadable -> NaN), categorical as object text (missing -> NaN).

    >>> prepare(pd.DataFrame({"a": ["1", "x", None], "c": [1.0, None, "b"]}), ["a"], ["c"]).to_dict("list")
    {'a': [1.0, nan, nan], 'c': ['1', nan, 'b']}
    """
    missing = [c for c in (*numeric, *categorical) if c not in frame.columns]
    if missing:
        raise MissingFeatures(f"missing feature columns: {', '.join(missing)} "
                              f"(the model needs {len(numeric) + len(categorical)} features)")
    out = {}
    for col in numeric:
        raw = frame[col]
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        if report is not None:
            bad = int((values.isna() & raw.notna()).sum())
            if bad:
                report.invalid_numeric[col] = bad
        out[col] = values.to_numpy()
    for col in categorical:
        out[col] = np.array([_category_text(v) for v in frame[col].tolist()], dtype=object)
    return pd.DataFrame(out, index=frame.index)


def build_pipeline(kind: str, numeric: list[str], categorical: list[str]) -> Pipeline:
    """The unfitted pipeline of a model kind (see the module docstring)."""
    if kind == "default":
        pre = ColumnTransformer([
            ("num", Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)),
                              ("scale", StandardScaler())]), numeric),
            ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                              ("onehot", OneHotEncoder(handle_unknown="ignore"))]), categorical),
        ])
        clf = LogisticRegression(C=0.1, max_iter=5000, random_state=SEED)
        return Pipeline([("prepare", pre), ("model", clf)])
    if kind == "enhanced":
        pre = ColumnTransformer([
            ("num", "passthrough", numeric),
            ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                   encoded_missing_value=np.nan), categorical),
        ])
        mask = [False] * len(numeric) + [True] * len(categorical)
        clf = HistGradientBoostingClassifier(
            learning_rate=0.05, max_iter=100, max_depth=3, min_samples_leaf=50, l2_regularization=1.0,
            categorical_features=mask if categorical else None, early_stopping=False, random_state=SEED)
        return Pipeline([("prepare", pre), ("model", clf)])
    raise MonitorError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")


# ---- split and metrics ------------------------------------------------------------------------
def split_indices(frame: pd.DataFrame, card) -> tuple[dict[str, np.ndarray], dict]:
    """Row positions of ``train``, ``test`` and (time split with 3+ months) ``oot``, and how they were made.

    >>> f = pd.DataFrame({"REF_DATE": ["2024-01-02", "2024-02-02", "2024-03-02", "2024-01-09"], "TARGET": [0, 1, 0, 1]})
    >>> class C: dates_from_data = True
    >>> parts, how = split_indices(f, C())
    >>> {k: v.tolist() for k, v in parts.items()}, how["method"]
    ({'train': [0, 3], 'test': [1], 'oot': [2]}, 'time')
    """
    months = frame["REF_DATE"].astype(str).str.slice(0, 7).to_numpy()
    distinct = sorted(set(months))
    if getattr(card, "dates_from_data", False) and len(distinct) >= 2:
        if len(distinct) >= 3:
            plan = {"train": distinct[:-2], "test": [distinct[-2]], "oot": [distinct[-1]]}
        else:
            plan = {"train": distinct[:1], "test": distinct[1:]}
        parts = {k: np.flatnonzero(np.isin(months, v)) for k, v in plan.items()}
        return parts, {"method": "time", **{f"{k}_months": v for k, v in plan.items()}}
    y = frame["TARGET"].to_numpy()
    train, test = train_test_split(np.arange(len(frame)), test_size=TEST_SIZE, stratify=y, random_state=SEED)
    return ({"train": np.sort(train), "test": np.sort(test)},
            {"method": "stratified", "test_size": TEST_SIZE, "seed": SEED})


def evaluate(y: np.ndarray, scores: np.ndarray) -> dict:
    """n, bads, bad rate, AUC (sklearn, raw scores), Gini = 2 AUC - 1 and KS = max(TPR - FPR).

    >>> evaluate(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
    {'n': 4, 'bads': 2, 'bad_rate': 0.5, 'auc': 0.75, 'gini': 0.5, 'ks': 0.5}
    """
    y = np.asarray(y).astype(int)
    out: dict[str, Any] = {"n": int(len(y)), "bads": int(y.sum()), "bad_rate": float(y.mean()) if len(y) else None}
    if 0 < y.sum() < len(y):
        auc = float(roc_auc_score(y, scores))
        fpr, tpr, _ = roc_curve(y, scores)
        out.update(auc=auc, gini=2.0 * auc - 1.0, ks=float(np.max(tpr - fpr)))
    else:
        out.update(auc=None, gini=None, ks=None)
    return out


# ---- scoring ---------------------------------------------------------------------------------
def score_frame(model: TrainedModel, frame: pd.DataFrame) -> tuple[np.ndarray, ScoringReport]:
    """Probabilities of bad for every row, and what was unseen. MissingFeatures if a column is absent.

    Extra columns are ignored; an unseen category is counted and scored as the encoder treats it
    (one-hot: all zeros; gradient boosting: missing).
    """
    report = ScoringReport(n=len(frame))
    X = prepare(frame, model.numeric, model.categorical, report)
    for col in model.categorical:
        seen = set(model.categories.get(col, ()))
        values = X[col].to_numpy()
        present = pd.notna(values)
        unseen = Counter(v for v in values[present] if v not in seen)
        if unseen:
            report.unseen[col] = dict(sorted(unseen.items()))
    if len(frame) == 0:
        return np.empty(0, dtype=float), report
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unknown categor.*")
        scores = model.pipeline.predict_proba(X)[:, 1]
    return np.clip(scores.astype(float), 0.0, 1.0), report


# ---- training --------------------------------------------------------------------------------
def fit(dataset: str, kind: str) -> tuple[TrainedModel, dict]:
    """Fit a model on the dataset's train split; the card fields: split, metrics, reference, timing."""
    from datasets import load
    from monitor.ops.reference import reference_card
    from monitor.settings import get_settings
    from monitor.stats import FeatureProfile

    if kind not in MODEL_KINDS:
        raise MonitorError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    started = time.perf_counter()
    frame, dcard = load(dataset)
    numeric, categorical = list(dcard.numeric_features), list(dcard.categorical_features)
    parts, how = split_indices(frame, dcard)
    X = prepare(frame, numeric, categorical)
    y = frame["TARGET"].to_numpy(dtype=int)
    train = parts["train"]
    pipeline = build_pipeline(kind, numeric, categorical)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        pipeline.fit(X.iloc[train], y[train])
    categories = {c: sorted({v for v in X[c].to_numpy()[train] if pd.notna(v)}) for c in categorical}
    model = TrainedModel(dataset=dataset, kind=kind, numeric=numeric, categorical=categorical,
                         categories=categories, pipeline=pipeline)
    metrics: dict[str, dict | None] = {}
    scores_by_part = {}
    for part, idx in parts.items():
        scores, _ = score_frame(model, frame.iloc[idx])
        metrics[part] = evaluate(y[idx], scores)
        scores_by_part[part] = scores
    metrics.setdefault("oot", None)
    test_scores = scores_by_part["test"]  # split_indices always makes a test part
    resolution = get_settings().resolution
    hist, ref = reference_card(test_scores, y[parts["test"]], resolution, "test split")
    ref.pop("loaded_at", None)
    fields = {
        "dataset": dataset, "kind": kind,
        "estimator": type(pipeline.named_steps["model"]).__name__,
        "dataset_card": {"source": f"{dcard.source_package}: {dcard.source_dataset}", "rows": dcard.rows,
                         "bad_rate": dcard.bad_rate, "months": dcard.months,
                         "dates_from_data": dcard.dates_from_data},
        "target": dcard.target_definition,
        "features": {"numeric": numeric, "categorical": categorical},
        "split": {**how, **{f"n_{k}": int(len(v)) for k, v in parts.items()}},
        "metrics": metrics,
        # The raw test scores too: the classic adherence compares raw scores with them (issue 19).
        "reference": {**ref, "histogram": hist.to_dict(), "scores": [float(s) for s in test_scores],
                      "feature_profile": FeatureProfile.from_frame(frame.iloc[parts["test"]][numeric + categorical]).to_dict()},
        "training_seconds": round(time.perf_counter() - started, 3),
    }
    return model, fields


def train(dataset: str, kind: str = "default", name: str | None = None, registry=None):
    """Fit, evaluate and register a model (version = the name's next integer); returns its card.

    The default name is ``<dataset>_<kind>``, e.g. ``lendingclub_default``.
    """
    from models.registry import Registry

    registry = registry if registry is not None else Registry()
    name = Registry.check_name(name or f"{dataset}_{kind}")
    model, fields = fit(dataset, kind)
    return registry.register(name, model, fields)
