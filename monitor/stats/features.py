"""Feature drift against a reference profile: bucket counts, PSI, KS and chi-square per feature.

A :class:`FeatureProfile` describes the model's reference sample (its test set, from the
model registry) feature by feature, as plain integer counts; a :class:`FeatureCounter`
counts live records into the same buckets (river style, mergeable, Redis-ready); and
:func:`feature_drift` compares the two.

Conventions (all exact, integer counts):

* **Numeric** features are cut at the reference's quantiles: ``edges`` are the interior
  cut points ``np.quantile(values, k / buckets, method="inverted_cdf")`` for
  k = 1 .. buckets - 1, duplicates collapsed and an edge at the reference's maximum
  dropped, so every bucket holds reference mass (heavy ties give fewer buckets). Bucket
  ``i`` holds the values in ``(edges[i-1], edges[i]]`` (with edges[-1] = -inf and
  edges[len] = +inf), i.e. ``np.searchsorted(edges, x, side="left")``; ``counts`` has
  ``len(edges) + 1`` entries. +-inf are values (end buckets); None, NaN, pd.NA, a
  string that is not a number and any non-scalar (list, dict, array...) are *missing*.
* **Categorical** features (object, string, category and bool columns) count each
  category by its text (``str(value)``; a bool is ``"True"``/``"False"``); None, NaN,
  pd.NA and non-scalars are missing. The reference keeps its ``max_categories`` most
  frequent categories (ties by name) and lumps the rest as ``"__other__"``. Live
  categories absent from the reference are *unseen* and keep their own name, at most
  ``max_categories`` distinct unseen names per feature: the alphabetically first ones
  (a rule that does not depend on arrival order, so merging stays exact); the others
  count under ``"__other__"``, also unseen. If the reference itself has ``"__other__"``,
  every live category absent from it counts there, as the reference did (not unseen).
  In Redis, where batches merge, the batch script keeps the first ``MONITOR_MAX_UNSEEN_CATEGORIES``
  unseen names of a feature and month to arrive and counts later new ones under ``"__other__"``
  (see :meth:`FeatureCounter.split_redis_fields`): the names kept then depend on arrival order,
  the counts (total, unseen, missing, reference categories) do not.
* A profile feature absent from a live record counts as missing; a record's feature that
  is not in the profile is ignored. Missing values are left out of PSI, KS and chi-square
  and reported as ``missing_share``.
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import ClassVar, Union

import numpy as np
import pandas as pd
from scipy import special

from monitor.errors import StatsError
from monitor.stats._kstwo import kstwo_sf
from monitor.stats.psi import DEFAULT_EPSILON

NUMERIC = "numeric"
CATEGORICAL = "categorical"
OTHER = "__other__"
MISSING_FIELD = "missing"
DEFAULT_BUCKETS = 10
DEFAULT_MAX_CATEGORIES = 100
MAX_UNSEEN_LISTED = 20
NON_FEATURE_COLUMNS = frozenset({"REF_DATE", "ref_date", "TARGET", "target", "score", "record_id"})
_ESCAPE = "~"  # Redis field escape for categories named "missing" or starting with "~"
UNSEEN_NAMES_PART = "~unseen"
"""Bucket part of the Redis field ``<feature>|~unseen``: how many unseen names the month's hash holds
(kept by the batch script, which folds later new names into ``__other__``). Never a category: an
escaped category starting with ``~`` is ``~missing`` or starts with ``~~``."""


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


def _escape(category: str) -> str:
    return _ESCAPE + category if category == MISSING_FIELD or category.startswith(_ESCAPE) else category


def _unescape(part: str) -> str:
    return part[1:] if part.startswith(_ESCAPE) else part


# --- reference profile ------------------------------------------------------------------


@dataclass(frozen=True)
class NumericReference:
    """Reference counts of one numeric feature: bucket ``i`` is ``(edges[i-1], edges[i]]``.

    Exact integer counts; ``edges`` are finite and strictly increasing.

    >>> r = NumericReference(edges=(1.0, 2.0), counts=(3, 2, 1), missing=1)
    >>> r.n, r.to_dict()
    (7, {'kind': 'numeric', 'edges': [1.0, 2.0], 'counts': [3, 2, 1], 'missing': 1})
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]
    missing: int = 0
    kind: ClassVar[str] = NUMERIC

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        counts = tuple(_count(c, "a bucket count") for c in self.counts)
        if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
            raise StatsError(f"edges must be finite and strictly increasing, got {list(edges)[:5]}...")
        if len(counts) != len(edges) + 1:
            raise StatsError(f"{len(edges)} edges need {len(edges) + 1} counts, got {len(counts)}")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "missing", _count(self.missing, "missing"))

    @property
    def n(self) -> int:
        """Reference records, missing included (exact).

        >>> NumericReference((), (4,), 1).n
        5
        """
        return sum(self.counts) + self.missing

    def to_dict(self) -> dict:
        """Plain JSON types; exact round trip with :meth:`from_dict` (floats keep their repr).

        >>> NumericReference((0.5,), (1, 1)).to_dict()["edges"]
        [0.5]
        """
        return {"kind": NUMERIC, "edges": list(self.edges), "counts": list(self.counts), "missing": self.missing}

    @classmethod
    def from_dict(cls, state: Mapping) -> NumericReference:
        """Rebuild from :meth:`to_dict` output; exact.

        >>> r = NumericReference((0.5,), (1, 2), 3); NumericReference.from_dict(r.to_dict()) == r
        True
        """
        return cls(tuple(state["edges"]), tuple(state["counts"]), state.get("missing", 0))


@dataclass(frozen=True)
class CategoricalReference:
    """Reference counts of one categorical feature, ``(category, count)`` pairs sorted by category.

    Exact integer counts; built from a mapping or from pairs.

    >>> r = CategoricalReference({"b": 2, "a": 1}, missing=1)
    >>> r.counts, r.n, r.to_dict()["counts"]
    ((('a', 1), ('b', 2)), 4, {'a': 1, 'b': 2})
    """

    counts: tuple[tuple[str, int], ...]
    missing: int = 0
    kind: ClassVar[str] = CATEGORICAL

    def __post_init__(self) -> None:
        pairs = self.counts.items() if isinstance(self.counts, Mapping) else self.counts
        pairs = tuple(sorted((str(k), _count(c, "a category count")) for k, c in pairs))
        if len({k for k, _ in pairs}) != len(pairs):
            raise StatsError("a categorical reference lists a category twice")
        object.__setattr__(self, "counts", pairs)
        object.__setattr__(self, "missing", _count(self.missing, "missing"))

    @property
    def n(self) -> int:
        """Reference records, missing included (exact).

        >>> CategoricalReference({"a": 2}, 1).n
        3
        """
        return sum(c for _, c in self.counts) + self.missing

    def as_mapping(self) -> dict[str, int]:
        """The counts as a new dict category -> count (exact copy).

        >>> CategoricalReference({"x": 1}).as_mapping()
        {'x': 1}
        """
        return dict(self.counts)

    def to_dict(self) -> dict:
        """Plain JSON types; exact round trip with :meth:`from_dict`.

        >>> CategoricalReference({"x": 1}).to_dict()
        {'kind': 'categorical', 'counts': {'x': 1}, 'missing': 0}
        """
        return {"kind": CATEGORICAL, "counts": dict(self.counts), "missing": self.missing}

    @classmethod
    def from_dict(cls, state: Mapping) -> CategoricalReference:
        """Rebuild from :meth:`to_dict` output; exact.

        >>> r = CategoricalReference({"x": 1}, 2); CategoricalReference.from_dict(r.to_dict()) == r
        True
        """
        return cls(dict(state["counts"]), state.get("missing", 0))


Reference = Union[NumericReference, CategoricalReference]


def _quantile_edges(values: np.ndarray, buckets: int) -> np.ndarray:
    """Interior cut points: inverted-CDF quantiles k / buckets, unique, below the maximum, finite."""
    v = np.sort(values)
    n = v.size
    if n == 0 or buckets < 2:
        return np.empty(0, dtype=np.float64)
    k = np.arange(1, buckets, dtype=np.int64)
    idx = (k * n + buckets - 1) // buckets - 1  # ceil(k n / B) - 1: first ECDF >= k / B (integers)
    edges = np.unique(v[idx])
    return edges[(edges < v[-1]) & np.isfinite(edges)]


def _numeric_reference(values: np.ndarray, buckets: int) -> NumericReference:
    present = ~np.isnan(values)
    x = values[present]
    edges = _quantile_edges(x, buckets)
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
    return NumericReference(tuple(edges.tolist()), tuple(counts.tolist()), int((~present).sum()))


def _categorical_reference(values: Iterable, max_categories: int) -> CategoricalReference:
    texts = Counter(map(_category_text, values))
    missing = texts.pop(None, 0)
    ranked = sorted(texts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) > max_categories:
        kept, rest = ranked[:max_categories], ranked[max_categories:]
        lumped = Counter(dict(kept))
        lumped[OTHER] += sum(c for _, c in rest)
        texts = lumped
    return CategoricalReference(dict(texts), missing)


def _reference_from_dict(state: Mapping) -> Reference:
    kind = state.get("kind")
    if kind == NUMERIC:
        return NumericReference.from_dict(state)
    if kind == CATEGORICAL:
        return CategoricalReference.from_dict(state)
    raise StatsError(f"feature kind must be {NUMERIC!r} or {CATEGORICAL!r}, got {kind!r}")


@dataclass(frozen=True)
class FeatureProfile:
    """Reference bucket counts of every monitored feature of one model (see the module doc).

    Built with :meth:`from_frame`, :meth:`from_dict`, or from a mapping / pairs
    feature -> :class:`NumericReference` | :class:`CategoricalReference`. Exact integer
    counts, plain JSON state (``to_dict``/``from_dict``, exact round trip).

    >>> frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", None], "TARGET": [0, 1, 0, 1]})
    >>> p = FeatureProfile.from_frame(frame, buckets=2)
    >>> p.features, p.kind("x"), p.kind("c")
    (('x', 'c'), 'numeric', 'categorical')
    >>> p.to_dict()
    {'x': {'kind': 'numeric', 'edges': [2.0], 'counts': [2, 2], 'missing': 0}, 'c': {'kind': 'categorical', 'counts': {'a': 2, 'b': 1}, 'missing': 1}}
    """

    references: tuple[tuple[str, Reference], ...]
    _index: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        pairs = self.references.items() if isinstance(self.references, Mapping) else self.references
        pairs = tuple((str(name), ref) for name, ref in pairs)
        index = {}
        for name, ref in pairs:
            if "|" in name:
                raise StatsError(f"feature names cannot contain '|' (Redis field separator): {name!r}")
            if name in index:
                raise StatsError(f"feature {name!r} appears twice in the profile")
            if not isinstance(ref, (NumericReference, CategoricalReference)):
                raise StatsError(f"feature {name!r}: expected a NumericReference or CategoricalReference")
            index[name] = ref
        object.__setattr__(self, "references", pairs)
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        features: list[str] | None = None,
        buckets: int = DEFAULT_BUCKETS,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
    ) -> FeatureProfile:
        """Profile of a reference frame: numeric dtypes by quantile buckets, the rest by category.

        Bool columns are categorical ("True"/"False"). ``features`` defaults to every column
        but REF_DATE/ref_date/TARGET/target/score/record_id. Exact: the edges are order
        statistics of the values themselves, found with integer arithmetic.

        >>> p = FeatureProfile.from_frame(pd.DataFrame({"x": range(10), "ok": [True] * 9 + [False]}), buckets=5)
        >>> p.reference("x").edges, p.reference("x").counts, p.reference("ok").counts
        ((1.0, 3.0, 5.0, 7.0), (2, 2, 2, 2, 2), (('False', 1), ('True', 9)))
        """
        if not isinstance(frame, pd.DataFrame):
            raise StatsError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        buckets = _count(buckets, "buckets")
        max_categories = _count(max_categories, "max_categories")
        if buckets < 1:
            raise StatsError("buckets must be at least 1")
        if features is None:
            features = [c for c in frame.columns if c not in NON_FEATURE_COLUMNS]
        else:
            absent = [f for f in features if f not in frame.columns]
            if absent:
                raise StatsError(f"features {absent} are not columns of the frame")
        refs = []
        for name in features:
            column = frame[name]
            dtype = column.dtype
            if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype) and not (
                pd.api.types.is_complex_dtype(dtype)
            ):
                values = column.to_numpy(dtype=np.float64, na_value=np.nan)
                refs.append((str(name), _numeric_reference(values, buckets)))
            else:
                refs.append((str(name), _categorical_reference(column.tolist(), max_categories)))
        return cls(tuple(refs))

    @property
    def features(self) -> tuple[str, ...]:
        """Feature names, in profile order (exact).

        >>> FeatureProfile({"a": CategoricalReference({})}).features
        ('a',)
        """
        return tuple(name for name, _ in self.references)

    def reference(self, name: str) -> Reference:
        """The reference counts of one feature; StatsError if the profile lacks it. Exact.

        >>> FeatureProfile({"a": NumericReference((), (3,))}).reference("a").counts
        (3,)
        """
        try:
            return self._index[name]
        except KeyError:
            raise StatsError(f"feature {name!r} is not in the profile {list(self._index)}") from None

    def kind(self, name: str) -> str:
        """``"numeric"`` or ``"categorical"``; StatsError if the profile lacks the feature. Exact.

        >>> FeatureProfile({"a": NumericReference((), (3,))}).kind("a")
        'numeric'
        """
        return self.reference(name).kind

    def __contains__(self, name) -> bool:
        """Whether the profile has this feature (exact).

        >>> "a" in FeatureProfile({"a": NumericReference((), (3,))})
        True
        """
        return name in self._index

    def to_dict(self) -> dict:
        """``{feature: {"kind": ..., ...}}`` in plain JSON types; exact round trip with :meth:`from_dict`.

        >>> FeatureProfile({"a": NumericReference((1.5,), (2, 1))}).to_dict()
        {'a': {'kind': 'numeric', 'edges': [1.5], 'counts': [2, 1], 'missing': 0}}
        """
        return {name: ref.to_dict() for name, ref in self.references}

    @classmethod
    def from_dict(cls, state: Mapping) -> FeatureProfile:
        """Rebuild from :meth:`to_dict` output (e.g. after JSON); exact.

        >>> p = FeatureProfile({"a": NumericReference((1.5,), (2, 1)), "b": CategoricalReference({"x": 1})})
        >>> FeatureProfile.from_dict(p.to_dict()) == p
        True
        """
        if not isinstance(state, Mapping):
            raise StatsError(f"a profile state is a mapping feature -> counts, got {type(state).__name__}")
        return cls(tuple((name, _reference_from_dict(spec)) for name, spec in state.items()))


# --- live counts ------------------------------------------------------------------------


class FeatureCounter:
    """Live counts of every profile feature in the profile's buckets (river style).

    ``update(record_features)``, ``update_many(columns)``, ``+=``; exact integer counts
    that merge exactly (associative and commutative, see the module doc for the unseen
    category cap). Stored in Redis as ``"<feature>|<bucket>"`` fields (:meth:`to_redis_fields`).

    >>> p = FeatureProfile({"x": NumericReference((1.0, 2.0), (1, 1, 1)), "c": CategoricalReference({"a": 3})})
    >>> c = FeatureCounter(p)
    >>> c.update({"x": 1.0, "c": "a"}); c.update({"x": 2.5, "c": "new"}); c.update({"x": None})
    >>> c.counts("x"), c.missing("x"), c.counts("c"), c.missing("c")
    ([1, 0, 1], 1, {'a': 1, 'new': 1}, 1)
    """

    __hash__ = None  # mutable

    def __init__(self, profile: FeatureProfile, max_categories: int = DEFAULT_MAX_CATEGORIES):
        if not isinstance(profile, FeatureProfile):
            raise StatsError(f"a FeatureCounter needs a FeatureProfile, got {type(profile).__name__}")
        self.profile = profile
        self.max_categories = _count(max_categories, "max_categories")
        self._numeric: dict[str, tuple[list[float], np.ndarray]] = {}
        self._categorical: dict[str, tuple[frozenset, bool]] = {}
        self._counts: dict[str, list[int] | dict[str, int]] = {}
        self._missing: dict[str, int] = {}
        for name, ref in profile.references:
            if ref.kind == NUMERIC:
                self._numeric[name] = (list(ref.edges), np.asarray(ref.edges, dtype=np.float64))
                self._counts[name] = [0] * (len(ref.edges) + 1)
            else:
                categories = frozenset(k for k, _ in ref.counts)
                self._categorical[name] = (categories, OTHER in categories)
                self._counts[name] = {}
            self._missing[name] = 0

    # --- counting -----------------------------------------------------------------------

    def _add_category(self, name: str, text: str, count: int) -> None:
        counts = self._counts[name]
        if text in counts:
            counts[text] += count
            return
        known, lumps_others = self._categorical[name]
        if text in known:
            counts[text] = count
        elif lumps_others or text == OTHER:
            counts[OTHER] = counts.get(OTHER, 0) + count
        else:
            counts[text] = count
            self._fold(name)

    def _fold(self, name: str) -> None:
        """Keep the alphabetically first ``max_categories`` unseen names, lump the rest as OTHER."""
        counts = self._counts[name]
        known = self._categorical[name][0]
        unseen = [k for k in counts if k not in known and k != OTHER]
        if len(unseen) > self.max_categories:
            for k in sorted(unseen)[self.max_categories:]:
                counts[OTHER] = counts.get(OTHER, 0) + counts.pop(k)

    def update(self, features: Mapping) -> None:
        """Count one record's features; exact (each value lands in exactly one bucket).

        A profile feature absent from ``features`` counts as missing, a feature not in
        the profile is ignored.

        >>> c = FeatureCounter(FeatureProfile({"x": NumericReference((0.0,), (1, 1))}))
        >>> c.update({"x": 0.0, "other": 1}); c.update({"x": [1, 2]}); c.counts("x"), c.missing("x")
        ([1, 0], 1)
        """
        if not isinstance(features, Mapping):
            raise StatsError(f"update takes a mapping feature -> value, got {type(features).__name__}")
        for name, (edges, _) in self._numeric.items():
            x = _as_number(features.get(name))
            if math.isnan(x):
                self._missing[name] += 1
            else:
                self._counts[name][bisect_left(edges, x)] += 1
        for name in self._categorical:
            text = _category_text(features.get(name))
            if text is None:
                self._missing[name] += 1
            else:
                self._add_category(name, text, 1)

    def update_many(self, values_by_feature: Mapping[str, Iterable]) -> None:
        """Count a batch given as columns ``{feature: values}`` of one common length (numpy for numeric).

        Exactly the same counts as calling :meth:`update` on each row; a profile feature
        without a column counts every row as missing. StatsError if the lengths differ.

        >>> c = FeatureCounter(FeatureProfile({"x": NumericReference((0.0,), (1, 1)), "c": CategoricalReference({"a": 1})}))
        >>> c.update_many({"x": [-1.0, 0.5, float("nan")]}); c.counts("x"), c.missing("x"), c.missing("c")
        ([1, 1], 1, 3)
        """
        if not isinstance(values_by_feature, Mapping):
            raise StatsError(f"update_many takes a mapping feature -> values, got {type(values_by_feature).__name__}")
        columns = {name: values if hasattr(values, "__len__") else list(values) for name, values in values_by_feature.items()}
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise StatsError(f"update_many columns must have one length, got {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        if n == 0:
            return
        for name, (_, edges) in self._numeric.items():
            if name not in columns:
                self._missing[name] += n
                continue
            x = _numbers(columns[name])
            present = ~np.isnan(x)
            buckets = np.bincount(np.searchsorted(edges, x[present], side="left"), minlength=edges.size + 1)
            counts = self._counts[name]
            for i, c in enumerate(buckets.tolist()):
                counts[i] += c
            self._missing[name] += int(n - present.sum())
        for name in self._categorical:
            if name not in columns:
                self._missing[name] += n
                continue
            texts = Counter(map(_category_text, _as_list(columns[name])))
            self._missing[name] += texts.pop(None, 0)
            for text, c in texts.items():
                self._add_category(name, text, c)

    # --- reading ------------------------------------------------------------------------

    def _check_feature(self, name: str) -> None:
        if name not in self._counts:
            raise StatsError(f"feature {name!r} is not in the profile {list(self._counts)}")

    def counts(self, feature: str) -> list[int] | dict[str, int]:
        """A copy of one feature's counts: a list per bucket (numeric) or a dict per category. Exact.

        >>> c = FeatureCounter(FeatureProfile({"x": NumericReference((), (1,))})); c.update({"x": 3}); c.counts("x")
        [1]
        """
        self._check_feature(feature)
        counts = self._counts[feature]
        return list(counts) if isinstance(counts, list) else dict(counts)

    def missing(self, feature: str) -> int:
        """Live records where the feature was missing (exact).

        >>> c = FeatureCounter(FeatureProfile({"x": NumericReference((), (1,))})); c.update({}); c.missing("x")
        1
        """
        self._check_feature(feature)
        return self._missing[feature]

    def total(self, feature: str) -> int:
        """Live records counted for the feature, missing included (exact).

        >>> c = FeatureCounter(FeatureProfile({"x": NumericReference((), (1,))})); c.update({}); c.total("x")
        1
        """
        self._check_feature(feature)
        counts = self._counts[feature]
        return sum(counts if isinstance(counts, list) else counts.values()) + self._missing[feature]

    def copy(self) -> FeatureCounter:
        """An independent copy (exact).

        >>> c = FeatureCounter(FeatureProfile({"x": NumericReference((), (1,))})); d = c.copy(); d.update({})
        >>> c.total("x"), d.total("x")
        (0, 1)
        """
        new = type(self)(self.profile, self.max_categories)
        new._counts = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in self._counts.items()}
        new._missing = dict(self._missing)
        return new

    def __repr__(self) -> str:
        return f"FeatureCounter(features={list(self._counts)}, max_categories={self.max_categories})"

    # --- algebra ------------------------------------------------------------------------

    def _check_same(self, other) -> None:
        if not isinstance(other, FeatureCounter):
            raise StatsError(f"cannot combine a FeatureCounter with {type(other).__name__}")
        if other.profile != self.profile or other.max_categories != self.max_categories:
            raise StatsError("feature counters of different profiles or max_categories cannot be combined")

    def __iadd__(self, other: FeatureCounter) -> FeatureCounter:
        """Merge another counter (same profile and max_categories) into this one; exact.

        >>> p = FeatureProfile({"c": CategoricalReference({"a": 1})})
        >>> a = FeatureCounter(p); a.update({"c": "a"}); b = FeatureCounter(p); b.update({"c": "z"})
        >>> a += b; a.counts("c")
        {'a': 1, 'z': 1}
        """
        self._check_same(other)
        for name, theirs in other._counts.items():
            if isinstance(theirs, list):
                mine = self._counts[name]
                for i, c in enumerate(theirs):
                    mine[i] += c
            else:
                for text, c in theirs.items():
                    self._add_category(name, text, c)
            self._missing[name] += other._missing[name]
        return self

    def __add__(self, other: FeatureCounter) -> FeatureCounter:
        """The merge of two counters as a new one; exact.

        >>> p = FeatureProfile({"x": NumericReference((), (1,))})
        >>> a = FeatureCounter(p); a.update({"x": 1}); (a + a).counts("x")
        [2]
        """
        result = self.copy()
        result += other
        return result

    def __eq__(self, other) -> bool:
        """Same profile, same cap and the same counts (zero counts ignored); exact comparison.

        >>> p = FeatureProfile({"x": NumericReference((), (1,))})
        >>> FeatureCounter(p) == FeatureCounter(p)
        True
        """
        if not isinstance(other, FeatureCounter):
            return NotImplemented
        return (
            self.profile == other.profile
            and self.max_categories == other.max_categories
            and self.to_redis_fields() == other.to_redis_fields()
        )

    # --- serialisation ------------------------------------------------------------------

    def to_redis_fields(self) -> dict[str, int]:
        """Redis hash fields ``"<feature>|<bucket>"`` -> count, zero counts left out; exact round trip.

        ``<bucket>`` is the numeric bucket index in decimal, ``missing``, or the category
        text; a category named ``missing`` or starting with ``~`` is written with one more
        leading ``~`` so that fields never collide.

        >>> p = FeatureProfile({"x": NumericReference((0.0,), (1, 1)), "c": CategoricalReference({"a": 1})})
        >>> c = FeatureCounter(p); c.update({"x": 2.0, "c": "missing"}); c.update({"x": None, "c": "a"})
        >>> c.to_redis_fields()
        {'x|1': 1, 'x|missing': 1, 'c|a': 1, 'c|~missing': 1}
        """
        fields_: dict[str, int] = {}
        for name, counts in self._counts.items():
            if isinstance(counts, list):
                for i, c in enumerate(counts):
                    if c:
                        fields_[f"{name}|{i}"] = c
                if self._missing[name]:
                    fields_[f"{name}|{MISSING_FIELD}"] = self._missing[name]
            else:
                if self._missing[name]:
                    fields_[f"{name}|{MISSING_FIELD}"] = self._missing[name]
                for text in sorted(counts):
                    if counts[text]:
                        fields_[f"{name}|{_escape(text)}"] = counts[text]
        return fields_

    def split_redis_fields(self) -> tuple[dict[str, int], dict[str, int]]:
        """:meth:`to_redis_fields` in two parts: the fields of buckets the profile fixes (numeric
        buckets, missing, reference categories, ``__other__``) and those of unseen category names,
        which the batch script caps per feature and month.

        >>> p = FeatureProfile({"c": CategoricalReference({"a": 1})})
        >>> c = FeatureCounter(p); c.update({"c": "a"}); c.update({"c": "new"}); c.update({})
        >>> c.split_redis_fields()
        ({'c|missing': 1, 'c|a': 1}, {'c|new': 1})
        """
        fixed: dict[str, int] = {}
        unseen: dict[str, int] = {}
        for name_part, count in self.to_redis_fields().items():
            name, _, part = name_part.partition("|")
            categories = self._categorical.get(name)
            is_name = categories is not None and part != MISSING_FIELD and part != OTHER
            (unseen if is_name and _unescape(part) not in categories[0] else fixed)[name_part] = count
        return fixed, unseen

    @classmethod
    def from_redis_fields(
        cls,
        fields: Mapping[bytes | str, bytes | str | int],
        profile: FeatureProfile,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
    ) -> FeatureCounter:
        """Rebuild from a Redis hash (as HGETALL returns it, bytes or str); exact.

        Fields of features absent from the profile and the batch script's ``<feature>|~unseen``
        counters are ignored; a bucket index outside the
        profile's buckets, a field without ``|`` or a count that is not a non-negative
        integer raise StatsError. The unseen-category cap is applied again, so a hash
        accumulated from many batches reads as one counter of all their records.

        >>> p = FeatureProfile({"x": NumericReference((0.0,), (1, 1))})
        >>> FeatureCounter.from_redis_fields({b"x|1": b"4", b"x|missing": b"2", b"gone|0": b"1"}, p).counts("x")
        [0, 4]
        """
        counter = cls(profile, max_categories)
        for key, raw in fields.items():
            if isinstance(key, bytes):
                key = key.decode("utf-8")
            name, sep, part = str(key).partition("|")
            if not sep:
                raise StatsError(f"Redis feature field {key!r} has no '|'")
            try:
                count = int(raw) if isinstance(raw, (bytes, str)) else _count(raw, "a count")
            except (TypeError, ValueError, StatsError):
                raise StatsError(f"Redis feature field {key!r} holds {raw!r}, not an integer count") from None
            if count < 0:
                raise StatsError(f"Redis feature field {key!r} holds a negative count {count}")
            if name not in counter._counts or count == 0 or part == UNSEEN_NAMES_PART:
                continue
            if part == MISSING_FIELD:
                counter._missing[name] += count
            elif name in counter._numeric:
                buckets = counter._counts[name]
                if not (part.isascii() and part.isdigit() and int(part) < len(buckets)):
                    raise StatsError(f"Redis field {key!r}: bucket must be 0..{len(buckets) - 1} for this profile")
                buckets[int(part)] += count
            else:
                counter._add_category(name, _unescape(part), count)
        return counter

    def to_dict(self) -> dict:
        """Plain JSON state, the profile included; exact round trip with :meth:`from_dict`.

        >>> p = FeatureProfile({"x": NumericReference((), (1,))})
        >>> c = FeatureCounter(p); c.update({"x": 1}); c.to_dict()["features"]
        {'x': {'kind': 'numeric', 'counts': [1], 'missing': 0}}
        """
        return {
            "profile": self.profile.to_dict(),
            "max_categories": self.max_categories,
            "features": {
                name: {
                    "kind": NUMERIC if isinstance(counts, list) else CATEGORICAL,
                    "counts": list(counts) if isinstance(counts, list) else {k: counts[k] for k in sorted(counts)},
                    "missing": self._missing[name],
                }
                for name, counts in self._counts.items()
            },
        }

    @classmethod
    def from_dict(cls, state: Mapping) -> FeatureCounter:
        """Rebuild from :meth:`to_dict` output (e.g. after JSON); exact.

        >>> p = FeatureProfile({"c": CategoricalReference({"a": 1})})
        >>> c = FeatureCounter(p); c.update({"c": "b"}); FeatureCounter.from_dict(c.to_dict()) == c
        True
        """
        counter = cls(FeatureProfile.from_dict(state["profile"]), state.get("max_categories", DEFAULT_MAX_CATEGORIES))
        for name, spec in state.get("features", {}).items():
            if name not in counter._counts:
                raise StatsError(f"counter state has feature {name!r} that its profile lacks")
            counts = spec["counts"]
            if name in counter._numeric:
                if isinstance(counts, Mapping) or len(counts) != len(counter._counts[name]):
                    raise StatsError(f"feature {name!r}: counts do not match the profile's buckets")
                counter._counts[name] = [_count(c, "a bucket count") for c in counts]
            else:
                if not isinstance(counts, Mapping):
                    raise StatsError(f"feature {name!r}: categorical counts must be a mapping")
                for text, c in counts.items():
                    c = _count(c, "a category count")
                    if c:
                        counter._add_category(name, str(text), c)
            counter._missing[name] = _count(spec.get("missing", 0), "missing")
        return counter


# --- drift ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature, live against reference; a statistic that does not apply or is undefined is None.

    ``n`` / ``reference_n`` count records with the feature missing included; PSI, KS and
    chi-square use the non-missing ones. ``ks_bound``: KS D on the raw values lies in
    [ks_d, ks_d + ks_bound] (exact bound). Plain JSON via :meth:`to_dict`.

    >>> FeatureDrift("x", "numeric", 0, 10, None).to_dict()["psi"] is None
    True
    """

    feature: str
    kind: str
    n: int
    reference_n: int
    psi: float | None
    ks_d: float | None = None
    ks_pvalue: float | None = None
    ks_bound: float | None = None
    chi2: float | None = None
    chi2_pvalue: float | None = None
    unseen: int | None = None
    unseen_categories: tuple[str, ...] | None = None
    missing_share: float | None = None
    reference_missing_share: float | None = None

    def to_dict(self) -> dict:
        """Plain JSON types (``unseen_categories`` as a list); exact copy of the fields.

        >>> FeatureDrift("c", "categorical", 1, 1, 0.0, unseen=0, unseen_categories=()).to_dict()["unseen_categories"]
        []
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["unseen_categories"] is not None:
            out["unseen_categories"] = list(out["unseen_categories"])
        return out


def _psi_of_counts(live: list[int], ref: list[int], epsilon: float) -> float | None:
    """PSI as :func:`monitor.stats.psi.psi` computes it: shares, empty buckets at ``epsilon``."""
    n_live, n_ref = sum(live), sum(ref)
    if n_live == 0 or n_ref == 0:
        return None
    l = np.asarray(live, dtype=np.float64) / n_live
    r = np.asarray(ref, dtype=np.float64) / n_ref
    l = np.where(l > 0, l, epsilon)
    r = np.where(r > 0, r, epsilon)
    return float(np.sum((l - r) * np.log(l / r)))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _numeric_drift(name, live: list[int], live_missing: int, ref: NumericReference, epsilon) -> FeatureDrift:
    n, m = sum(live), sum(ref.counts)
    ks_d = ks_pvalue = ks_bound = None
    if n and m:
        # n*m * (F_live - F_ref) at each bucket's upper edge, exact Python integers.
        cum_l = cum_r = 0
        d_scaled = upper = 0
        for a, b in zip(live, ref.counts):
            # Raw x inside this bucket: F_live(x) <= cum_l + a, F_ref(x) >= cum_r (and mirror).
            upper = max(upper, (cum_l + a) * m - cum_r * n, (cum_r + b) * n - cum_l * m)
            cum_l, cum_r = cum_l + a, cum_r + b
            d_scaled = max(d_scaled, abs(cum_l * m - cum_r * n))
        ks_d = d_scaled / (n * m)
        ks_bound = (upper - d_scaled) / (n * m)
        effective = max(1, int(np.round(n * m / (n + m))))
        ks_pvalue = float(np.clip(kstwo_sf(ks_d, effective), 0.0, 1.0))
    return FeatureDrift(
        feature=name,
        kind=NUMERIC,
        n=n + live_missing,
        reference_n=ref.n,
        psi=_psi_of_counts(live, list(ref.counts), epsilon),
        ks_d=ks_d,
        ks_pvalue=ks_pvalue,
        ks_bound=ks_bound,
        missing_share=_share(live_missing, n + live_missing),
        reference_missing_share=_share(ref.missing, ref.n),
    )


def _chi2_contingency(table: np.ndarray) -> tuple[float, float]:
    """``scipy.stats.chi2_contingency(table)`` (statistic, p-value) for a table without empty columns.

    The same arithmetic, Yates' correction included when one degree of freedom is left, without
    scipy's input checks and result object (a tenth of its cost: it runs for every categorical
    feature of every window of every pass).

    >>> t = np.array([[10, 20, 30], [15, 15, 40]])
    >>> from scipy.stats import chi2_contingency
    >>> np.allclose(_chi2_contingency(t), tuple(chi2_contingency(t))[:2], rtol=1e-12)
    True
    """
    observed = table.astype(np.float64)
    dof = observed.shape[1] - 1
    if dof == 0:
        return 0.0, 1.0
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    if dof == 1:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return statistic, float(special.chdtrc(dof, statistic))


def _categorical_drift(name, live: dict[str, int], live_missing: int, ref: CategoricalReference, epsilon) -> FeatureDrift:
    reference = ref.as_mapping()
    n, m = sum(live.values()), sum(reference.values())
    unseen_names = sorted((k for k, c in live.items() if c and k not in reference), key=lambda k: (-live[k], k))
    unseen = sum(live[k] for k in unseen_names)
    categories = sorted(reference)
    psi_value = _psi_of_counts(
        [live.get(k, 0) for k in categories] + [unseen], [reference[k] for k in categories] + [0], epsilon
    )
    chi2 = chi2_pvalue = None
    if n and m:
        union = sorted(set(reference) | set(live))
        table = np.array([[reference.get(k, 0) for k in union], [live.get(k, 0) for k in union]], dtype=np.int64)
        table = table[:, table.sum(axis=0) > 0]  # a category empty in both samples carries no information
        chi2, chi2_pvalue = _chi2_contingency(table)
    return FeatureDrift(
        feature=name,
        kind=CATEGORICAL,
        n=n + live_missing,
        reference_n=ref.n,
        psi=psi_value,
        chi2=chi2,
        chi2_pvalue=chi2_pvalue,
        unseen=unseen,
        unseen_categories=tuple(unseen_names[:MAX_UNSEEN_LISTED]),
        missing_share=_share(live_missing, n + live_missing),
        reference_missing_share=_share(ref.missing, ref.n),
    )


def feature_drift(
    live: FeatureCounter, profile: FeatureProfile, epsilon: float = DEFAULT_EPSILON
) -> dict[str, FeatureDrift]:
    """Drift of every profile feature: PSI, KS (numeric), chi-square and unseen categories (categorical).

    * PSI = sum (l - r) ln(l / r) over the reference buckets (numeric) or the reference
      categories plus one bucket for all unseen ones (categorical), on non-missing
      shares; a share of 0 counts as ``epsilon`` (default 1e-4), the convention of
      :func:`monitor.stats.psi.psi`. Exact on the bucket counts up to float rounding;
      0.0 exactly when the live counts are the reference's.
    * ``ks_d``: max over bucket edges of |F_live - F_ref|, exact (integers), equal to
      ``ks_2samp`` on the bucketed data and a lower bound of D on the raw values (the
      bucketed CDFs are the raw ones read at the edges); the raw D is at most
      ``ks_d + ks_bound``. ``ks_pvalue`` = ``kstwo.sf(ks_d, round(n*m/(n+m)))`` as
      ks_2samp's asymptotic method (scipy's value, via :func:`monitor.stats._kstwo.kstwo_sf`).
    * ``chi2``/``chi2_pvalue``: ``scipy.stats.chi2_contingency`` with its defaults (Yates'
      correction only when 2 categories remain) on the 2 x K table reference vs live over
      the union of categories, unseen and ``"__other__"`` included; categories empty in
      both rows are dropped (their expected count would be 0), and a single remaining
      category gives chi2 = 0, p = 1.
    * ``unseen``: live records in categories absent from the reference;
      ``unseen_categories``: their names, most frequent first, at most 20.

    Every statistic is None (never NaN) when undefined, i.e. without live or reference
    records; empty input never raises.

    >>> p = FeatureProfile.from_frame(pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50}))
    >>> live = FeatureCounter(p)
    >>> live.update_many({"x": np.arange(50.0, 150.0), "c": ["a", "zz"] * 50})
    >>> d = feature_drift(live, p)
    >>> round(d["x"].psi, 4), d["x"].ks_d, d["c"].unseen, d["c"].unseen_categories
    (4.3463, 0.5, 50, ('zz',))
    >>> feature_drift(FeatureCounter(p), p)["x"].psi is None
    True
    """
    if not isinstance(live, FeatureCounter) or not isinstance(profile, FeatureProfile):
        raise StatsError("feature_drift takes a FeatureCounter and a FeatureProfile")
    if live.profile != profile:
        raise StatsError("the live counter was built on a different profile")
    if not (isinstance(epsilon, numbers.Real) and math.isfinite(epsilon) and epsilon > 0):
        raise StatsError(f"epsilon must be a positive number, got {epsilon!r}")
    out = {}
    for name, ref in profile.references:
        counts, missing = live._counts[name], live._missing[name]
        if ref.kind == NUMERIC:
            out[name] = _numeric_drift(name, counts, missing, ref, epsilon)
        else:
            out[name] = _categorical_drift(name, counts, missing, ref, epsilon)
    return out
