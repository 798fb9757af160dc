"""The record contract: what producers publish and what the worker accepts.

A message value is one JSON record or a JSON array of records.

>>> recs = decode_records(b'{"record_id": "a1", "model": "default", "REF_DATE": "2024-03-05", '
...                       b'"score": 0.31, "TARGET": 1}')
>>> recs[0].model_version, recs[0].month, recs[0].target
('1', '2024-03', 1)
>>> decode_records(b'{"record_id": "a1", "model": "m", "ref_date": "2024-03-05", "score": 1.5}')
Traceback (most recent call last):
...
monitor.errors.InvalidRecord: record 0: score: Input should be less than or equal to 1
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Literal

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from monitor.errors import InvalidRecord

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""A larger message is dead-lettered unread: no legitimate batch of records comes near it."""


def strict_label(value: Any, name: str) -> Any:
    """A label is exactly 0, 1 or null: lax parsing would silently take "1" (1.0 is kept as 1)."""
    if value is None or (type(value) is int and value in (0, 1)):
        return value
    if type(value) is float and value in (0.0, 1.0):
        return int(value)
    raise ValueError(f"{name} must be 0, 1 or null")


FeatureValue = StrictStr | StrictBool | StrictInt | StrictFloat | None


class ScoredRecord(BaseModel):
    """One scored credit record, as published on the records topic."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    record_id: str = Field(min_length=1, max_length=256)
    model: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    model_version: str = Field("1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    ref_date: dt.date = Field(validation_alias=AliasChoices("ref_date", "REF_DATE"))
    score: float = Field(ge=0.0, le=1.0, description="Probability of class 1 (bad).")
    target: Literal[0, 1] | None = Field(None, validation_alias=AliasChoices("target", "TARGET"))
    # Flat scalars only: credit features are numbers and categories, and a nested payload
    # would only carry risk (deep recursion, unbounded size) into every later consumer.
    features: dict[str, FeatureValue] | None = Field(None, max_length=2000)

    @field_validator("model_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # Producers often send the version as a number; it is a label, not a quantity.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("ref_date", mode="before")
    @classmethod
    def _date_of_datetime(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > 10:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
        return value

    @field_validator("score", mode="before")
    @classmethod
    def _finite_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("score must be a JSON number")
        if not math.isfinite(value):
            raise ValueError("score must be finite")
        return value

    @field_validator("target", mode="before")
    @classmethod
    def _strict_label(cls, value: Any) -> Any:
        return strict_label(value, "target")

    @property
    def month(self) -> str:
        return f"{self.ref_date.year:04d}-{self.ref_date.month:02d}"


_records_adapter = TypeAdapter(list[ScoredRecord])


def decode_records(value: bytes | None) -> list[ScoredRecord]:
    """Decode one message value into records, or raise InvalidRecord with the reason.

    A JSON array is all-or-nothing: one bad element dead-letters the whole message, so that
    a message is never half counted.
    """
    if value is None:
        raise InvalidRecord("empty message (null value)")
    if len(value) > MAX_MESSAGE_BYTES:
        raise InvalidRecord(f"message of {len(value)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"not JSON: {exc}") from None
    except RecursionError:
        raise InvalidRecord("JSON nested too deeply") from None
    if isinstance(payload, dict):
        payload = [payload]
    elif not isinstance(payload, list):
        raise InvalidRecord(f"expected a JSON object or array, got {type(payload).__name__}")
    if not payload:
        raise InvalidRecord("empty JSON array")
    try:
        return _records_adapter.validate_python(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = [str(p) for p in first["loc"]]
        index = where.pop(0) if where and where[0].isdigit() else "0"
        field = ".".join(where) or "record"
        raise InvalidRecord(f"record {index}: {field}: {first['msg']}") from None
    except RecursionError:
        raise InvalidRecord("record nested too deeply") from None


def encode_record(record: ScoredRecord | dict[str, Any]) -> bytes:
    """The canonical JSON of a record (what `monitor produce` publishes)."""
    if isinstance(record, ScoredRecord):
        record = record.model_dump(mode="json", exclude_none=True)
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def model_key(model: str, version: str) -> str:
    """The ``model:version`` key of a model version (in Redis sets, rule files, due marks).

    >>> model_key("default", "1")
    'default:1'
    """
    return f"{model}:{version}"


def split_model_key(key: bytes | str) -> tuple[str, str]:
    """``(model, version)`` of a ``model:version`` key: a model name holds no colon (ScoredRecord.model),
    so the first colon splits it.

    >>> split_model_key(b"default:1"), split_model_key("m:2024.1:rc")
    (('default', '1'), ('m', '2024.1:rc'))
    """
    text = key.decode() if isinstance(key, bytes) else key
    model, _, version = text.partition(":")
    return model, version
