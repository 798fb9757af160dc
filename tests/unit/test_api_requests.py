"""The API without Redis: request validation, the classic computations against scikit-learn / scipy,
the Prometheus exposition of a state, the response cache and the OpenAPI document."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from scipy import stats as sps

from monitor.api.app import create_api
from monitor.api.cache import ResponseCache
from monitor.api.classic_engine import (
    ClassicRecord,
    adherence_of,
    performance_of,
    records_frame,
)
from monitor.api.lag import PartitionLag
from monitor.api.metrics import (
    ALERTS_FIRING,
    EXPOSED_NAMES,
    RECORDS,
    WINDOW_METRICS,
    _Families,
    lag_families,
    state_families,
)
from monitor.api.schemas import AdherenceRequest
from monitor.errors import MonitorError
from monitor.settings import Settings
from monitor.stats import (
    LabelledHistograms,
    ScoreHistogram,
    compute_metrics,
    psi,
    quantize,
)
from tests.conftest import API_TOKENS, api_headers

OFFLINE = Settings(redis_url="redis://127.0.0.1:1/0", api_tokens=API_TOKENS)


# ---- request validation -------------------------------------------------------------------------
@pytest.mark.parametrize("record", [
    {"REF_DATE": "2024-03-05", "TARGET": 1, "score": 0.3},
    {"ref_date": "2024-03-05T10:11:12Z", "target": 0, "score": 0},
    {"REF_DATE": "2024-03-05", "TARGET": None, "income": 10.5, "purpose": "car", "flag": True, "gap": None},
    {"REF_DATE": "2024-03-05", "features": {"income": 10.5}},
    {"REF_DATE": "2024-03-05", "TARGET": 1.0, "score": 1},
])
def test_valid_records(record):
    ClassicRecord.model_validate(record)


@pytest.mark.parametrize("record,field", [
    ({"TARGET": 1, "score": 0.3}, "REF_DATE"),
    ({"REF_DATE": "2024-02-30", "score": 0.3}, "REF_DATE"),
    ({"REF_DATE": "yesterday", "score": 0.3}, "REF_DATE"),
    ({"REF_DATE": "2024-03-05T25:00:00", "score": 0.3}, "REF_DATE"),
    ({"REF_DATE": "2024-03-05", "TARGET": 2}, "TARGET"),
    ({"REF_DATE": "2024-03-05", "TARGET": "1"}, "TARGET"),
    ({"REF_DATE": "2024-03-05", "TARGET": True}, "TARGET"),
    ({"REF_DATE": "2024-03-05", "score": 1.5}, "score"),
    ({"REF_DATE": "2024-03-05", "score": -0.1}, "score"),
    ({"REF_DATE": "2024-03-05", "score": "0.3"}, "score"),
    ({"REF_DATE": "2024-03-05", "score": True}, "score"),
    ({"REF_DATE": "2024-03-05", "income": {"nested": 1}}, "nested"),
    ({"REF_DATE": "2024-03-05", "income": [1, 2]}, "income"),
    ({"REF_DATE": "2024-03-05", "features": {"x": [1]}}, "features"),
])
def test_invalid_records_say_which_field(record, field):
    with pytest.raises(ValidationError) as err:
        ClassicRecord.model_validate(record)
    assert field in str(err.value)


def test_nan_score_is_refused():
    with pytest.raises(ValidationError, match="finite"):
        ClassicRecord.model_validate({"REF_DATE": "2024-03-05", "score": float("nan")})


def test_records_frame_merges_features_and_keeps_nulls():
    recs = [ClassicRecord.model_validate(r) for r in [
        {"REF_DATE": "2024-01-02", "TARGET": 1, "income": 5.0, "features": {"purpose": "car"}},
        {"REF_DATE": "2024-02-03", "score": 0.25, "income": None}]]
    frame = records_frame(recs)
    assert list(frame.columns[:3]) == ["REF_DATE", "TARGET", "score"]
    assert frame["income"].tolist()[0] == 5.0 and frame["income"].isna().tolist()[1]
    assert frame["purpose"].tolist()[0] == "car"
    assert np.isnan(frame["TARGET"].iloc[1]) and np.isnan(frame["score"].iloc[0])
    with pytest.raises(MonitorError, match="no records"):
        records_frame([])


@pytest.mark.parametrize("body", [{}, {"path": ""}, {"path": "a.csv", "extra": 1}, {"path": "a.csv", "model": "../x"},
                                  {"path": "a.csv", "version": "1 OR 1"}, {"path": 3}])
def test_adherence_request_validation(body):
    with pytest.raises(ValidationError):
        AdherenceRequest.model_validate(body)


async def _offline_client():
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_api(OFFLINE, measure_lag=False)),
                             base_url="http://api", headers=api_headers())


@pytest.mark.parametrize("body,where", [
    ({"REF_DATE": "2024-01-01", "score": 0.2}, "body"),  # an object, not a list
    ([], "body"),
    ([{"REF_DATE": "2024-01-01", "TARGET": 2, "score": 0.2}], "body.0.TARGET"),
    ([{"REF_DATE": "2024-01-01", "score": 0.2}, {"score": 0.2}], "body.1.REF_DATE"),
    ("not json", "body"),
])
async def test_bad_performance_bodies_get_422_with_the_reason(body, where):
    async with await _offline_client() as client:
        if body == "not json":
            resp = await client.post("/v1/performance/default", content=b"{not json",
                                     headers={"content-type": "application/json"})
        else:
            resp = await client.post("/v1/performance/default", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"].startswith(where), resp.json()


@pytest.mark.parametrize("url", ["/v1/performance/bad%20name", "/models/m/versions/1/months/2024-13",
                                 "/models/m/versions/1/months/24-01", "/alerts?status=maybe", "/alerts?limit=0",
                                 "/alerts?window=weekly"])
async def test_bad_parameters_get_422(url):
    async with await _offline_client() as client:
        resp = await (client.post(url, json=[{"REF_DATE": "2024-01-01", "score": 0.1}]) if url.startswith("/v1")
                      else client.get(url))
    assert resp.status_code == 422, resp.text


async def test_redis_down_is_503_with_a_reason():
    from monitor.api.app import running

    app = create_api(OFFLINE, measure_lag=False)
    async with running(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api", headers=api_headers()) as client:
            health = await client.get("/health")
            models = await client.get("/models")
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert models.status_code == 503 and "Redis" in models.json()["detail"]


# ---- the classic computations are the engine's, and equal to scikit-learn / scipy ---------------
# Performance on raw scores (issue 19): tests/unit/test_classic_raw.py.


def test_performance_without_labels_has_volumetry_and_no_auc():
    recs = [ClassicRecord.model_validate({"REF_DATE": "2024-01-02", "score": 0.1})] * 3
    result = performance_of(records_frame(recs), np.full(3, 0.1), 1e-4)
    assert result["volumetry"] == {"2024-01": 3} and result["auc"] is None and result["gini"] is None


def test_adherence_on_a_histogram_reference_equals_scipy_ks_2samp_of_the_binned_scores_and_the_engine_psi():
    rng = np.random.default_rng(9)
    ref_scores = rng.beta(2, 5, 4000)
    live_scores = rng.beta(2.4, 5, 2500)
    reference = ScoreHistogram.from_scores(ref_scores, 1e-4)
    result = adherence_of(live_scores, reference, np.array(["2024-05"] * 2500))
    scipy = sps.ks_2samp(quantize(live_scores), quantize(ref_scores))
    assert result["ks_d"] == pytest.approx(scipy.statistic, abs=1e-12)
    assert result["ks_pvalue"] == pytest.approx(scipy.pvalue, rel=1e-9)
    assert result["psi"] == psi(ScoreHistogram.from_scores(live_scores, 1e-4), reference)
    assert result["records"] == 2500 and result["reference_n"] == 4000 and result["volumetry"] == {"2024-05": 2500}


# ---- Prometheus exposition ----------------------------------------------------------------------
def _state() -> list[dict]:
    h = LabelledHistograms.empty(1e-4)
    h.pos.update_many([0.8, 0.7, 0.4])
    h.neg.update_many([0.1, 0.3, 0.5, 0.2])
    ref = ScoreHistogram.from_scores([0.1, 0.2, 0.3, 0.6, 0.9], 1e-4)
    m = compute_metrics(h, ref).to_dict()
    no_ref = compute_metrics(h, None).to_dict()
    return [{"model": "default", "model_version": "2", "reference": {"n": 5},
             "alert_states": {"psi|month|2024-02": {"status": "firing", "phase": "provisional", "severity": "critical",
                                                    "month": "2024-02"},
                              "auc|rolling|2024-02": {"status": "ok", "phase": "final", "severity": "warning",
                                                      "month": "2024-02"}},
             "months": [{"month": "2024-01", "counts": {"n": 7, "bad": 3, "good": 4, "unlabeled": 0},
                         "windows": {"month": m, "rolling": m, "cumulative": no_ref},
                         "computed_at": "2024-02-01T00:00:00+00:00"},
                        {"month": "2024-02", "counts": {"n": 1, "bad": 0, "good": 0, "unlabeled": 1},
                         "windows": None, "computed_at": None}]}]


def _samples(families) -> dict[tuple, float]:
    from prometheus_client.exposition import generate_latest

    text = generate_latest(_Families(families)).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_state_families_expose_every_value_and_no_nan():
    state = _state()
    samples = _samples(state_families(state, {"records": 8, "dead_lettered": 2, "batches": 3}))
    names = {name for name, _ in samples}
    assert names <= EXPOSED_NAMES
    month = (("model", "default"), ("month", "2024-01"), ("version", "2"))
    assert samples[(RECORDS, month)] == 7
    m = state[0]["months"][0]["windows"]["month"]
    for name, (field, _) in WINDOW_METRICS.items():
        key = (name, tuple(sorted((*month, ("window", "month")))))
        assert samples[key] == pytest.approx(m[field]), name
    assert (("credit_monitor_psi", tuple(sorted((*month, ("window", "cumulative")))))) not in samples  # None: no sample
    def alert(rule, window, phase):
        return (ALERTS_FIRING, (("model", "default"), ("month", "2024-02"), ("phase", phase), ("rule", rule),
                                ("version", "2"), ("window", window)))

    assert samples[alert("psi", "month", "provisional")] == 1
    assert samples[alert("auc", "rolling", "final")] == 0
    assert samples[("credit_monitor_month_alerts_firing",
                    (("model", "default"), ("month", "2024-02"), ("version", "2")))] == 1
    assert samples[("credit_monitor_worker_records_total", ())] == 8
    assert samples[("credit_monitor_worker_duplicates_skipped_total", ())] == 0
    assert not any(v != v for v in samples.values())  # no NaN


def test_lag_families():
    parts = [PartitionLag("t", 0, 10, 7, 3), PartitionLag("t", 1, 5, None, 5)]
    samples = _samples(lag_families(parts, None, "g"))
    assert samples[("credit_monitor_consumer_lag", (("group", "g"), ("partition", "0"), ("topic", "t")))] == 3
    assert samples[("credit_monitor_consumer_lag", (("group", "g"), ("partition", "1"), ("topic", "t")))] == 5
    assert ("credit_monitor_consumer_committed_offset", (("group", "g"), ("partition", "1"), ("topic", "t"))) not in samples
    assert samples[("credit_monitor_consumer_lag_up", ())] == 1
    assert _samples(lag_families(None, "TimeoutError", "g"))[("credit_monitor_consumer_lag_up", ())] == 0


# ---- response cache -----------------------------------------------------------------------------
async def test_cache_expires_and_never_keeps_errors():
    cache = ResponseCache(ttl_s=0.05)
    calls = []

    async def ok():
        calls.append("ok")
        return b"1"

    async def boom():
        calls.append("boom")
        raise MonitorError("no")

    assert await cache.get("k", ok) == b"1" and await cache.get("k", ok) == b"1" and calls == ["ok"]
    await asyncio.sleep(0.06)
    assert cache.peek("k") is None
    await cache.get("k", ok)
    assert calls == ["ok", "ok"]
    for _ in range(2):
        with pytest.raises(MonitorError):
            await cache.get("e", boom)
    assert calls.count("boom") == 2 and cache.peek("e") is None
    assert await ResponseCache(ttl_s=0).get("k", ok) == b"1" and calls.count("ok") == 3


# ---- OpenAPI ------------------------------------------------------------------------------------
def test_openapi_documents_every_endpoint_with_its_models():
    spec = create_api(OFFLINE, measure_lag=False).openapi()
    paths = spec["paths"]
    for path in ("/health", "/models", "/models/{model}/versions/{version}/months",
                 "/models/{model}/versions/{version}/months/{month}", "/alerts", "/alerts/states",
                 "/v1/performance/{model_from}", "/v1/performance/", "/v1/aderencia/", "/metrics", "/dashboard/data",
                 "/"):
        assert path in paths, path
    schemas = spec["components"]["schemas"]
    for name in ("PerformanceResult", "AdherenceResult", "AdherenceRequest", "MonthDetail", "MonthRow",
                 "ModelSummary", "AlertEvent", "ClassicRecord", "MetricSetModel", "ErrorBody"):
        assert name in schemas, name
    perf = paths["/v1/performance/{model_from}"]["post"]
    assert set(perf["responses"]) >= {"200", "404", "422"}
    assert "ks_bound" in schemas["MetricSetModel"]["properties"] and "auc_bound" in schemas["MetricSetModel"]["properties"]
