"""Redis encoding of feature counts: hash fields ``"<feature>|<bucket>"`` -> count (mixed into
:class:`~monitor.stats.features.FeatureCounter`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

from monitor.errors import StatsError
from monitor.stats.features.values import (
    DEFAULT_MAX_CATEGORIES,
    MISSING_FIELD,
    OTHER,
    _count,
)

if TYPE_CHECKING:
    from monitor.stats.features.profile import FeatureProfile

_ESCAPE = "~"  # Redis field escape for categories named "missing" or starting with "~"
UNSEEN_NAMES_PART = "~unseen"
"""Bucket part of the Redis field ``<feature>|~unseen``: how many unseen names the month's hash holds
(kept by the batch script, which folds later new names into ``__other__``). Never a category: an
escaped category starting with ``~`` is ``~missing`` or starts with ``~~``."""


def _escape(category: str) -> str:
    return _ESCAPE + category if category == MISSING_FIELD or category.startswith(_ESCAPE) else category


def _unescape(part: str) -> str:
    return part[1:] if part.startswith(_ESCAPE) else part


class RedisFields:
    """The Redis hash form of a :class:`~monitor.stats.features.FeatureCounter` (``_counts``, ``_missing``,
    ``_categorical``, ``_numeric``, ``_add_category`` are the counter's)."""

    if TYPE_CHECKING:  # what the mixin uses of FeatureCounter, declared for the type checker only
        _counts: dict[str, Any]
        _missing: dict[str, int]
        _numeric: dict[str, Any]
        _categorical: dict[str, tuple[frozenset, bool]]

        def __init__(self, profile: FeatureProfile, max_categories: int = DEFAULT_MAX_CATEGORIES) -> None: ...

        def _add_category(self, name: str, text: str, count: int) -> None: ...

    def to_redis_fields(self) -> dict[str, int]:
        """Redis hash fields ``"<feature>|<bucket>"`` -> count, zero counts left out; exact round trip.

        ``<bucket>`` is the numeric bucket index in decimal, ``missing``, or the category
        text; a category named ``missing`` or starting with ``~`` is written with one more
        leading ``~`` so that fields never collide.

        >>> from monitor.stats.features import CategoricalReference, FeatureCounter, FeatureProfile, NumericReference
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

        >>> from monitor.stats.features import CategoricalReference, FeatureCounter, FeatureProfile
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
            is_unseen = categories is not None and is_name and _unescape(part) not in categories[0]
            (unseen if is_unseen else fixed)[name_part] = count
        return fixed, unseen

    @classmethod
    def from_redis_fields(
        cls,
        fields: Mapping[bytes | str, bytes | str | int],
        profile: FeatureProfile,
        max_categories: int = DEFAULT_MAX_CATEGORIES,
    ) -> Self:
        """Rebuild from a Redis hash (as HGETALL returns it, bytes or str); exact.

        Fields of features absent from the profile and the batch script's ``<feature>|~unseen``
        counters are ignored; a bucket index outside the
        profile's buckets, a field without ``|`` or a count that is not a non-negative
        integer raise StatsError. The unseen-category cap is applied again, so a hash
        accumulated from many batches reads as one counter of all their records.

        >>> from monitor.stats.features import FeatureCounter, FeatureProfile, NumericReference
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
