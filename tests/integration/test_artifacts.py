"""Model artifacts on the real servers: the trusted sha256 is in Redis (``{prefix}:artifact:{name}:{version}``),
and the real API (`monitor api`, uvicorn) refuses a planted code-running pickle instead of running it
(issue 16: a planted pickle + card made an unauthenticated POST /v1/performance/evil run os.system)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis
import skops.io

from datasets import load
from models.registry import IntegrityError, Registry, RegistryError, sha256_of
from models.train import fit, score_frame
from monitor.ops import infra
from monitor.ops.processes import settings_env, stop_process
from tests.conftest import API_TOKENS, api_headers, unique_settings

pytestmark = pytest.mark.integration


class RunsCode:
    """Unpickling this creates ``marker`` through a shell (what the planted pickle did)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_pickle(root: Path, name: str, marker: Path) -> None:
    """A code-running model.pkl and a card whose sha256 matches it, dropped into the registry folder."""
    folder = root / name / "1"
    folder.mkdir(parents=True)
    data = pickle.dumps(RunsCode(marker))
    (folder / "model.pkl").write_bytes(data)
    (folder / "card.json").write_text(json.dumps({
        "name": name, "version": "1", "created": "2026-01-01T00:00:00+00:00",
        "artifact": {"file": "model.pkl", "sha256": sha256_of(data), "bytes": len(data)}}))


@pytest.fixture
def art_settings(servers, tmp_path):
    return unique_settings(servers, models_dir=tmp_path / "models", data_dir=tmp_path, api_tokens=API_TOKENS)


def test_the_trusted_hash_is_in_redis_and_a_rewritten_card_does_not_help(art_settings):
    registry = Registry(art_settings.models_dir, settings=art_settings)
    model, fields = fit("credit_data", "default")
    card = registry.register("cd", model, fields)
    client = redis.Redis.from_url(art_settings.redis_url)
    assert client.get(f"{art_settings.key_prefix}:artifact:cd:1").decode() == card.sha256
    frame = load("credit_data")[0]
    assert (score_frame(registry.load("cd"), frame)[0] == score_frame(model, frame)[0]).all()

    folder = registry.path("cd", "1")
    forged = skops.io.dumps({"not": "the model"})
    (folder / "model.skops").write_bytes(forged)
    on_disk = json.loads((folder / "card.json").read_text())
    on_disk["artifact"]["sha256"] = sha256_of(forged)
    (folder / "card.json").write_text(json.dumps(on_disk))
    with pytest.raises(IntegrityError, match="cd:1"):
        Registry(art_settings.models_dir, settings=art_settings).load("cd")


def test_the_real_api_refuses_a_planted_pickle_and_never_runs_it(art_settings, tmp_path):
    marker = tmp_path / "pwned"
    plant_pickle(art_settings.models_dir, "evil", marker)
    port = infra.free_port()
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen(["monitor", "api", "--host", "127.0.0.1", "--port", str(port)],
                            env=settings_env(art_settings), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):  # until uvicorn answers (not a timed assertion: a bound on waiting)
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "api.log").read_text()
                time.sleep(0.1)
        records = [{"REF_DATE": "2024-01-15", "TARGET": 0, "income": 10},
                   {"REF_DATE": "2024-01-20", "TARGET": 1, "income": 20}]
        resp = httpx.post(f"{url}/v1/performance/evil", json=records, headers=api_headers(), timeout=30)
        print("answer:", resp.status_code, resp.text)
        assert 400 <= resp.status_code < 600 and resp.status_code != 200
        detail = resp.json()["detail"]
        assert "evil:1" in detail and "trusted sha256" in detail
        assert str(tmp_path) not in detail  # no server path in the answer
    finally:
        stop_process(proc)
        log.close()
    assert not marker.exists()
    with pytest.raises(RegistryError, match="evil:1"):
        Registry(art_settings.models_dir, settings=art_settings).load("evil")
    assert not marker.exists()
