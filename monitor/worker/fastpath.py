"""The worker's fast decoder: msgspec for the common record, plain checks, then pydantic for the rest.

``decode_fast`` accepts exactly what ``monitor.schema.decode_records`` accepts, in three tiers:

1. ``msgspec`` decodes the message bytes straight into :class:`_Record` structs, which are
   *stricter* than the contract (no unknown field, bounded ints, ...). This is the common record
   of every producer and costs a fraction of a microsecond.
2. Whenever msgspec refuses anything, ``decode_orjson`` (the previous decoder) takes the message:
   ``orjson.loads`` then plain-Python checks of each record (types, ranges, a cached date parse).
3. Whenever a record is not of that shape either, the pydantic contract takes the whole message,
   and either accepts it (an alias, a datetime, a float label...) or says why not.

So msgspec never has the last word on a refusal: the error messages stay the contract's.

>>> decode_fast(b'{"record_id": "a", "model": "m", "REF_DATE": "2024-03-05", "score": 0.3, "TARGET": 1}')
[('m', '1', '2024-03-05', '2024-03', 0, 0.3, 'a', None)]
>>> decode_fast(b'{"record_id": "a", "model": "m", "ref_date": "2024-03-05T10:00:00Z", "score": 1}')
[('m', '1', '2024-03-05', '2024-03', 2, 1.0, 'a', None)]
>>> decode_fast(b'[{"record_id": "a", "model": "m", "model_version": 7, "ref_date": "2024-03-05", "score": 0.5,'
...             b' "target": 0, "features": {"age": 41, "home": "OWN"}}]')
[('m', '7', '2024-03-05', '2024-03', 1, 0.5, 'a', {'age': 41, 'home': 'OWN'})]
>>> decode_fast(b'{"record_id": "a", "model": "m", "ref_date": "2024-03-05", "score": 0.5, "target": true}')
Traceback (most recent call last):
...
monitor.errors.InvalidRecord: record 0: target: Value error, target must be 0, 1 or null

Where msgspec's semantics differ from the contract's (each refused by the struct, so the next tier
decides; tests/unit/test_fastpath.py has an example of each):

* unknown fields: msgspec skips their values *without* checking them (invalid UTF-8, ``1e400``
  pass), while orjson refuses the whole message -> ``forbid_unknown_fields=True``;
* integers beyond 64 bits: msgspec keeps them as ``int``, orjson turns them into ``float`` (so a
  huge ``model_version`` is a float the contract refuses) -> ints are bounded to int64;
* a huge number literal (``1e400``) or invalid UTF-8 in a kept string: msgspec raises
  ValidationError / UnicodeDecodeError (not DecodeError) -> every exception means "next tier";
* the aliases ``REF_DATE``/``TARGET``: the contract takes ``ref_date``/``target`` when the key is
  present (even null) and the alias otherwise -> both are fields defaulting to UNSET;
* string feature values: tier 1 takes at most ``FAST_FEATURE_VALUE_CHARS`` characters (so that the
  bounds need not look at the values of the messages it decodes); a longer one goes to the next tier;
* nesting: msgspec stops at Python's recursion limit (RecursionError), orjson has no limit (a
  3000-deep list in an unknown field is accepted by the contract) -> the next tier decides;
* ``Meta(pattern=...)`` is ``re.search`` (``$`` also matches before a final newline, where
  pydantic's regex does not) and costs ~0.4 us a field -> model and version names are checked with
  the same cached ``fullmatch`` as tier 2; lengths count code points, in msgspec as in pydantic.

Same as the contract (no special handling): duplicate keys (last one wins), int scores (-> float),
bools are never numbers, JSON has no NaN/Infinity, floats parse to the same double as orjson.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType

from monitor.errors import InvalidRecord
from monitor.schema import MAX_MESSAGE_BYTES, decode_records

LABEL_BAD, LABEL_GOOD, LABEL_UNLABELED = 0, 1, 2
"""Label indexes, in the order of monitor.state.LABELS."""

FastRecord = tuple  # (model, model_version, ref_date ISO, month, label index, score, record_id, features)

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SCALARS = (str, int, float, bool, type(None))
_LABEL = {None: LABEL_UNLABELED, 0: LABEL_GOOD, 1: LABEL_BAD}


@lru_cache(maxsize=4096)
def _name_ok(name: str, max_len: int) -> bool:
    return 0 < len(name) <= max_len and _NAME.fullmatch(name) is not None


@lru_cache(maxsize=8192)
def _month_of_date(text: str) -> str | None:
    """'YYYY-MM' of a valid 'YYYY-MM-DD', else None (the pydantic path decides)."""
    if _DATE.fullmatch(text) is None:  # fromisoformat alone would take week dates too
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        return None
    return f"{day.year:04d}-{day.month:02d}"


# --- tier 1: msgspec ------------------------------------------------------------------------------

# orjson reads integers in [-2**63, 2**64) as int and larger ones as float; msgspec reads them all
# as int and bounds must fit an int64, so [2**63, 2**64) goes to the next tier too.
_Int = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
_Label = Union[Literal[0, 1], None, UnsetType]  # an int 0/1 only: no bool, no 1.0, no "1"
FAST_FEATURE_VALUE_CHARS = 256
"""Tier 1 takes string feature values of at most this many characters (a longer one: next tier, which
accepts it as the contract does), so a message tier 1 decoded needs no length check against a
``MONITOR_MAX_FEATURE_VALUE_CHARS`` of at least this (monitor.bounds.check_bounds)."""
_FeatureText = Annotated[str, Meta(max_length=FAST_FEATURE_VALUE_CHARS)]


class _Record(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """The common record, stricter than monitor.schema.ScoredRecord (anything else: next tier)."""

    record_id: Annotated[str, Meta(min_length=1, max_length=256)]
    model: str  # a name: checked below (msgspec's pattern check costs ~0.4 us a field)
    score: Annotated[float, Meta(ge=0.0, le=1.0)]  # a JSON int is taken as float, like pydantic's
    # str(int) of an int64 always is a valid version (digits and '-', at most 20 characters)
    model_version: Union[str, _Int] = "1"  # a name (checked below) or an int64
    ref_date: Union[str, UnsetType] = UNSET  # 'YYYY-MM-DD' checked below (a datetime: next tier)
    REF_DATE: Union[str, UnsetType] = UNSET
    target: _Label = UNSET
    TARGET: _Label = UNSET
    features: Union[Annotated[dict[str, Union[_FeatureText, _Int, float, bool, None]], Meta(max_length=2000)], None] = None


_decoder = msgspec.json.Decoder(Union[list[_Record], _Record])
_LABEL_OF = {None: LABEL_UNLABELED, 0: LABEL_GOOD, 1: LABEL_BAD, UNSET: LABEL_UNLABELED}


def _decode_msgspec(value: bytes) -> list[FastRecord] | None:
    """The records of a message of common records, else None (the next tier decides)."""
    try:
        recs = _decoder.decode(value)
    except Exception:  # ValidationError, DecodeError, UnicodeDecodeError, RecursionError...
        return None
    if type(recs) is not list:
        recs = [recs]
    elif not recs:
        return None
    out: list[FastRecord] = []
    append = out.append
    month_of = _month_of_date
    # The last (model, version) and day checked: a message is mostly of one model and a few days.
    model = version = text = last_day = month = None
    for r in recs:
        if r.model != model or r.model_version != version:
            model, version = r.model, r.model_version
            if type(version) is int:
                text = str(version)
            elif _name_ok(version, 64):
                text = version
            else:
                return None
            if not _name_ok(model, 128):
                return None
        day = r.ref_date
        if day != last_day:
            if day is UNSET:
                day = r.REF_DATE
                if day is UNSET:
                    return None
            month = month_of(day)
            if month is None:
                return None
            last_day = day
        target = r.target
        if target is UNSET:
            target = r.TARGET
        append((model, text, day, month, _LABEL_OF[target], r.score, r.record_id, r.features))
    return out


# --- tier 2: orjson + plain checks (the previous decoder) -------------------------------------

def _fast_one(r) -> FastRecord | None:
    """The record as a tuple, or None when it is not of the common shape."""
    if type(r) is not dict:
        return None
    rid = r.get("record_id")
    model = r.get("model")
    if type(rid) is not str or not 0 < len(rid) <= 256 or type(model) is not str or not _name_ok(model, 128):
        return None
    version = r.get("model_version", "1")
    if type(version) is int:
        version = str(version)
    if type(version) is not str or not _name_ok(version, 64):
        return None
    day = r["ref_date"] if "ref_date" in r else r.get("REF_DATE")
    if type(day) is not str:
        return None
    month = _month_of_date(day)
    score: Any = r.get("score")  # a JSON value: type() below admits exact floats and ints (no bools)
    if month is None or type(score) not in (float, int) or not 0.0 <= score <= 1.0:
        return None
    target = r["target"] if "target" in r else r.get("TARGET")
    if target is not None and type(target) is not int:
        return None
    label = _LABEL.get(target)
    if label is None:
        return None
    features = r.get("features")
    if features is not None:
        if type(features) is not dict or len(features) > 2000:
            return None
        for value in features.values():
            if type(value) not in _SCALARS:
                return None
    return model, version, day, month, label, float(score), rid, features


def decode_orjson(value: bytes | None) -> list[FastRecord]:
    """The previous decoder (orjson + plain checks, then the contract): tiers 2 and 3 only."""
    if value is None or len(value) > MAX_MESSAGE_BYTES:
        decode_records(value)  # raises with the reason
        raise AssertionError("decode_records accepted an empty or oversized message")
    try:
        payload = orjson.loads(value)
    except (orjson.JSONDecodeError, RecursionError):
        payload = None
    if type(payload) is dict:
        fast = _fast_one(payload)
        if fast is not None:
            return [fast]
    elif type(payload) is list and payload:
        out = []
        for r in payload:
            fast = _fast_one(r)
            if fast is None:
                break
            out.append(fast)
        else:
            return out
    # Not the common shape: the contract itself decides, and says why when it refuses.
    return [(rec.model, rec.model_version, rec.ref_date.isoformat(), rec.month,
             _LABEL[rec.target], rec.score, rec.record_id, rec.features) for rec in decode_records(value)]


def decode_fast(value: bytes | None) -> list[FastRecord]:
    """Records of one message as tuples; InvalidRecord (with pydantic's reason) otherwise."""
    return decode_tiered(value)[0]


def decode_tiered(value: bytes | None) -> tuple[list[FastRecord], int | None]:
    """:func:`decode_fast`, and the longest a string feature value can be: FAST_FEATURE_VALUE_CHARS
    when tier 1 decoded the message, None (not known) otherwise.

    >>> decode_tiered(b'{"record_id": "a", "model": "m", "ref_date": "2024-03-05", "score": 0.5,'
    ...               b' "features": {"home": "OWN"}}')[1]
    256
    >>> decode_tiered(b'{"record_id": "a", "model": "m", "ref_date": "2024-03-05", "score": 0.5,'
    ...               b' "features": {"home": "' + b'x' * 300 + b'"}}')[1] is None
    True
    """
    if value is not None and len(value) <= MAX_MESSAGE_BYTES:
        out = _decode_msgspec(value)
        if out is not None:
            return out, FAST_FEATURE_VALUE_CHARS
    return decode_orjson(value), None


__all__ = ["decode_fast", "decode_tiered", "decode_orjson", "FastRecord", "InvalidRecord", "LABEL_BAD", "LABEL_GOOD",
           "LABEL_UNLABELED"]
