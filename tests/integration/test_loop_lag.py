"""A running worker measures its event-loop lag and GET /metrics exports it (issue 18).

A real ``monitor worker`` process reports to Redis every ``loop_lag_report_s``; the API's /metrics
must carry ``credit_monitor_worker_loop_lag_seconds`` (a histogram), its max and p99, labelled by the
worker process, in the Prometheus text format (parsed by prometheus_client's own parser).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.api.app import create_api, running
from monitor.api.metrics import LOOP_LAG, LOOP_LAG_MAX, LOOP_LAG_P99
from monitor.worker.looplag import LAG_BUCKETS_S, LoopLagProbe
from monitor.state import Store, reads
from tests.conftest import api_headers

pytestmark = pytest.mark.integration


async def scrape(settings) -> dict:
    app = create_api(settings, measure_lag=False, cache_ttl_s=0)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=api_headers()) as client:
            resp = await client.get("/metrics")
    assert resp.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(resp.text)}


async def wait_for_reports(settings, samples: int, timeout_s: float = 90.0) -> dict[str, dict]:
    store = Store.connect(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reports = await reads.worker_loop_lag(store)
            if reports and all(r["count"] >= samples for r in reports.values()):
                return reports
            await asyncio.sleep(0.2)
        raise AssertionError(f"no loop lag report with {samples} samples in {timeout_s} s")
    finally:
        await store.close()


async def test_a_running_worker_exports_its_loop_lag(settings, worker_process):
    settings = settings.model_copy(update={"loop_lag_report_s": 0.5})
    store = Store.connect(settings)
    try:  # the report of a process gone an hour ago: the running worker's first report drops it
        gone = {**LoopLagProbe().snapshot(), "at": time.time() - 3600}
        await store.save_loop_lag("gone-host:1", gone, stale_after_s=60)
        assert list(await reads.worker_loop_lag(store)) == ["gone-host:1"]
    finally:
        await store.close()
    worker = worker_process(settings)
    reports = await wait_for_reports(settings, samples=20)
    assert len(reports) == 1 and worker.poll() is None
    (worker_id, report), = reports.items()
    assert worker_id.endswith(f":{worker.pid}")

    families = await scrape(settings)
    hist = families[LOOP_LAG]  # the parser names the family without its _bucket/_sum/_count suffixes
    assert hist.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in hist.samples if s.name == f"{LOOP_LAG}_bucket"]
    assert [le for le, _ in buckets] == [*(str(b) for b in LAG_BUCKETS_S), "+Inf"]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] >= 20  # cumulative, every sample in +Inf
    count = next(s.value for s in hist.samples if s.name == f"{LOOP_LAG}_count")
    assert count == counts[-1]
    assert all(s.labels["worker"] == worker_id for s in hist.samples)
    top = families[LOOP_LAG_MAX].samples[0]
    p99 = families[LOOP_LAG_P99].samples[0]
    assert top.labels == p99.labels == {"worker": worker_id}
    assert 0 <= p99.value <= top.value
    print(f"\nidle worker: {int(count)} samples, loop lag p99 {p99.value * 1000:.1f} ms, max {top.value * 1000:.1f} ms")
