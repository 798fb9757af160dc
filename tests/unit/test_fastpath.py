"""The fast decoder accepts and refuses exactly what the record contract does.

Results are compared with the types of every value (``1 == 1.0 == True`` in Python) and the order of
the features, and the msgspec tier is checked on its own: whatever it accepts, the contract accepts
with the same tuples (it may only refuse more, the next tier then decides).
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from monitor.errors import InvalidRecord
from monitor.worker.fastpath import _decode_msgspec, decode_fast, decode_orjson
from monitor.schema import decode_records

LABELS = {None: 2, 0: 1, 1: 0}


def typed(value):
    """A value with the type of every part, so that 1, 1.0, True and 0.0/-0.0 differ."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, repr(value))


def reference(value: bytes):
    try:
        return typed([(r.model, r.model_version, r.ref_date.isoformat(), r.month, LABELS[r.target], r.score, r.record_id,
                       r.features) for r in decode_records(value)])
    except InvalidRecord as exc:
        return ("invalid", str(exc))


def fast(value: bytes):
    try:
        return typed(decode_fast(value))
    except InvalidRecord as exc:
        return ("invalid", str(exc))


def assert_agrees(value: bytes) -> None:
    expected = reference(value)
    assert fast(value) == expected
    try:
        assert typed(decode_orjson(value)) == expected  # the previous decoder, now the fallback
    except InvalidRecord as exc:
        assert ("invalid", str(exc)) == expected
    if value is not None:
        tier1 = _decode_msgspec(value)
        if tier1 is not None:  # msgspec may refuse more than the contract, never accept more
            assert typed(tier1) == expected


# --- raw JSON, so that a message can hold what json.dumps never writes -----------------------------------------

class Raw(bytes):
    """A JSON token written as is: a huge number, invalid UTF-8, a lone surrogate, deep nesting..."""


def dumps(value) -> bytes:
    """JSON of ``value``; a ``Pairs`` object may repeat keys, a ``Raw`` is written verbatim."""
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, Pairs):
        return b"{" + b",".join(dumps(k) + b":" + dumps(v) for k, v in value) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(dumps(v) for v in value) + b"]"
    if isinstance(value, dict):
        return dumps(Pairs(value.items()))
    if type(value) is int:  # of any size: orjson.dumps stops at 64 bits
        return str(value).encode()
    return orjson.dumps(value)


class Pairs(list):
    """A JSON object as (key, value) pairs, in order, duplicates allowed."""


raw_tokens = st.sampled_from([Raw(b) for b in (
    b"1e400", b"-1e400", b"1e-400", b"18446744073709551616", b"18446744073709551615", b"9223372036854775808",
    b"9223372036854775807", b"-9223372036854775808", b"-9223372036854775809", b"123456789012345678901234567890",
    b"1.0", b"1E0", b"0.5e0", b"-0", b"-0.0", b"1.00000000000000000001", b'"\xff"', b'"\xed\xa0\x80"', b'"\\ud800"',
    b'"\\ud83d\\ude00"', b'"caf\\u00e9"', b'"m\\n"', b'"2024-03-05\\n"', b"[" * 40 + b"]" * 40)])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=5), st.sampled_from(["2024-03-05", "2024-02-30", "2024-W10-1", "2024-03-05T10:00:00",
                                                          "2024-03-05T23:59:59Z", "1", "m", "a b", "", "2.0", "m\n"]))
odd = st.one_of(scalars, raw_tokens)
feature_values = st.one_of(scalars, st.integers(), raw_tokens, st.lists(scalars, max_size=2),
                           st.dictionaries(st.sampled_from(["x", "y"]), scalars, max_size=2))
features = st.one_of(st.none(), st.dictionaries(st.text(max_size=3), feature_values, max_size=4),
                     st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), feature_values), max_size=4).map(Pairs), odd)
names = st.one_of(st.sampled_from(["m", "credit-pd_v2.1", "M0"]), st.text(st.sampled_from("ab.-_ é\n"), max_size=4),
                  st.text(st.sampled_from("ab"), min_size=127, max_size=130))
FIELDS = {
    "record_id": st.one_of(st.just("r1"), st.text(min_size=1, max_size=3), st.text(st.sampled_from("xé😀"), min_size=254,
                                                                                    max_size=258), odd),
    "model": st.one_of(names, odd),
    "model_version": st.one_of(st.just("2"), names, st.integers(), st.integers(-5, 2**63 - 1), odd),
    "ref_date": st.one_of(st.just("2024-03-05"), odd),
    "REF_DATE": st.one_of(st.just("2023-12-31"), odd),
    "score": st.one_of(st.floats(0, 1), st.integers(0, 1), st.just(-0.0), st.integers(), odd),
    "target": st.one_of(st.sampled_from([0, 1, None, 0.0, 1.0, 2, True, False, "1"]), odd),
    "TARGET": st.one_of(st.sampled_from([0, 1, None, 0.0, 1.0, True, False, "1"]), odd),
    "features": features,
    "extra": odd,
}
COMMON = {"record_id": "r1", "model": "m", "model_version": "1", "ref_date": "2024-03-05", "score": 0.25, "target": 0,
          "features": {"age": 41, "income": 5e4, "home": "OWN", "ok": True, "none": None}}


@st.composite
def records(draw):
    """A record near the common shape: each field kept, changed, dropped or repeated (last one wins)."""
    pairs = Pairs()
    for key in ("record_id", "model", "model_version", "ref_date", "REF_DATE", "score", "target", "TARGET",
                "features", "extra"):
        choice = draw(st.sampled_from(["keep"] * 8 + ["change", "change", "drop"] if key in COMMON
                                      else ["drop"] * 4 + ["change"]))
        if choice == "keep":
            pairs.append((key, COMMON[key]))
        elif choice == "change":
            pairs.append((key, draw(FIELDS[key])))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):  # duplicate keys, anywhere
        key = draw(st.sampled_from(list(FIELDS)))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(FIELDS[key])))
    return pairs


messages = st.one_of(records(), st.lists(records(), min_size=1, max_size=3), st.lists(st.just(Pairs(COMMON.items())),
                                                                                     min_size=1, max_size=2).flatmap(
    lambda common: records().map(lambda r: [*common, r])))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_fast_decoder_agrees_with_the_contract(payload):
    assert_agrees(dumps(payload))


@settings(max_examples=300, deadline=None)
@given(st.one_of(odd, st.lists(odd, max_size=3), st.binary(max_size=30)))
@example(Raw(b"[" * 3000 + b"]" * 3000))
@example(Raw(b"[" * 3000 + b"{" + b"]" * 3000))
def test_fast_decoder_refuses_like_the_contract(payload):
    value = payload if isinstance(payload, bytes) and not isinstance(payload, Raw) else dumps(payload)
    assert_agrees(value)
    assert fast(value)[0] == "invalid"


@pytest.mark.parametrize("value", [None, b"", b"not json", b"[]", b"7", b"[1]", b"[" * 3000 + b"]" * 3000,
                                   b'{"record_id": "a", "model": "m", "ref_date": "2024-01-01", "score": NaN}',
                                   b'{"record_id": "a", "model": "m", "ref_date": "2024-01-01", "score": Infinity}',
                                   b'{"record_id": "a", "model": "m", "ref_date": "2024-01-01", "score": 0.5}x',
                                   b'\xef\xbb\xbf{"record_id": "a", "model": "m", "ref_date": "2024-01-01", "score": 0.5}',
                                   b'[{"record_id": "a", "model": "m", "ref_date": "2024-01-01", "score": 0.5}, 1]'])
def test_fast_decoder_refuses_garbage_like_the_contract(value):
    assert_agrees(value)
    assert fast(value)[0] == "invalid"


# --- each difference between msgspec and the contract, explicitly --------------------------------------------------

def message(*pairs, base=(("record_id", "a"), ("model", "m"), ("ref_date", "2024-03-05"), ("score", 0.5))) -> bytes:
    """One record: the base fields, then ``pairs`` (a repeated key comes later, so it wins)."""
    return dumps(Pairs([*base, *pairs]))


ACCEPTED = {
    "int score 1 is the float 1.0": (message(("score", 1)), {5: ("float", "1.0")}),
    "int score 0 is the float 0.0": (message(("score", 0)), {5: ("float", "0.0")}),
    "score -0.0": (message(("score", -0.0)), {5: ("float", "-0.0")}),
    "score 1E0": (message(("score", Raw(b"1E0"))), {5: ("float", "1.0")}),
    "float label 1.0 is bad": (message(("target", 1.0)), {4: ("int", "0")}),
    "float label 0.0 is good": (message(("target", 0.0)), {4: ("int", "1")}),
    "null label": (message(("target", None)), {4: ("int", "2")}),
    "int model_version": (message(("model_version", 7)), {1: ("str", "'7'")}),
    "negative int model_version": (message(("model_version", -5)), {1: ("str", "'-5'")}),
    "model_version int64 max": (message(("model_version", 2**63 - 1)), {1: ("str", repr(str(2**63 - 1)))}),
    "model_version int64 min": (message(("model_version", -(2**63))), {1: ("str", repr(str(-(2**63))))}),
    "model_version above int64 (orjson: int)": (message(("model_version", Raw(b"18446744073709551615"))),
                                                {1: ("str", "'18446744073709551615'")}),
    "model_version default": (message(), {1: ("str", "'1'")}),
    "record_id of 256 characters, 512 bytes": (message(("record_id", "é" * 256)), {6: ("str", repr("é" * 256))}),
    "record_id of 256 astral characters": (message(("record_id", "😀" * 256)), {6: ("str", repr("😀" * 256))}),
    "record_id of 1 character": (message(("record_id", "x")), {6: ("str", "'x'")}),
    "model of 128 characters": (message(("model", "a" * 128)), {0: ("str", repr("a" * 128))}),
    "model_version of 64 characters": (message(("model_version", "v" * 64)), {1: ("str", repr("v" * 64))}),
    "escaped key": (message((Raw(b'"record_\\u0069d"'), "b")), {6: ("str", "'b'")}),
    "escaped astral character": (message(("record_id", Raw(b'"\\ud83d\\ude00"'))), {6: ("str", "'😀'")}),
    "duplicate score: the last wins": (message(("score", 5), ("score", 0.75)), {5: ("float", "0.75")}),
    "duplicate target: the last wins": (message(("target", 1), ("target", 0)), {4: ("int", "1")}),
    "duplicate feature: the last wins, in the first place": (
        message(("features", Pairs([("a", 1), ("b", 2), ("a", 3.5)]))),
        {7: ("dict", [("a", ("float", "3.5")), ("b", ("int", "2"))])}),
    "duplicate features object": (message(("features", {"a": [1]}), ("features", {"a": 1})),
                                  {7: ("dict", [("a", ("int", "1"))])}),
    "REF_DATE alias": (message(base=(("record_id", "a"), ("model", "m"), ("REF_DATE", "2024-02-29"), ("score", 0.5))),
                       {2: ("str", "'2024-02-29'"), 3: ("str", "'2024-02'")}),
    "ref_date wins over REF_DATE, even an invalid one": (message(("REF_DATE", 5)), {2: ("str", "'2024-03-05'")}),
    "TARGET alias": (message(("TARGET", 1)), {4: ("int", "0")}),
    "target wins over TARGET": (message(("TARGET", 1), ("target", 0)), {4: ("int", "1")}),
    "a null target wins over TARGET": (message(("target", None), ("TARGET", 1)), {4: ("int", "2")}),
    "target wins over an invalid TARGET": (message(("target", 1), ("TARGET", "x")), {4: ("int", "0")}),
    "datetime ref_date (pydantic)": (message(("ref_date", "2024-03-05T23:59:59Z")), {2: ("str", "'2024-03-05'")}),
    "unknown fields are ignored": (message(("extra", {"nested": [1, 2]}), ("Model", 5)), {0: ("str", "'m'")}),
    "unknown field with a huge int (orjson: float)": (message(("extra", Raw(b"123456789012345678901234567890"))),
                                                      {0: ("str", "'m'")}),
    "deep nesting in an unknown field (msgspec: RecursionError, orjson: no limit)": (
        message(("extra", Raw(b"[" * 3000 + b"]" * 3000))), {0: ("str", "'m'")}),
    "feature scalars keep their types": (
        message(("features", {"s": "x", "i": 3, "f": 3.0, "b": False, "n": None, "z": -0.0})),
        {7: ("dict", [("s", ("str", "'x'")), ("i", ("int", "3")), ("f", ("float", "3.0")), ("b", ("bool", "False")),
                      ("n", ("NoneType", "None")), ("z", ("float", "-0.0"))])}),
    "feature int64 max": (message(("features", {"a": 2**63 - 1})), {7: ("dict", [("a", ("int", repr(2**63 - 1)))])}),
    "feature int above int64 (orjson: int)": (message(("features", {"a": Raw(b"18446744073709551615")})),
                                              {7: ("dict", [("a", ("int", "18446744073709551615"))])}),
    "feature int above uint64 (orjson: float)": (message(("features", {"a": Raw(b"18446744073709551616")})),
                                                 {7: ("dict", [("a", ("float", "1.8446744073709552e+19"))])}),
    "2000 features": (message(("features", {f"f{i}": i for i in range(2000)})), {}),
    "null features": (message(("features", None)), {7: ("NoneType", "None")}),
    "empty features": (message(("features", {})), {7: ("dict", [])}),
}


@pytest.mark.parametrize("value, expected", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_edge_cases_accepted_like_the_contract(value, expected):
    assert_agrees(value)
    (record,) = fast(value)[1]
    for index, part in expected.items():
        assert record[1][index] == part
    assert fast(dumps([Pairs(COMMON.items()), Raw(value)]))[1][1] == record  # the same inside an array


REFUSED = {
    "bool score": message(("score", True)),
    "string score": message(("score", "0.5")),
    "score above 1": message(("score", 1.0000001)),
    "int score above 1": message(("score", 2)),
    "huge int score": message(("score", Raw(b"123456789012345678901234567890"))),
    "score 1e400": message(("score", Raw(b"1e400"))),
    "negative score": message(("score", -0.01)),
    "null score": message(("score", None)),
    "bool target true": message(("target", True)),
    "bool target false": message(("target", False)),
    "bool TARGET": message(("TARGET", True)),
    "string target": message(("target", "1")),
    "target 2": message(("target", 2)),
    "target 0.5": message(("target", 0.5)),
    "TARGET 1.5": message(("TARGET", 1.5)),
    "null model_version": message(("model_version", None)),
    "float model_version": message(("model_version", 2.0)),
    "bool model_version": message(("model_version", True)),
    "model_version above uint64 (orjson: float)": message(("model_version", Raw(b"18446744073709551616"))),
    "huge model_version": message(("model_version", Raw(b"123456789012345678901234567890"))),
    "model_version of 65 characters": message(("model_version", "v" * 65)),
    "model_version with a newline": message(("model_version", "v\n")),
    "model with a newline": message(("model", "m\n")),
    "model with a space": message(("model", "m 1")),
    "non-ASCII model": message(("model", "mé")),
    "model of 129 characters": message(("model", "a" * 129)),
    "empty model": message(("model", "")),
    "empty record_id": message(("record_id", "")),
    "record_id of 257 characters": message(("record_id", "é" * 257)),
    "record_id of 257 astral characters": message(("record_id", "😀" * 257)),
    "int record_id": message(("record_id", 5)),
    "no record_id": message(base=(("model", "m"), ("ref_date", "2024-03-05"), ("score", 0.5))),
    "no date": message(base=(("record_id", "a"), ("model", "m"), ("score", 0.5))),
    "null ref_date wins over REF_DATE": message(("ref_date", None), ("REF_DATE", "2024-03-05")),
    "invalid date": message(("ref_date", "2024-02-30")),
    "week date": message(("ref_date", "2024-W10-1")),
    "date with a newline": message(("ref_date", "2024-03-05\n")),
    "duplicate score: an invalid last wins": message(("score", 0.5), ("score", 5)),
    "duplicate target: an invalid last wins": message(("target", 0), ("target", True)),
    "nested feature": message(("features", {"a": [1]})),
    "object feature": message(("features", {"a": {"b": 1}})),
    "2001 features": message(("features", {f"f{i}": i for i in range(2001)})),
    "features not an object": message(("features", [1, 2])),
    "feature 1e400": message(("features", {"a": Raw(b"1e400")})),
    "invalid UTF-8 in an unknown field": message(("extra", Raw(b'"\xff"'))),
    "invalid UTF-8 in an unknown key": message((Raw(b'"\xff"'), 1)),
    "UTF-8 surrogate in an unknown field": message(("extra", Raw(b'"\xed\xa0\x80"'))),
    "1e400 in an unknown field": message(("extra", Raw(b"1e400"))),
    "lone surrogate in an unknown field": message(("extra", Raw(b'"\\ud800"'))),
    "invalid UTF-8 in record_id": message(("record_id", Raw(b'"\xff"'))),
    "invalid UTF-8 in a feature key": message(("features", Pairs([(Raw(b'"\xff"'), 1)]))),
    "invalid UTF-8 in a feature": message(("features", {"a": Raw(b'"\xff"')})),
    "lone surrogate in model": message(("model", Raw(b'"\\udc00"'))),
    "control character in a string": message(("record_id", Raw(b'"a\x01"'))),
    "trailing comma": message(("extra", Raw(b"[1,]"))),
    "leading zero": message(("score", Raw(b"00"))),
}


@pytest.mark.parametrize("value", REFUSED.values(), ids=REFUSED.keys())
def test_edge_cases_refused_like_the_contract(value):
    assert_agrees(value)
    assert fast(value)[0] == "invalid"
    assert _decode_msgspec(value) is None
    inside = dumps([Pairs(COMMON.items()), Raw(value)])  # one bad record refuses the whole array
    assert_agrees(inside)
    assert fast(inside)[0] == "invalid"


def test_the_common_record_takes_the_msgspec_tier():
    value = dumps([COMMON, {**COMMON, "model_version": 3, "target": None, "features": None},
                   {k: v for k, v in COMMON.items() if k not in ("target", "model_version")} | {"TARGET": 1}])
    assert _decode_msgspec(value) == decode_fast(value) == decode_orjson(value)
    assert [r[1] for r in decode_fast(value)] == ["1", "3", "1"]
    assert [r[4] for r in decode_fast(value)] == [1, 2, 0]
    assert_agrees(value)
