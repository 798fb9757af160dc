"""Feature values: the constants of the bucket conventions and how a live value reads as a number or a
category (see :mod:`monitor.stats.features`)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import pandas as pd

from monitor.errors import StatsError

NUMERIC = "numeric"
CATEGORICAL = "categorical"
OTHER = "__other__"
MISSING_FIELD = "missing"
DEFAULT_BUCKETS = 10
DEFAULT_MAX_CATEGORIES = 100
MAX_UNSEEN_LISTED = 20
NON_FEATURE_COLUMNS = frozenset({"REF_DATE", "ref_date", "TARGET", "target", "score", "record_id"})


# --- value conversion -------------------------------------------------------------------


def _non_scalar(value) -> bool:
    return isinstance(value, (list, tuple, dict, set, frozenset, Mapping)) or (
        isinstance(value, np.ndarray) and value.ndim > 0
    )


def _as_number(value) -> float:
    """The float a live numeric value stands for; NaN when it is missing (see module doc)."""
    if value is None:
        return math.nan
    if isinstance(value, float):
        return value
    if isinstance(value, np.ndarray):
        if value.ndim > 0:
            return math.nan
        value = value.item()
    if _non_scalar(value) or isinstance(value, (complex, np.complexfloating)) or value is pd.NA:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _category_text(value) -> str | None:
    """The category text of a live categorical value; None when it is missing."""
    if isinstance(value, str):
        return value if type(value) is str else str(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.ndarray):
        if value.ndim > 0:
            return None
        value = value.item()
    if _non_scalar(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _numbers(values) -> np.ndarray:
    """Vectorised :func:`_as_number` (same result element by element)."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        arr = None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    return np.fromiter((_as_number(v) for v in _as_list(values)), dtype=np.float64)


def _as_list(values) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _count(value, what: str) -> int:
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()
    )
    if isinstance(value, (bool, np.bool_)) or not integral:
        raise StatsError(f"{what} must be a non-negative integer, got {value!r}")
    value = int(value)
    if value < 0:
        raise StatsError(f"{what} must be a non-negative integer, got {value!r}")
    return value
