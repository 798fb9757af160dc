"""The fast decoder accepts and refuses exactly what the record contract does."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import InvalidRecord
from monitor.fastpath import decode_fast
from monitor.schema import decode_records

LABELS = {None: 2, 0: 1, 1: 0}


def reference(value: bytes):
    try:
        return [(r.model, r.model_version, r.ref_date.isoformat(), r.month, LABELS[r.target], r.score, r.record_id, r.features)
                for r in decode_records(value)]
    except InvalidRecord as exc:
        return ("invalid", str(exc))


def fast(value: bytes):
    try:
        return decode_fast(value)
    except InvalidRecord as exc:
        return ("invalid", str(exc))


scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=5), st.sampled_from(["2024-03-05", "2024-02-30", "2024-W10-1", "2024-03-05T10:00:00",
                                                          "1", "m", "a b", "", "2.0"]))
values = st.one_of(scalars, st.lists(scalars, max_size=2), st.dictionaries(st.sampled_from(["x", "y"]), scalars, max_size=2))
record = st.fixed_dictionaries(
    {"record_id": st.one_of(st.just("r1"), scalars), "model": st.one_of(st.just("m"), scalars)},
    optional={"model_version": st.one_of(st.just("2"), st.integers(-5, 2**63 - 1), scalars),
              "ref_date": st.one_of(st.just("2024-03-05"), scalars), "REF_DATE": st.one_of(st.just("2023-12-31"), scalars),
              "score": st.one_of(st.floats(0, 1), st.integers(0, 1), scalars),
              "target": st.one_of(st.sampled_from([0, 1, None, 0.0, 1.0, 2, True]), scalars),
              "TARGET": st.sampled_from([0, 1, None, "1"]),
              "features": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), values, max_size=3), scalars),
              "extra": scalars})


@settings(max_examples=600, deadline=None)
@given(st.one_of(record, st.lists(record, min_size=1, max_size=3)))
def test_fast_decoder_agrees_with_the_contract(payload):
    value = orjson.dumps(payload)
    assert fast(value) == reference(value)


@pytest.mark.parametrize("value", [None, b"", b"not json", b"[]", b"7", b"[1]", b"[" * 3000 + b"]" * 3000,
                                   b'{"record_id": "a", "model": "m", "ref_date": "2024-01-01", "score": NaN}'])
def test_fast_decoder_refuses_like_the_contract(value):
    assert fast(value) == reference(value)
    assert fast(value)[0] == "invalid"
