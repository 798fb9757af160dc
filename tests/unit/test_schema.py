"""The record contract: what is accepted, what is refused and with which reason."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.errors import InvalidRecord
from monitor.worker.pipeline import score_bin
from monitor.schema import (
    MAX_MESSAGE_BYTES,
    ScoredRecord,
    decode_records,
    encode_record,
)
from monitor.stats import ScoreHistogram

VALID = {"record_id": "r1", "model": "default", "ref_date": "2024-02-29", "score": 0.25}


def msg(**changes) -> bytes:
    record = {**VALID, **changes}
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


def test_defaults_aliases_and_month():
    (rec,) = decode_records(orjson.dumps({"record_id": "r", "model": "m", "REF_DATE": "2024-11-30T23:59:59Z",
                                          "score": 1, "TARGET": 0, "features": {"income": 1.5}}))
    assert (rec.model_version, rec.month, rec.score, rec.target, rec.features) == ("1", "2024-11", 1.0, 0, {"income": 1.5})


def test_array_of_records_and_numeric_version():
    recs = decode_records(orjson.dumps([{**VALID, "model_version": 3}, {**VALID, "record_id": "r2", "target": None}]))
    assert [r.model_version for r in recs] == ["3", "1"] and recs[1].target is None


@pytest.mark.parametrize("value, reason", [
    (msg(score=1.5), "record 0: score: Input should be less than or equal to 1"),
    (msg(score=-0.1), "record 0: score: Input should be greater than or equal to 0"),
    (msg(score="0.5"), "score must be a JSON number"),
    (msg(score=True), "score must be a JSON number"),
    (msg(score=...), "record 0: score: Field required"),
    (msg(ref_date=...), "record 0: ref_date: Field required"),
    (msg(ref_date="2024-02-30"), "record 0: ref_date"),
    (msg(target=2), "target must be 0, 1 or null"),
    (msg(target="1"), "target must be 0, 1 or null"),
    (msg(model=""), "record 0: model"),
    (msg(model="a b"), "record 0: model: String should match pattern"),
    (msg(record_id=...), "record 0: record_id: Field required"),
    (b'{"record_id": "r", "model": "m", "ref_date": "2024-01-01", "score": NaN}', "not JSON"),
    (b"[" + orjson.dumps(VALID) + b", 5]", "record 1: record: Input should be a valid dictionary"),
    (b"[]", "empty JSON array"),
    (b"\"text\"", "expected a JSON object or array, got str"),
    (b"\x00\x01\x02", "not JSON"),
    (b"[" * 5000 + b"]" * 5000, "record 0: record: Input should be a valid dictionary"),
    (msg(features={"x": {"deep": [[[1]]]}}), "record 0: features.x"),
    (msg(features=[1, 2]), "record 0: features: Input should be a valid dictionary"),
    (None, "empty message"),
], ids=lambda v: None if isinstance(v, str) else "message")
def test_invalid_messages_say_why(value, reason):
    with pytest.raises(InvalidRecord) as err:
        decode_records(value)
    assert reason in str(err.value)


def test_huge_message_is_refused_unread():
    with pytest.raises(InvalidRecord, match="exceeds"):
        decode_records(b" " * (MAX_MESSAGE_BYTES + 1))


def test_encode_round_trip():
    rec = decode_records(msg(target=1, features={"purpose": "car"}))[0]
    assert decode_records(encode_record(rec)) == [rec]


@given(st.floats(min_value=0, max_value=1, allow_nan=False))
def test_valid_scores_are_accepted_and_bin_like_the_histogram(score):
    (rec,) = decode_records(msg(score=score))
    assert math.isclose(rec.score, score)
    assert ScoreHistogram.from_scores([rec.score]).bins.tolist() == [score_bin(rec.score, 1e-4)]


def test_scored_record_is_frozen():
    rec = ScoredRecord.model_validate(VALID)
    with pytest.raises(Exception):
        rec.score = 0.9


@given(st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True), st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True))
def test_model_key_round_trips(model, version):
    from monitor.schema import model_key, split_model_key
    key = model_key(model, version)
    assert split_model_key(key) == split_model_key(key.encode()) == (model, version)


def test_model_keys_are_split_in_one_place():
    import inspect

    from monitor.alerts import prometheus
    from monitor.worker import engine
    for module in (engine, prometheus):
        assert 'split(":", 1)' not in inspect.getsource(module), module.__name__
