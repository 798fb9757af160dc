"""Bounded input: the pure checks (time window, value length, cardinality admission)."""

from __future__ import annotations

import datetime as dt

import pytest

from monitor.bounds import (
    CardinalityGate,
    CardinalityLimits,
    OutOfBounds,
    RecordBounds,
    check_bounds,
)
from monitor.errors import InvalidRecord
from monitor.worker.fastpath import decode_fast
from monitor.settings import Settings
from monitor.stats import (
    CategoricalReference,
    FeatureCounter,
    FeatureProfile,
    NumericReference,
)
from monitor.stats.features import OTHER, UNSEEN_NAMES_PART

TODAY = dt.date(2026, 11, 30)


def records(*dates: str, model: str = "m", features: dict | None = None) -> list[tuple]:
    return [(model, "1", d, d[:7], 0, 0.5, f"r{i}", features) for i, d in enumerate(dates)]


def test_settings_defaults_and_env_names(monkeypatch):
    s = Settings()
    assert (s.max_event_age_days, s.max_event_future_days, s.max_months_per_model, s.max_models,
            s.require_reference, s.max_feature_value_chars, s.max_unseen_categories) == (7305, 7, 240, 2000, False, 256, 100)
    monkeypatch.setenv("MONITOR_MAX_EVENT_FUTURE_DAYS", "0")
    monkeypatch.setenv("MONITOR_REQUIRE_REFERENCE", "true")
    assert (Settings().max_event_future_days, Settings().require_reference) == (0, True)
    for name in ("max_event_age_days", "max_event_future_days", "max_months_per_model", "max_models",
                 "require_reference", "max_feature_value_chars", "max_unseen_categories"):
        assert f"MONITOR_{name.upper()}" in Settings.model_fields[name].description


def test_a_date_far_in_the_future_is_out_of_bounds_with_its_setting():
    with pytest.raises(OutOfBounds) as exc:
        check_bounds(records("2024-03-05", "9999-12-31"), RecordBounds(), TODAY)
    assert str(exc.value) == ("record 1: ref_date 9999-12-31 is more than 7 days after today 2026-11-30 "
                              "(MONITOR_MAX_EVENT_FUTURE_DAYS)")
    assert isinstance(exc.value, InvalidRecord)  # dead-lettered like any invalid record


def test_the_window_is_inclusive_at_both_ends():
    bounds = RecordBounds(max_event_age_days=10, max_event_future_days=7)
    check_bounds(records("2026-11-20", "2026-12-07"), bounds, TODAY)
    with pytest.raises(OutOfBounds, match=r"record 0: ref_date 2026-12-08 is more than 7 days after"):
        check_bounds(records("2026-12-08"), bounds, TODAY)
    with pytest.raises(OutOfBounds, match=r"record 0: ref_date 2026-11-19 is more than 10 days before today "
                                          r"2026-11-30 \(MONITOR_MAX_EVENT_AGE_DAYS\)"):
        check_bounds(records("2026-11-19"), bounds, TODAY)


def test_zero_turns_each_side_of_the_window_off():
    check_bounds(records("0001-01-01", "9999-12-31"), RecordBounds(max_event_age_days=0, max_event_future_days=0), TODAY)
    with pytest.raises(OutOfBounds, match="MONITOR_MAX_EVENT_AGE_DAYS"):
        check_bounds(records("0001-01-01"), RecordBounds(max_event_future_days=0), TODAY)
    # A bound beyond the calendar is no bound (no OverflowError).
    check_bounds(records("0001-01-01"), RecordBounds(max_event_age_days=10**7), TODAY)


def test_defaults_keep_the_bundled_data_valid():
    # datasets: 2016 and 2018; synthetic/demo data and tests: 2024.
    check_bounds(records("2016-01-01", "2018-03-31", "2024-06-30"), RecordBounds(), TODAY)


def test_a_long_string_feature_value_is_out_of_bounds():
    bounds = RecordBounds(max_feature_value_chars=8)
    check_bounds(records("2024-01-01", features={"a": "x" * 8, "n": 10**12, "b": True, "z": None}), bounds, TODAY)
    with pytest.raises(OutOfBounds) as exc:
        check_bounds(records("2024-01-01", "2024-01-02", features={"purpose": "y" * 9}), bounds, TODAY)
    assert str(exc.value) == "record 0: features.purpose: a string of 9 characters, more than 8 (MONITOR_MAX_FEATURE_VALUE_CHARS)"
    check_bounds(records("2024-01-01", features={"purpose": "y" * 9}), RecordBounds(max_feature_value_chars=0), TODAY)


def test_bounds_apply_to_what_the_decoder_returns():
    value = b'[{"record_id": "a", "model": "m", "ref_date": "2024-03-05", "score": 0.1},' \
            b' {"record_id": "b", "model": "m", "ref_date": "9999-12-31T10:00:00Z", "score": 0.1}]'
    with pytest.raises(OutOfBounds, match="record 1: ref_date 9999-12-31"):
        check_bounds(decode_fast(value), RecordBounds(), TODAY)


def gate(limits: CardinalityLimits, models: set | None = None, months: dict | None = None,
         referenced: set | None = None) -> CardinalityGate:
    models = models if models is not None else set()
    months = months or {}
    return CardinalityGate(limits, models_stored=len(models), known_models=set(models),
                           months_stored={k: len(v) for k, v in months.items()},
                           known_months={k: set(v) for k, v in months.items()}, referenced=referenced or set())


def test_a_model_beyond_the_cap_is_refused_and_known_ones_pass():
    g = gate(CardinalityLimits(max_models=2), models={("a", "1")})
    g.admit(records("2024-01-01", model="a"))
    g.admit(records("2024-01-01", model="b"))                       # the second model
    with pytest.raises(OutOfBounds) as exc:
        g.admit(records("2024-01-01", model="c"))
    assert str(exc.value) == "record 0: model c:1 is new and 2 models are already known (MONITOR_MAX_MODELS)"
    g.admit(records("2024-02-01", model="b"))                       # b is known now


def test_months_beyond_the_cap_are_refused_and_a_refused_message_admits_nothing():
    g = gate(CardinalityLimits(max_months_per_model=3), models={("m", "1")}, months={("m", "1"): {"2024-01"}})
    g.admit(records("2024-01-05", "2024-02-01"))
    mixed = records("2024-03-01", "2024-04-01") + records("2024-01-01", model="other")
    with pytest.raises(OutOfBounds) as exc:
        g.admit(mixed)
    assert str(exc.value) == ("record 1: month 2024-04 of m:1 is new and the model already has 3 months "
                              "(MONITOR_MAX_MONTHS_PER_MODEL)")
    g.admit(records("2024-03-09"))                                  # 2024-03 was not admitted above: room for it
    with pytest.raises(OutOfBounds, match="MONITOR_MAX_MONTHS_PER_MODEL"):
        g.admit(records("2024-05-01"))
    g.admit(records("2024-01-31", "2024-03-01"))                    # known months always pass
    assert ("other", "1") not in g.known_models                     # the refused message added no model


def test_require_reference_accepts_only_models_with_a_reference():
    g = gate(CardinalityLimits(require_reference=True), models={("m", "1"), ("x", "1")}, referenced={("m", "1")})
    g.admit(records("2024-01-01"))
    with pytest.raises(OutOfBounds) as exc:
        g.admit(records("2024-01-01", model="x"))
    assert str(exc.value) == "record 0: model x:1 has no reference loaded (MONITOR_REQUIRE_REFERENCE)"


def test_zero_turns_the_caps_off():
    g = gate(CardinalityLimits(max_models=0, max_months_per_model=0))
    for i in range(50):
        g.admit(records(f"{1990 + i}-01-01", model=f"m{i}"))


def test_unseen_names_are_split_from_the_profile_buckets():
    p = FeatureProfile({"x": NumericReference((0.0,), (1, 1)), "c": CategoricalReference({"a": 1, "missing": 1})})
    c = FeatureCounter(p)
    for value in ("a", "new", "missing", "~t", None):
        c.update({"x": 1.0, "c": value})
    fixed, unseen = c.split_redis_fields()
    assert fixed == {"x|1": 5, "c|missing": 1, "c|a": 1, "c|~missing": 1}
    assert unseen == {"c|new": 1, "c|~~t": 1}
    assert {**fixed, **unseen} == c.to_redis_fields()


def test_the_unseen_names_counter_field_is_not_a_category():
    p = FeatureProfile({"c": CategoricalReference({"a": 1})})
    read = FeatureCounter.from_redis_fields({b"c|a": b"2", b"c|zz": b"1", f"c|{OTHER}".encode(): b"4",
                                             f"c|{UNSEEN_NAMES_PART}".encode(): b"1"}, p)
    assert read.counts("c") == {"a": 2, "zz": 1, OTHER: 4}


def test_a_message_tier_one_decoded_needs_no_value_scan_and_a_long_value_still_decodes():
    from monitor.worker.fastpath import FAST_FEATURE_VALUE_CHARS, decode_tiered
    from monitor.schema import decode_records

    short = b'{"record_id": "a", "model": "m", "ref_date": "2024-03-05", "score": 0.5, "features": {"c": "OWN"}}'
    records, within = decode_tiered(short)
    assert within == FAST_FEATURE_VALUE_CHARS
    check_bounds(records, RecordBounds(max_feature_value_chars=FAST_FEATURE_VALUE_CHARS), TODAY, within)
    long = short.replace(b'"OWN"', b'"' + "é".encode() * 300 + b'"')
    records, within = decode_tiered(long)                              # the next tier takes it, as the contract does
    assert within is None and records[0][7] == decode_records(long)[0].features == {"c": "é" * 300}
    with pytest.raises(OutOfBounds, match="a string of 300 characters, more than 256"):
        check_bounds(records, RecordBounds(), TODAY, within)
    check_bounds(records, RecordBounds(max_feature_value_chars=300), TODAY, within)
