"""Bounded input: what one message may add to the Redis state, checked after decoding.

Decoding (monitor.worker.fastpath / monitor.schema) says whether a message is well formed; these bounds
say whether the monitor takes it. A message out of bounds is dead-lettered whole, like any invalid
message, with a reason that names the setting (``MONITOR_<NAME>``):

* :func:`check_bounds` (pure): ``ref_date`` within ``[today - max_event_age_days,
  today + max_event_future_days]`` and string feature values of at most ``max_feature_value_chars``;
* :class:`CardinalityGate` (pure, fed with what Redis holds): at most ``max_models`` (model,
  version) pairs, ``max_months_per_model`` months each, and with ``require_reference`` only models
  whose reference is loaded.

The unseen-category cap (``max_unseen_categories``) is not a refusal: it is applied where the counts
are merged, in the batch script (monitor/state/scripts/apply_batch.lua).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter

from monitor.errors import InvalidRecord
from monitor.settings import Settings

Key = tuple[str, str]  # (model, version)
_KEY_MONTH, _DAY, _FEATURES = itemgetter(0, 1, 3), itemgetter(2), itemgetter(7)
_MODEL, _VERSION, _MONTH = itemgetter(0), itemgetter(1), itemgetter(3)


def key_months(records: Sequence[tuple]) -> set[tuple[str, str, str]]:
    """The (model, version, month) triples of a decoded message (at C speed: one small set).

    >>> sorted(key_months([("m", "1", "2024-01-05", "2024-01", 0, 0.5, "a", None),
    ...                    ("m", "1", "2024-01-09", "2024-01", 1, 0.2, "b", None)]))
    [('m', '1', '2024-01')]
    >>> sorted(key_months([("m", "1", "2024-01-05", "2024-01", 0, 0.5, "a", None),
    ...                    ("m", "2", "2024-02-09", "2024-02", 1, 0.2, "b", None)]))
    [('m', '1', '2024-01'), ('m', '2', '2024-02')]
    """
    models, versions = set(map(_MODEL, records)), set(map(_VERSION, records))
    if len(models) == 1 and len(versions) == 1:  # the common message: no tuple per record
        (model,), (version,) = models, versions
        return {(model, version, month) for month in set(map(_MONTH, records))}
    return set(map(_KEY_MONTH, records))


class OutOfBounds(InvalidRecord):
    """A well-formed message that a bound refuses (dead-lettered with this reason)."""


def utc_today() -> dt.date:
    """Today's date in UTC (the bounds' "today"; tests inject their own)."""
    return dt.datetime.now(dt.timezone.utc).date()


@dataclass(frozen=True)
class RecordBounds:
    """The per-record bounds (0 turns one off); defaults are the settings' defaults."""

    max_event_age_days: int = 7305
    max_event_future_days: int = 7
    max_feature_value_chars: int = 256

    @classmethod
    def from_settings(cls, settings: Settings) -> "RecordBounds":
        return cls(settings.max_event_age_days, settings.max_event_future_days, settings.max_feature_value_chars)

    def window(self, today: dt.date) -> tuple[str, str]:
        """The accepted ``ref_date`` range as ISO strings (compared as text: same order as dates).

        >>> RecordBounds(max_event_age_days=10, max_event_future_days=7).window(dt.date(2026, 11, 30))
        ('2026-11-20', '2026-12-07')
        >>> RecordBounds(max_event_age_days=0, max_event_future_days=0).window(dt.date(2026, 11, 30))
        ('', '~')
        """
        earliest, latest = "", "~"  # "~" sorts after every date
        try:
            if self.max_event_age_days:
                earliest = (today - dt.timedelta(days=self.max_event_age_days)).isoformat()
        except OverflowError:  # before year 1: no bound
            pass
        try:
            if self.max_event_future_days:
                latest = (today + dt.timedelta(days=self.max_event_future_days)).isoformat()
        except OverflowError:
            pass
        return earliest, latest


def check_bounds(records: Sequence[tuple], bounds: RecordBounds, today: dt.date,
                 values_within: int | None = None) -> None:
    """Raise :class:`OutOfBounds` for the first record of a decoded message that is out of bounds.

    ``records`` are decoder tuples (model, version, ref_date ISO, month, label, score, id, features).
    ``values_within``: what the decoder vouches for, the longest a string feature value of these
    records can be (monitor.worker.fastpath.decode_tiered); within the bound, the values are not looked at.

    >>> rec = ("m", "1", "9999-12-31", "9999-12", 0, 0.5, "a", None)
    >>> check_bounds([rec], RecordBounds(), dt.date(2026, 11, 30))
    Traceback (most recent call last):
    ...
    monitor.bounds.OutOfBounds: record 0: ref_date 9999-12-31 is more than 7 days after today 2026-11-30 (MONITOR_MAX_EVENT_FUTURE_DAYS)
    >>> check_bounds([rec], RecordBounds(max_event_future_days=0), dt.date(2026, 11, 30))
    """
    earliest, latest = bounds.window(today)
    days = list(map(_DAY, records))
    if min(days) < earliest or max(days) > latest:  # rare: find the first culprit
        for i, day in enumerate(days):
            if day < earliest:
                raise OutOfBounds(f"record {i}: ref_date {day} is more than {bounds.max_event_age_days} days "
                                  f"before today {today.isoformat()} (MONITOR_MAX_EVENT_AGE_DAYS)")
            if day > latest:
                raise OutOfBounds(f"record {i}: ref_date {day} is more than {bounds.max_event_future_days} days "
                                  f"after today {today.isoformat()} (MONITOR_MAX_EVENT_FUTURE_DAYS)")
    limit = bounds.max_feature_value_chars
    if limit and (values_within is None or values_within > limit):
        for i, features in enumerate(map(_FEATURES, records)):
            if features:
                for value in features.values():
                    if type(value) is str and len(value) > limit:
                        name = next(k for k, v in features.items() if v is value)
                        raise OutOfBounds(f"record {i}: features.{name}: a string of {len(value)} characters, "
                                          f"more than {limit} (MONITOR_MAX_FEATURE_VALUE_CHARS)")


@dataclass(frozen=True)
class CardinalityLimits:
    """The caps on models and months (0 turns a cap off); defaults are the settings' defaults."""

    max_models: int = 2000
    max_months_per_model: int = 240
    require_reference: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> "CardinalityLimits":
        return cls(settings.max_models, settings.max_months_per_model, settings.require_reference)


class CardinalityGate:
    """Admits messages one by one against what Redis holds plus what was admitted before.

    Built per batch from Redis's facts: how many models (``models_stored``) and months per model
    (``months_stored``, for the models whose new months are to be judged) are stored, the models and
    months known to be stored, and the models with a reference. Pure: no I/O. What it admits is
    added to ``known_models`` / ``known_months`` (the caller's sets, its cache: the batch writes them).

    >>> gate = CardinalityGate(CardinalityLimits(max_months_per_model=1), models_stored=0, known_models=set(),
    ...                        months_stored={}, known_months={}, referenced=set())
    >>> gate.admit([("m", "1", "2024-01-05", "2024-01", 0, 0.5, "a", None)])
    >>> gate.admit([("m", "1", "2024-02-05", "2024-02", 0, 0.5, "b", None)])
    Traceback (most recent call last):
    ...
    monitor.bounds.OutOfBounds: record 0: month 2024-02 of m:1 is new and the model already has 1 months (MONITOR_MAX_MONTHS_PER_MODEL)
    """

    def __init__(self, limits: CardinalityLimits, models_stored: int, known_models: set[Key],
                 months_stored: Mapping[Key, int], known_months: dict[Key, set[str]], referenced: set[Key]):
        self.limits = limits
        self.models = models_stored
        self.known_models = known_models
        self.months = dict(months_stored)
        self.known_months = known_months
        self.referenced = referenced

    def known(self, model: str, version: str, month: str) -> bool:
        """Whether a record of this model and month passes without counting anything (the common case)."""
        key, limits = (model, version), self.limits
        return ((not limits.max_models or key in self.known_models)
                and (not limits.require_reference or key in self.referenced)
                and (not limits.max_months_per_model or month in self.known_months.get(key, ())))

    def admit(self, records: Sequence[tuple], shape: set[tuple[str, str, str]] | None = None) -> None:
        """Count the message's new models and months, or raise OutOfBounds and count nothing.

        ``shape``: the message's :func:`key_months`, when the caller has it already.
        """
        if all(self.known(*triple) for triple in (key_months(records) if shape is None else shape)):
            return
        new_models: list[Key] = []
        new_months: dict[Key, list[str]] = {}
        for i, record in enumerate(records):  # in record order, so that the reason names the first culprit
            key, month = (record[0], record[1]), record[3]
            if key not in new_models and (key not in self.known_models or self.limits.require_reference):
                self._check_model(i, key, len(new_models))
                if key not in self.known_models:
                    new_models.append(key)
            months = new_months.setdefault(key, [])
            cap = self.limits.max_months_per_model
            if cap and month not in months and month not in self.known_months.get(key, ()):
                held = self.months.get(key, 0) + len(months)
                if held >= cap:
                    raise OutOfBounds(f"record {i}: month {month} of {key[0]}:{key[1]} is new and the model already "
                                      f"has {held} months (MONITOR_MAX_MONTHS_PER_MODEL)")
                months.append(month)
        self.known_models.update(new_models)
        self.models += len(new_models)
        for key, months in new_months.items():
            if months:
                self.known_months.setdefault(key, set()).update(months)
                self.months[key] = self.months.get(key, 0) + len(months)

    def _check_model(self, i: int, key: Key, admitted_here: int) -> None:
        if self.limits.require_reference and key not in self.referenced:
            raise OutOfBounds(f"record {i}: model {key[0]}:{key[1]} has no reference loaded (MONITOR_REQUIRE_REFERENCE)")
        cap, held = self.limits.max_models, self.models + admitted_here
        if key not in self.known_models and cap and held >= cap:
            raise OutOfBounds(f"record {i}: model {key[0]}:{key[1]} is new and {held} models are already known "
                              "(MONITOR_MAX_MODELS)")
