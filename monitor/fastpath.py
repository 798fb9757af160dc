"""The worker's fast decoder: plain checks for the common record, pydantic for everything else.

``decode_fast`` accepts exactly what ``monitor.schema.decode_records`` accepts: it checks the
usual shape of a record in plain Python (types, ranges, a cached date parse), and whenever a
record is not of that shape it hands the whole message to the pydantic contract, which either
accepts it (an alias, a datetime, a float label...) or says why not. Validation of the common
record costs about a microsecond instead of the model's several.

>>> decode_fast(b'{"record_id": "a", "model": "m", "REF_DATE": "2024-03-05", "score": 0.3, "TARGET": 1}')
[('m', '1', '2024-03-05', '2024-03', 0, 0.3, 'a', None)]
>>> decode_fast(b'{"record_id": "a", "model": "m", "ref_date": "2024-03-05T10:00:00Z", "score": 1}')
[('m', '1', '2024-03-05', '2024-03', 2, 1.0, 'a', None)]
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

import orjson

from monitor.errors import InvalidRecord
from monitor.schema import MAX_MESSAGE_BYTES, decode_records

LABEL_BAD, LABEL_GOOD, LABEL_UNLABELED = 0, 1, 2
"""Label indexes, in the order of monitor.store.LABELS."""

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
    score = r.get("score")
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


def decode_fast(value: bytes | None) -> list[FastRecord]:
    """Records of one message as tuples; InvalidRecord (with pydantic's reason) otherwise."""
    if value is None or len(value) > MAX_MESSAGE_BYTES:
        decode_records(value)  # raises with the reason
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


__all__ = ["decode_fast", "FastRecord", "InvalidRecord", "LABEL_BAD", "LABEL_GOOD", "LABEL_UNLABELED"]
