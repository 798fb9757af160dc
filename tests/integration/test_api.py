"""The HTTP API against the real Redis of the session: every state endpoint equals what monitor.stats
computes from the histograms in Redis, the classic endpoints answer the examples of docs/api.md
exactly, and errors are 404 / 400 / 422 with a reason.

The state is written by the worker's own code (monitor.api.sample: BatchProcessor, then
MetricsUpdater month after month), with real Redis and no broker.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from models.registry import Registry
from models.train import score_frame, train
from monitor.alerts.lifecycle import AlertEvent, parse_alert_field
from monitor.api.sample import load_scenario
from monitor.api.schemas import (
    AdherenceResult,
    AlertState,
    Health,
    ModelSummary,
    MonthDetail,
    MonthRow,
    PerformanceResult,
)
from monitor.ops.reference import save_reference
from monitor.state import Store
from monitor.stats import LabelledHistograms, ScoreHistogram, compute_metrics
from monitor.stats.ks import ks_adherence
from monitor.stats.windows import previous_months
from producers.synthetic import Scenario
from tests.conftest import api_client, unique_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "api.md"
# Drift in months 2 and 3 (score shift and performance decay), back to normal after: alerts fire, then resolve.
SCENARIO = Scenario(name="api", model="api-model", model_version="3", months=6, monthly_volume=1000, drift_start=2,
                    drift_end=4, score_shift=0.9, performance_decay=0.7, label_fraction=0.9)


def doc_examples() -> dict[tuple[str, str | None], object]:
    """The examples of docs/api.md: ``<!-- example: NAME [request|response] -->`` then a fenced block."""
    out = {}
    pattern = r"<!-- example: (\S+)(?: (request|response))? -->\s*```(\w+)\n(.*?)```"
    for name, part, lang, body in re.findall(pattern, DOCS.read_text(), re.S):
        out[(name, part or None)] = json.loads(body) if lang == "json" else body
    return out


def assert_matches(actual, documented, where="response") -> None:
    """Equal to the documented value (floats to 1e-9 relative), ignoring ``computed_at``."""
    if isinstance(documented, dict):
        assert set(actual) == set(documented), f"{where}: keys {sorted(actual)} != {sorted(documented)}"
        for key, value in documented.items():
            if key != "computed_at":
                assert_matches(actual[key], value, f"{where}.{key}")
    elif isinstance(documented, list):
        assert len(actual) == len(documented), where
        for i, (a, d) in enumerate(zip(actual, documented)):
            assert_matches(a, d, f"{where}[{i}]")
    elif isinstance(documented, float):
        assert actual == pytest.approx(documented, rel=1e-9, abs=1e-12), where
    else:
        assert actual == documented, where


@pytest.fixture(scope="module")
def registry(api_settings, data_dir) -> Registry:
    """The documented setup: `monitor models train ...` lines (same calls) and the data file command.

    The artifacts' trusted sha256 go to the API's Redis under its key prefix (the default ledger)."""
    reg = Registry(api_settings.models_dir, settings=api_settings)
    setup = doc_examples()[("setup", None)]
    trained = 0
    for line in setup.splitlines():
        words = shlex.split(line, comments=True)
        if words[:3] == ["monitor", "models", "train"]:
            opts = dict(zip(words[3::2], words[4::2]))
            train(opts["--dataset"], opts["--kind"], opts["--name"], registry=reg)
            trained += 1
        elif words[:1] == ["mkdir"]:
            (data_dir / words[-1]).mkdir(parents=True, exist_ok=True)
        elif words[:2] == ["python", "-c"]:
            subprocess.run([sys.executable, "-c", words[2]], cwd=data_dir, check=True, timeout=120)
    assert trained == 2 and reg.names() == ["default", "enhanced"]
    return reg


@pytest_asyncio.fixture(scope="module")
async def counts(api_settings) -> dict[str, int]:
    return await load_scenario(api_settings, SCENARIO, reference_n=8000)


@pytest_asyncio.fixture(scope="module")
async def client(api_settings, counts, registry):
    async with api_client(api_settings, cache_ttl_s=0) as c:
        yield c


@pytest_asyncio.fixture(scope="module")
async def store(api_settings):
    s = Store.connect(api_settings)
    yield s
    await s.close()


M, V = SCENARIO.model, SCENARIO.model_version


async def engine_windows(store: Store, months: list[str], month: str, rolling_months: int) -> dict[str, dict]:
    """What monitor.stats computes from the histograms in Redis for one month's three windows."""
    hists = await store.histograms(M, V, months)
    reference, _ = await store.reference(M, V)
    rolling = LabelledHistograms.empty(store.settings.resolution)
    for m in previous_months(month, rolling_months):
        if m in hists:
            rolling += hists[m]
    cumulative = LabelledHistograms.empty(store.settings.resolution)
    for m in months:
        if m <= month:
            cumulative += hists[m]
    return {"month": compute_metrics(hists[month], reference).to_dict(),
            "rolling": compute_metrics(rolling, reference).to_dict(),
            "cumulative": compute_metrics(cumulative, reference).to_dict()}


# ---- state endpoints ----------------------------------------------------------------------------
async def test_health(client, api_settings):
    resp = await client.get("/health")
    assert resp.status_code == 200
    body = Health.model_validate(resp.json())
    assert body.status == "ok" and body.redis and body.models == 1 and body.key_prefix == api_settings.key_prefix


async def test_models(client, counts, store):
    resp = await client.get("/models")
    assert resp.status_code == 200
    (model,) = [ModelSummary.model_validate(m) for m in resp.json()]
    assert (model.model, model.model_version) == (M, V)
    assert model.months == sorted(counts) and model.records == sum(counts.values())
    assert model.reference.n == 8000 and model.watermark == (await store.watermark(M, V))
    firing = {parse_alert_field(k, s) for k, s in (await store.alert_states(M, V)).items() if s["status"] == "firing"}
    assert firing and {(a.rule, a.window, a.month) for a in model.firing_alerts} == firing


async def test_months_and_each_month_equal_the_engine(client, counts, store, api_settings):
    resp = await client.get(f"/models/{M}/versions/{V}/months")
    assert resp.status_code == 200
    rows = [MonthRow.model_validate(r) for r in resp.json()]
    months = sorted(counts)
    assert [r.month for r in rows] == months
    for row in rows:
        assert row.counts.model_dump() == await store.counts(M, V, row.month)
        assert row.counts.n == counts[row.month] and row.metrics_current
        detail = (await client.get(f"/models/{M}/versions/{V}/months/{row.month}")).json()
        MonthDetail.model_validate(detail)
        expected = await engine_windows(store, months, row.month, api_settings.rolling_months)
        assert detail["windows"] == expected  # exactly: same engine, same histograms
        assert detail["counts"] == row.counts.model_dump()
        assert detail["rolling_months"] == previous_months(row.month, api_settings.rolling_months)
        assert (row.auc, row.ks_d, row.psi, row.gini) == (expected["month"]["auc"], expected["month"]["ks_d"],
                                                          expected["month"]["psi"], expected["month"]["gini"])
        # error bounds are there for every window
        for window in expected.values():
            assert window["auc_bound"] is not None and window["ks_bound"] is not None
    # drifted months are far off the reference, the others are not
    assert rows[2].ks_d > 0.2 and rows[3].ks_d > 0.2 and rows[0].ks_d < 0.06 and rows[-1].ks_d < 0.06


async def test_firing_alerts_of_a_month(client, store):
    states = await store.alert_states(M, V)
    month = next(s["month"] for s in states.values() if s["status"] == "firing")
    detail = (await client.get(f"/models/{M}/versions/{V}/months/{month}")).json()
    expected = sorted((s["rule"], s["window"], s["phase"], s["severity"]) for k, s in states.items()
                      if s["status"] == "firing" and s["month"] == month)
    assert sorted((a["rule"], a["window"], a["phase"], a["severity"]) for a in detail["firing_alerts"]) == expected


@pytest.mark.parametrize("url,words", [
    ("/models/nope/versions/1/months", "unknown model nope:1"),
    (f"/models/{M}/versions/99/months", f"unknown model {M}:99"),
    (f"/models/nope/versions/{V}/months/2024-01", "unknown model"),
    (f"/models/{M}/versions/{V}/months/2019-01", "no records in 2019-01"),
])
async def test_unknown_model_version_or_month_is_404(client, url, words):
    resp = await client.get(url)
    assert resp.status_code == 404 and words in resp.json()["detail"], resp.text


async def test_alert_history_and_filters(client, store):
    history = [orjson.loads(raw) for raw in await store.redis.lrange(store.history_key(), 0, -1)]
    assert history, "the scenario fires alerts"
    resp = await client.get("/alerts", params={"limit": 10_000})
    assert resp.status_code == 200
    assert resp.json() == history
    for event in resp.json():
        AlertEvent.model_validate(event)
    for params in ({"status": "firing"}, {"status": "resolved"}, {"model": M, "rule": "psi"},
                   {"model": "other"}, {"window": "rolling", "status": "firing"}, {"version": V, "limit": 2}):
        got = (await client.get("/alerts", params=params)).json()
        limit = params.pop("limit", 10_000)
        field = {"version": "model_version"}
        want = [e for e in history if all(e[field.get(k, k)] == v for k, v in params.items())][:limit]
        assert got == want, params
    # Each drifted month fires while it is read (provisional) and again once the next month closes it
    # (final); whole months judged at once never resolve (a provisional verdict on a whole month is final).
    assert {e["phase"] for e in history} == {"provisional", "final"} and "firing" in {e["status"] for e in history}


async def test_alert_states(client, store):
    states = await store.alert_states(M, V)
    got = (await client.get("/alerts/states")).json()
    assert {(s["rule"], s["window"], s["month"]): (s["status"], s["phase"]) for s in got} == \
        {parse_alert_field(k, s): (s["status"], s["phase"]) for k, s in states.items()}
    for s in got:
        AlertState.model_validate(s)
    firing = (await client.get("/alerts/states", params={"status": "firing", "model": M})).json()
    assert firing and all(s["status"] == "firing" for s in firing)
    assert (await client.get("/alerts/states", params={"model": "other"})).json() == []


async def test_metrics_exposes_the_state(client, counts, store, api_settings):
    resp = await client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    months = sorted(counts)
    for month in months:
        labels = (("model", M), ("month", month), ("version", V))
        assert samples[("credit_monitor_records", labels)] == counts[month]
        expected = await engine_windows(store, months, month, api_settings.rolling_months)
        for window, metric, field in (("month", "credit_monitor_auc", "auc"), ("rolling", "credit_monitor_psi", "psi"),
                                      ("month", "credit_monitor_ks_adherence_d", "ks_d")):
            assert samples[(metric, tuple(sorted((*labels, ("window", window)))))] == pytest.approx(
                expected[window][field], rel=1e-12)
    for key, state in (await store.alert_states(M, V)).items():
        rule, window, month = parse_alert_field(key, state)
        value = samples[("credit_monitor_alerts_firing", (("model", M), ("month", month), ("phase", state["phase"]),
                                                          ("rule", rule), ("version", V), ("window", window)))]
        assert value == (1 if state["status"] == "firing" else 0)
    counters = await store.worker_counters()
    assert samples[("credit_monitor_worker_records_total", ())] == counters["records"] == sum(counts.values())
    assert samples[("credit_monitor_worker_batches_total", ())] == counters["batches"]


async def test_dashboard_data_and_page(client, counts):
    data = (await client.get("/dashboard/data")).json()
    (model,) = data["models"]
    assert model["months"] == sorted(counts) and model["counts"]["n"] == [counts[m] for m in sorted(counts)]
    assert model["thresholds"]["ks_warning"] == 0.1 and model["alerts"]
    page = await client.get("/")
    assert page.status_code == 200 and '<script src="/static/plotly.min.js">' in page.text
    assert f'"model":"{M}"' in page.text
    js = await client.get("/static/plotly.min.js", headers={"accept-encoding": "identity"})
    assert js.status_code == 200 and b"plotly.js v" in js.content[:200] and len(js.content) > 1_000_000


# ---- classic endpoints ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,url", [("performance-scores", "/v1/performance/enhanced"),
                                      ("performance-features", "/v1/performance/default"),
                                      ("aderencia", "/v1/aderencia/")])
async def test_classic_endpoints_answer_the_documented_examples(client, api_settings, name, url):
    examples = doc_examples()
    resp = await client.post(url, json=examples[(name, "request")])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    (PerformanceResult if "performance" in name else AdherenceResult).model_validate(body)
    assert_matches(body, examples[(name, "response")])
    # GET returns the last result, from Redis: also from another API process (a second app)
    last_url = "/v1/performance/" if "performance" in name else "/v1/aderencia/"
    assert (await client.get(last_url)).json() == body
    async with api_client(api_settings) as c2:
        assert (await c2.get(last_url)).json() == body


async def test_performance_with_features_equals_sklearn_on_the_models_raw_scores(client, registry):
    from datasets import load

    frame, _ = load("credit_data")
    sample = frame.sample(400, random_state=1).reset_index(drop=True)
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in sample.drop(columns=["record_id"]).to_dict("records")]
    body = (await client.post("/v1/performance/enhanced", json=records)).json()
    scores, _ = score_frame(registry.load("enhanced"), sample)  # raw: the batch endpoints do not bin (issue 19)
    y = sample["TARGET"].to_numpy()
    assert body["records"] == 400 and body["scored_by_model"] == 400 and body["model_version"] == "1"
    assert body["scores"] == "raw" and body["auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    months = sample["REF_DATE"].str.slice(0, 7).to_numpy()
    for row in body["months"]:
        mask = months == row["month"]
        assert row["n"] == int(mask.sum()) == body["volumetry"][row["month"]]
        assert row["auc"] == pytest.approx(roc_auc_score(y[mask], scores[mask]), abs=1e-12)


async def test_aderencia_of_a_monitored_model_uses_its_redis_reference(client, store, data_dir, api_settings):
    rng = np.random.default_rng(4)
    scores = rng.beta(2, 6, 900)
    (data_dir / "scored.csv").write_text("REF_DATE,score\n" + "".join(f"2024-07-{1 + i % 28:02d},{s:.6f}\n"
                                                                   for i, s in enumerate(scores)))
    resp = await client.post("/v1/aderencia/", json={"path": "scored.csv", "model": M, "score_column": "score"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    reference, _ = await store.reference(M, V)
    ks = ks_adherence(ScoreHistogram.from_scores(np.round(scores, 6)), reference)
    assert body["model_version"] == V and body["reference"].startswith("redis reference")
    assert (body["ks_d"], body["ks_pvalue"], body["records"]) == (ks.d, ks.pvalue, 900)
    assert body["volumetry"] == {"2024-07": 900}
    # absolute path inside the data directory is accepted too
    resp = await client.post("/v1/aderencia/", json={"path": str(data_dir / "scored.csv"), "model": M,
                                                     "score_column": "score"})
    assert resp.status_code == 200 and resp.json()["ks_d"] == ks.d


async def test_a_second_model_version_is_scored_by_the_version_asked(client, registry):
    examples = doc_examples()
    train("credit_data", "enhanced", "default", registry=registry)  # default:2 is gradient boosting
    try:
        v1 = (await client.post("/v1/performance/default?version=1", json=examples[("performance-features", "request")])).json()
        v2 = (await client.post("/v1/performance/default", json=examples[("performance-features", "request")])).json()
        assert (v1["model_version"], v2["model_version"]) == ("1", "2")
        assert v1["auc"] == examples[("performance-features", "response")]["auc"]
        missing = await client.post("/v1/performance/default?version=7", json=examples[("performance-features", "request")])
        assert missing.status_code == 404 and "no version '7'" in missing.json()["detail"]
    finally:
        import shutil

        shutil.rmtree(registry.root / "default" / "2")


@pytest.mark.parametrize("url,body,status,words", [
    ("/v1/performance/nope", [{"REF_DATE": "2024-01-01", "TARGET": 1, "score": 0.4}], 404, "unknown model 'nope'"),
    (f"/v1/performance/{M}", [{"REF_DATE": "2024-01-01", "TARGET": 1, "income": 3}], 404, "no score"),
    ("/v1/performance/default", [{"REF_DATE": "2024-01-01", "TARGET": 1, "Age": 30}], 422, "missing feature columns"),
    ("/v1/performance/default", [{"REF_DATE": "2024-01-01", "TARGET": 1, "score": 2}], 422, "body.0.score"),
    ("/v1/performance/default", {"records": []}, 422, "body"),
    ("/v1/aderencia/", {"path": "../outside.csv"}, 400, "outside the data directory"),
    ("/v1/aderencia/", {"path": "/etc/passwd"}, 400, "outside the data directory"),
    ("/v1/aderencia/", {"path": "nope.csv"}, 404, "file not found"),
    ("/v1/aderencia/", {"path": "data"}, 400, "not a regular file"),
    ("/v1/aderencia/", {"path": "data/credit_data_2024-06.csv", "model": "nope"}, 404, "unknown model 'nope'"),
    ("/v1/aderencia/", {"path": "data/credit_data_2024-06.csv", "model": M}, 404, "score_column"),
    ("/v1/aderencia/", {"path": "data/credit_data_2024-06.csv", "score_column": "Age"}, 422, "outside [0, 1]"),
    ("/v1/aderencia/", {"path": "data/credit_data_2024-06.csv", "score_column": "nope"}, 422, "no score column"),
    ("/v1/aderencia/", {"path": "data/credit_data_2024-06.csv", "version": "9"}, 404, "no version '9'"),
    ("/v1/aderencia/", {"path": "data/credit_data_2024-06.csv", "color": "red"}, 422, "body.color"),
])
async def test_classic_errors(client, data_dir, url, body, status, words):
    (data_dir.parent / "outside.csv").write_text("REF_DATE,score\n2024-01-01,0.5\n")
    resp = await client.post(url, json=body)
    assert resp.status_code == status, resp.text
    assert words in resp.json()["detail"], resp.json()


async def test_unsupported_file_type_is_422(client, data_dir):
    (data_dir / "notes.txt").write_text("hello")
    resp = await client.post("/v1/aderencia/", json={"path": "notes.txt", "score_column": "score"})
    assert resp.status_code == 422 and "unsupported file type" in resp.json()["detail"]


async def test_no_last_result_yet_is_404(servers, registry, data_dir):
    fresh = unique_settings(servers, data_dir=data_dir, models_dir=registry.root)
    async with api_client(fresh) as c:
        for url in ("/v1/performance/", "/v1/aderencia/"):
            resp = await c.get(url)
            assert resp.status_code == 404 and "POST" in resp.json()["detail"]
        assert (await c.get("/models")).json() == []


async def test_cached_responses_follow_the_state_within_the_ttl(servers, registry, data_dir):
    """With the default cache, a state change shows within cache_ttl_s."""
    import asyncio

    fresh = unique_settings(servers, data_dir=data_dir, models_dir=registry.root)
    async with api_client(fresh, cache_ttl_s=0.3) as c:
        assert (await c.get("/models")).json() == []
        await save_reference(fresh, "late", "1", np.linspace(0, 1, 50), None, source="test")
        assert (await c.get("/models")).json() == []  # served from the cache
        await asyncio.sleep(0.35)
        assert [m["model"] for m in (await c.get("/models")).json()] == ["late"]


async def test_model_version_path_with_months_of_a_small_second_model(client, api_settings):
    small = replace(SCENARIO, model="small", model_version="1", months=2, monthly_volume=50, drift_start=None,
                    drift_end=None)
    await load_scenario(api_settings, small, reference_n=500)
    rows = (await client.get("/models/small/versions/1/months")).json()
    assert [r["counts"]["n"] for r in rows] == [50, 50]
    models = {m["model"] for m in (await client.get("/models")).json()}
    assert models == {M, "small"}
