"""The reference profile: each feature of the model's reference sample as bucket edges or categories,
with integer counts (see :mod:`monitor.stats.features`)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import ClassVar, Union, cast

import numpy as np
import pandas as pd

from monitor.errors import StatsError
from monitor.stats.features.values import (
    CATEGORICAL,
    DEFAULT_BUCKETS,
    DEFAULT_MAX_CATEGORIES,
    NON_FEATURE_COLUMNS,
    NUMERIC,
    OTHER,
    _category_text,
    _count,
)


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
        if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in pairwise(edges)):
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
        return cls(tuple(dict(state["counts"]).items()), state.get("missing", 0))


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
    counted = Counter(map(_category_text, values))
    missing = counted.pop(None, 0)
    texts = cast("Counter[str]", counted)  # None (missing) popped: only texts remain
    ranked = sorted(texts.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) > max_categories:
        kept, rest = ranked[:max_categories], ranked[max_categories:]
        lumped = Counter(dict(kept))
        lumped[OTHER] += sum(c for _, c in rest)
        texts = lumped
    return CategoricalReference(tuple(dict(texts).items()), missing)


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
        refs: list[tuple[str, NumericReference | CategoricalReference]] = []
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
