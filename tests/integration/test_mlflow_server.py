"""The MLflow registry against a real `mlflow server` (http tracking URI: the client talks REST and the
artifacts go through the server, not the local paths of a sqlite store): register, alias, card, load
with the hash check, reference into Redis, and the write-back of a month."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest

from monitor.ops import infra

pytestmark = pytest.mark.integration


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on a free loopback port (sqlite backend, artifacts proxied into tmp_path)."""
    if shutil.which("mlflow") is None:
        pytest.fail("the `mlflow` command (package mlflow, requirements-dev.txt) is not installed")
    port = infra.free_port()
    log = open(tmp_path / "mlflow-server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
                             "--artifacts-destination", str(tmp_path / "served")],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:  # noqa: S310 - loopback http
                if answer.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"mlflow server did not start: {(tmp_path / 'mlflow-server.log').read_text()[-2000:]}")
        time.sleep(0.3)
    yield url
    import os
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=20)
    log.close()


async def performance(settings, name: str, records: list[dict]) -> dict:
    """POST /v1/performance/<name> through the real API app (in process)."""
    import httpx

    from monitor.api.app import create_api, running
    from tests.conftest import api_headers

    app = create_api(settings, measure_lag=False, cache_ttl_s=0)
    async with running(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     headers=api_headers(), timeout=120) as client:
            answer = await client.post(f"/v1/performance/{name}", json=records)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_registry_through_a_real_mlflow_server(settings, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    from datasets import load
    from models.mlflow_registry import MlflowRegistry
    from models.mlflow_sync import Monitored, sync_version
    from models.registry import IntegrityError, load_reference
    from models.train import score_frame, train
    from monitor.state import Store

    settings = settings.model_copy(update={"mlflow_tracking_uri": mlflow_server})
    registry = MlflowRegistry(settings)
    name = f"srv-{uuid.uuid4().hex[:6]}"
    card = train("lendingclub", "default", name, registry=registry)
    registry.set_alias(name, "champion", card.version)
    assert (card.version, registry.resolve(name, "champion")) == ("1", "1")
    assert registry.card(name, "champion").get("reference")["n"] == card.get("reference")["n"]
    frame, _ = load("lendingclub")
    scores, _ = score_frame(registry.load(name, "champion"), frame.head(50))
    assert len(scores) == 50

    # POST /v1/performance/<name> scores February's features with the model from the server: the test AUC.
    feb = frame[frame.REF_DATE.str.startswith("2018-02")].drop(columns=["record_id"])
    records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in feb.to_dict("records")]
    body = asyncio.run(performance(settings, name, records))
    assert body["scored_by_model"] == 2988 and body["auc"] == pytest.approx(card.metric("test", "auc"), abs=1e-12)

    asyncio.run(load_reference(settings, registry.card(name, "1")))

    async def stored():
        store = Store.connect(settings)
        try:
            return await store.reference(name, "1")
        finally:
            await store.close()

    hist, meta = asyncio.run(stored())
    assert hist is not None and hist.n == card.get("reference")["n"] and int(meta["n"]) == hist.n

    row = {"month": "2018-01", "counts": {"n": 100},
           "metrics": {"month": {"n": 100, "auc": 0.71, "gini": 0.42, "ks_good_bad": 0.3, "ks_d": 0.04, "psi": 0.02}},
           "computed_at": "2018-02-10T00:00:00+00:00"}
    item = Monitored(name, "1", rows=[row], ready=["2018-01"])
    assert sync_version(registry, item) == ["2018-01"]
    assert sync_version(registry, item) == []  # the same values: not logged again
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    run_id = client.get_model_version(name, "1").tags["monitoring_run_id"]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "monitor.auc")] == [(201801, 0.71)]

    artifact = next((tmp_path / "served").rglob("model.skops"))  # the server's copy, changed behind its back
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError, match="its artifact has sha256"):
        registry.load(name, "champion")
