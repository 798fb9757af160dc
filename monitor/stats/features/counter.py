"""Live feature counts in the profile's buckets, mergeable and stored in Redis (see :mod:`monitor.stats.features`)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from monitor.errors import StatsError
from monitor.stats.features.encoding import RedisFields
from monitor.stats.features.profile import (  # noqa: F401 (doctests)
    CategoricalReference,
    FeatureProfile,
    NumericReference,
)
from monitor.stats.features.values import (
    CATEGORICAL,
    DEFAULT_MAX_CATEGORIES,
    NUMERIC,
    OTHER,
    _as_list,
    _as_number,
    _category_text,
    _count,
    _numbers,
)


class FeatureCounter(RedisFields):
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

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, as for list and dict

    def __init__(self, profile: FeatureProfile, max_categories: int = DEFAULT_MAX_CATEGORIES):
        if not isinstance(profile, FeatureProfile):
            raise StatsError(f"a FeatureCounter needs a FeatureProfile, got {type(profile).__name__}")
        self.profile = profile
        self.max_categories = _count(max_categories, "max_categories")
        self._numeric: dict[str, tuple[list[float], np.ndarray]] = {}
        self._categorical: dict[str, tuple[frozenset, bool]] = {}
        # list[int] (bucket counts) for a numeric feature, dict[str, int] for a categorical one: the
        # feature's kind decides, which the type checker cannot follow, hence Any.
        self._counts: dict[str, Any] = {}
        self._missing: dict[str, int] = {}
        for name, ref in profile.references:
            if isinstance(ref, NumericReference):
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

    def update_many(self, values_by_feature: Mapping[str, Any]) -> None:
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
                if text is not None:  # None (missing) was popped above; this tells the type checker
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
