"""A real Prometheus (Debian package `prometheus`, installed by scripts/setup) scrapes `monitor api` while
a real worker runs, with a read token (`authorization: {type: Bearer, credentials_file: ...}`; without it
the scrape is refused); PromQL answers the published counts, the worker counters, the worker's event-loop lag and the consumer lag,
and every query of the Grafana dashboard runs."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from monitor.ops import infra
from monitor.api.bench import start_api_process, wait_http
from monitor.ops.processes import stop_process, wait_until_caught_up
from monitor.ops.reference import save_reference
from monitor.state import Store
from producers.publish import publish
from producers.synthetic import SCENARIOS, generate, monthly_counts, reference_frame
from tests.conftest import API_READ_TOKEN

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="the `prometheus` binary is missing: apt-get install prometheus "
                                        "(scripts/setup installs it)")]

ROOT = Path(__file__).resolve().parents[2]
SPEC = replace(SCENARIOS["demo"], model="prom", months=3, monthly_volume=700, drift_start=2)
CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: credit-monitor-api
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: {credentials}
    static_configs:
      - targets: ["127.0.0.1:{port}"]
  - job_name: no-token
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


class Prometheus:
    def __init__(self, url: str, session: aiohttp.ClientSession):
        self.url = url
        self.session = session

    async def query(self, promql: str) -> list[dict]:
        async with self.session.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp:
            body = await resp.json()
        assert body["status"] == "success", (promql, body)
        return body["data"]["result"]

    async def value(self, promql: str) -> float | None:
        result = await self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    async def wait_value(self, promql: str, expected: float, timeout_s: float = 60.0) -> float | None:
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = await self.value(promql)
            if value == expected:
                return value
            await asyncio.sleep(0.5)
        return value


@pytest.fixture
def prometheus_binary() -> str:
    return shutil.which("prometheus")


async def test_prometheus_scrapes_the_exporter(settings, worker_process, tmp_path, prometheus_binary):
    ref = reference_frame(SPEC, n=5000)
    await save_reference(settings, SPEC.model, SPEC.model_version, ref["score"].to_numpy(), ref["TARGET"].to_numpy(),
                         source="test")
    worker = worker_process()
    records = list(generate(SPEC))
    await publish(records, settings)  # one record per message: the high watermarks sum to len(records)
    expected = monthly_counts(SPEC)
    store = Store.connect(settings)
    try:
        assert await wait_until_caught_up(store, expected, SPEC.model, SPEC.model_version, 120, worker)
    finally:
        await store.close()

    api_port, prom_port = infra.free_port(), infra.free_port()
    api = start_api_process(settings, api_port, tmp_path / "api.log")
    credentials = tmp_path / "api-read-token"  # a read token: what docs/api.md tells to configure
    credentials.write_text(API_READ_TOKEN + "\n")
    (tmp_path / "prometheus.yml").write_text(CONFIG.format(port=api_port, credentials=credentials))
    prom = subprocess.Popen([prometheus_binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                             "--log.level=warn"],
                            stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        await wait_http(f"http://127.0.0.1:{api_port}/health", 60, api)
        await wait_http(f"http://127.0.0.1:{prom_port}/-/ready", 60, prom)
        async with aiohttp.ClientSession() as session:
            p = Prometheus(f"http://127.0.0.1:{prom_port}", session)
            sel = f'model="{SPEC.model}",version="{SPEC.model_version}"'
            # the scrape is healthy and PromQL sees exactly the published counts
            assert await p.wait_value('up{job="credit-monitor-api"}', 1.0) == 1.0
            # the same target scraped without the token is refused (401): up is 0
            assert await p.wait_value('up{job="no-token"}', 0.0) == 0.0
            for month, n in expected.items():
                assert await p.wait_value(f'credit_monitor_records{{{sel},month="{month}"}}', float(n)) == n
            total = sum(expected.values())
            assert await p.wait_value(f"sum(credit_monitor_records{{{sel}}})", float(total)) == total
            assert await p.wait_value("credit_monitor_worker_records_total", float(total)) == total
            assert await p.value("credit_monitor_worker_dead_lettered_total") == 0
            # the worker's event-loop lag (issue 18): one histogram per worker process, quantiles by PromQL
            assert await p.wait_value("count(credit_monitor_worker_loop_lag_max_seconds)", 1.0) == 1.0
            assert await p.wait_value("count(credit_monitor_worker_loop_lag_seconds_count > 0)", 1.0) == 1.0
            lag_p99 = await p.value("histogram_quantile(0.99, sum by (le) (credit_monitor_worker_loop_lag_seconds_bucket))")
            assert lag_p99 is not None and 0 <= lag_p99 <= 5.0  # in the histogram's range (largest bucket 5 s)
            print(f"\nworker loop lag p99 by PromQL: {lag_p99 * 1000:.1f} ms")
            # metrics equal the state the API serves
            async with session.get(f"http://127.0.0.1:{api_port}/models/{SPEC.model}/versions/{SPEC.model_version}"
                                   f"/months/{max(expected)}",
                                   headers={"Authorization": f"Bearer {API_READ_TOKEN}"}) as resp:
                detail = await resp.json()
            month_sel = f'{sel},month="{max(expected)}",window="month"'
            for metric, field in (("credit_monitor_auc", "auc"), ("credit_monitor_ks_adherence_d", "ks_d"),
                                  ("credit_monitor_psi", "psi")):
                assert await p.value(f"{metric}{{{month_sel}}}") == pytest.approx(detail["windows"]["month"][field],
                                                                                   rel=1e-12)
            # the drifted month fires alerts: Prometheus sees as many as Redis holds
            store = Store.connect(settings)
            try:
                states = await store.alert_states(SPEC.model, SPEC.model_version)
            finally:
                await store.close()
            n_firing = sum(s["status"] == "firing" for s in states.values())
            assert n_firing > 0
            assert await p.wait_value(f"sum(credit_monitor_alerts_firing{{{sel}}})", float(n_firing)) == n_firing

            # consumer lag: the high watermarks (from Fetch) sum to every message published, and once
            # the worker group committed them the lag is 0
            topic = f'topic="{settings.records_topic}"'
            assert await p.wait_value("credit_monitor_consumer_lag_up", 1.0) == 1.0
            assert await p.wait_value(f"sum(credit_monitor_topic_high_watermark{{{topic}}})",
                                      float(len(records))) == len(records)
            assert await p.wait_value(f"sum(credit_monitor_consumer_lag{{{topic}}})", 0.0) == 0.0
            # with the worker stopped, new records are lag, exactly
            stop_process(worker)
            extra = list(generate(replace(SPEC, model="prom-late", months=1, monthly_volume=150)))
            await publish(extra, settings)
            assert await p.wait_value(f"sum(credit_monitor_consumer_lag{{{topic}}})", float(len(extra))) == len(extra)

            # every query of the Grafana dashboard is valid PromQL and the per-model ones have data
            dashboard = json.loads((ROOT / "deploy/grafana/dashboards/credit-monitor.json").read_text())
            variables = {"$model": SPEC.model, "$version": SPEC.model_version, "$window": "month"}
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    expr = re.sub(r"\$\w+", lambda m: variables[m.group(0)], target["expr"])
                    result = await p.query(expr)
                    assert result, f"{panel['title']}: {expr} returned nothing"
    finally:
        stop_process(prom)
        stop_process(api)
