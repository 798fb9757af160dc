"""API tokens, scopes and limits without Redis (monitor.api.auth, monitor.api.limits), and the classic
endpoint's month grouping (linear in records). The real-process versions are in
tests/integration/test_api_security.py."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from monitor.api.app import check_exposure, create_api
from monitor.api.auth import (
    TokenBook,
    TokenConfigError,
    allows,
    configured_tokens,
    hash_token,
    new_token,
    parse_tokens,
)
from monitor.api.classic_engine import (
    ClassicRecord,
    month_histograms,
    performance_of,
    records_frame,
)
from monitor.errors import MonitorError
from monitor.settings import Settings

READ, WRITE = new_token(), new_token()
ENTRIES = f"r:read:{hash_token(READ)}\nw:write:{hash_token(WRITE)}"


# ---- tokens ------------------------------------------------------------------------------------------
def test_entries_from_the_setting_and_the_file(tmp_path):
    extra = new_token()
    path = tmp_path / "tokens"
    path.write_text(f"# one per line\nci:write:{hash_token(extra)}\n\n")
    entries = configured_tokens(Settings(api_tokens=ENTRIES.replace("\n", ","), api_tokens_file=path))
    assert [(e.name, e.scope) for e in entries] == [("r", "read"), ("w", "write"), ("ci", "write")]
    book = TokenBook(entries)
    assert book.identify(extra).name == "ci" and book.identify(READ).scope == "read"
    assert book.identify(hash_token(READ)) is None  # the stored hash is not a credential


@pytest.mark.parametrize("text,words", [
    ("read", "expected scope:sha256hex"),
    ("a:b:c:d", "expected scope:sha256hex"),
    ("owner:" + "0" * 64, "scope 'owner'"),
    ("read:" + "0" * 63, "64 hex digits"),
    ("read:" + "g" * 64, "64 hex digits"),
])
def test_malformed_entries_say_what_is_wrong(text, words):
    with pytest.raises(TokenConfigError, match=words):
        parse_tokens(text)


def test_a_missing_tokens_file_is_an_error(tmp_path):
    with pytest.raises(TokenConfigError, match="MONITOR_API_TOKENS_FILE"):
        configured_tokens(Settings(api_tokens_file=tmp_path / "missing"))


def test_write_implies_read():
    assert allows("write", "read") and allows("write", "write") and allows("read", "read")
    assert not allows("read", "write")


def test_exposure_needs_tokens_off_loopback():
    check_exposure(Settings(api_tokens=""), "127.0.0.1")
    check_exposure(Settings(api_tokens=ENTRIES), "0.0.0.0")
    with pytest.raises(MonitorError, match="without API tokens"):
        check_exposure(Settings(api_tokens=""), "0.0.0.0")
    with pytest.raises(MonitorError, match="MONITOR_API_AUTH=off"):
        check_exposure(Settings(api_tokens=ENTRIES, api_auth="off"), "192.168.1.10")


# ---- the middleware, in process ----------------------------------------------------------------------
def client(settings: Settings, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    app = create_api(settings, measure_lag=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 40000)), base_url="http://api")


OFFLINE = {"redis_url": "redis://127.0.0.1:1/0"}
BODY = [{"REF_DATE": "2024-01-01", "TARGET": 1, "score": 2}]  # invalid: 422 once past authentication


async def test_scopes_in_process():
    async with client(Settings(api_tokens=ENTRIES, **OFFLINE)) as c:
        assert (await c.post("/v1/performance/m", json=BODY)).status_code == 401
        assert (await c.post("/v1/performance/m", json=BODY, headers={"Authorization": "Basic x"})).status_code == 401
        resp = await c.post("/v1/performance/m", json=BODY, headers={"Authorization": f"Bearer {READ}"})
        assert resp.status_code == 403 and "'write'" in resp.json()["detail"]
        resp = await c.post("/v1/performance/m", json=BODY, headers={"Authorization": f"Bearer {WRITE}"})
        assert resp.status_code == 422
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/docs")).status_code == 200


async def test_no_tokens_configured_says_how_to_create_one():
    async with client(Settings(api_tokens="", **OFFLINE)) as c:
        resp = await c.get("/models")
    assert resp.status_code == 401 and "monitor api token" in resp.json()["detail"]


async def test_auth_off_answers_loopback_only():
    async with client(Settings(api_auth="off", **OFFLINE)) as c:
        assert (await c.post("/v1/performance/m", json=BODY)).status_code == 422
    async with client(Settings(api_auth="off", **OFFLINE), peer="10.0.0.7") as c:
        resp = await c.post("/v1/performance/m", json=BODY)
    assert resp.status_code == 403 and "loopback" in resp.json()["detail"]


async def test_login_form_sets_a_read_only_cookie():
    async with client(Settings(api_tokens=ENTRIES, **OFFLINE)) as c:
        resp = await c.post("/login", data={"token": "wrong"})
        assert resp.status_code == 401 and "not valid" in resp.text and "set-cookie" not in resp.headers
        resp = await c.post("/login", data={"token": WRITE})
        assert resp.status_code == 303 and "HttpOnly" in resp.headers["set-cookie"]
        cookie = {"Cookie": f"monitor_token={WRITE}"}
        resp = await c.post("/v1/performance/m", json=BODY, headers=cookie)
        assert resp.status_code == 403  # even a write token, as a cookie, only reads


async def test_body_limit_on_the_declared_length_and_on_the_bytes():
    async with client(Settings(api_tokens=ENTRIES, api_max_body_bytes=1024, **OFFLINE)) as c:
        auth = {"Authorization": f"Bearer {WRITE}", "content-type": "application/json"}
        resp = await c.post("/v1/performance/m", content=b" " * 2000, headers=auth)
        assert resp.status_code == 413 and "MONITOR_API_MAX_BODY_BYTES" in resp.json()["detail"]

        async def chunks():
            for _ in range(4):
                yield b" " * 512

        resp = await c.post("/v1/performance/m", content=chunks(), headers=auth)  # chunked: no length
        assert resp.status_code == 413


async def test_record_limit_before_validation():
    async with client(Settings(api_tokens=ENTRIES, api_max_records=2, **OFFLINE)) as c:
        resp = await c.post("/v1/performance/m", json=[{"no": "record"}] * 3,
                            headers={"Authorization": f"Bearer {WRITE}"})
    assert resp.status_code == 413 and "3 records" in resp.json()["detail"]


# ---- classic performance: linear in records ---------------------------------------------------------
def test_month_grouping_equals_the_per_month_masks():
    rng = np.random.default_rng(7)
    months = np.array([f"20{y:02d}-{m:02d}" for y, m in zip(rng.integers(0, 30, 5000), rng.integers(1, 13, 5000))])
    targets = rng.choice([0.0, 1.0, np.nan], 5000)
    scores = rng.random(5000)
    grouped = month_histograms(months, targets, scores, 1e-3)
    for month in set(months.tolist()):
        rows = months == month
        assert grouped[month].pos.n == int(np.sum(rows & (targets == 1)))
        assert grouped[month].neg.n == int(np.sum(rows & (targets == 0)))
        assert grouped[month].unlabeled.n == int(np.sum(rows & np.isnan(targets)))


def test_a_request_over_the_month_limit_is_refused():
    records = [ClassicRecord.model_validate({"REF_DATE": f"{1000 + i // 12:04d}-{i % 12 + 1:02d}-01", "score": 0.5})
               for i in range(30_000)]
    frame = records_frame(records)
    started = time.perf_counter()
    with pytest.raises(MonitorError, match="30000 months"):
        performance_of(frame, frame["score"].to_numpy(), 1e-4, max_months=240)
    refused = time.perf_counter() - started
    at_cap = records_frame([ClassicRecord.model_validate({"REF_DATE": f"{2000 + i % 240 // 12}-{i % 12 + 1:02d}-01",
                                                          "TARGET": i % 2, "score": (i % 997) / 997})
                            for i in range(30_000)])
    started = time.perf_counter()
    result = performance_of(at_cap, at_cap["score"].to_numpy(), 1e-4, max_months=240)
    assert len(result["months"]) == 240 and result["records"] == 30_000
    print(f"30k records of 30k distinct months refused in {refused:.3f} s; "
          f"30k records of 240 months computed in {time.perf_counter() - started:.2f} s")
