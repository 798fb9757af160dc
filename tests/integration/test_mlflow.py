"""A model in a real local MLflow store (sqlite + artifact folder), end to end: train -> register ->
alias -> reference from models:/name@alias -> replay through the real worker -> the closed months'
metrics written back to MLflow, equal to what Redis holds; a tampered artifact is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import monitor_cli

pytestmark = pytest.mark.integration


def wait_for(check, timeout_s: float = 60.0, every_s: float = 0.5):
    """check() until it returns something truthy (returned), or its last answer at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(every_s)


def test_train_register_alias_reference_replay_and_write_back(settings, worker_process, tmp_path):
    from mlflow import MlflowClient

    from models.mlflow_registry import MlflowRegistry
    from models.mlflow_sync import sync
    from models.registry import IntegrityError

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    settings = settings.model_copy(update={"models_dir": tmp_path / "models", "mlflow_tracking_uri": uri,
                                           "mlflow_artifact_root": tmp_path / "mlartifacts",
                                           "partition_idle_s": 2.0, "month_settle_s": 1.0})
    name = f"lc-{uuid.uuid4().hex[:6]}"
    started = time.perf_counter()
    worker_process()  # starts while the model trains
    out = monitor_cli(settings, "models", "train", "--dataset", "lendingclub", "--name", name,
                      "--alias", "champion", "--no-redis")
    assert f"trained {name} version 1" in out.stdout
    assert f"registered in MLflow as models:/{name}/1 (alias champion)" in out.stdout

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias(name, "champion")
    assert str(version.version) == "1"
    run = client.get_run(version.run_id)
    assert run.data.params["dataset"] == "lendingclub" and run.data.params["kind"] == "default"
    assert 0.5 < run.data.metrics["test_auc"] < 1 and "oot_ks" in run.data.metrics
    assert run.data.metrics["test_gini"] == pytest.approx(2 * run.data.metrics["test_auc"] - 1)
    assert len(version.tags["sha256"]) == 64
    files = {f.path for f in client.list_artifacts(run.info.run_id)} | {
        f.path for f in client.list_artifacts(run.info.run_id, "reference")}
    assert {"model.skops", "card.json", "reference/histogram.json", "reference/scores.json",
            "reference/feature_profile.json"} <= files

    out = monitor_cli(settings, "reference", "load", "--mlflow", f"models:/{name}@champion")
    registry = MlflowRegistry(settings)  # in-process from here: each `monitor` call imports mlflow again (~4 s)
    assert (registry.names(), registry.versions(name)) == ([name], ["1"])
    card = registry.card(name, "champion")
    assert f"reference of {name}:1: {card.get('reference')['n']} test-split scores loaded" in out.stdout

    out = monitor_cli(settings, "produce", "--dataset", "lendingclub", "--model", name, "--batch", "200")
    assert "published 10000 records" in out.stdout and f"scored with {name}:1" in out.stdout
    expected = {"2018-01": 3395, "2018-02": 2988, "2018-03": 3617}

    def computed_rows():
        rows = json.loads(monitor_cli(settings, "state", "--json", "--model", name).stdout)
        done = {r["month"]: ((r["metrics"] or {}).get("month") or {}).get("n") for r in rows} == expected
        return rows if done and all(r["model_version"] == "1" and r["reference_n"] for r in rows) else None

    rows = wait_for(computed_rows)
    assert rows, "the worker did not compute the three months"

    # January and February are closed by March's records (grace 5 days): they are written back, March is not.
    def synced():
        sync(settings, registry, name)
        run_id = client.get_model_version(name, "1").tags.get("monitoring_run_id")
        return run_id if run_id and len(client.get_metric_history(run_id, "monitor.volume")) >= 2 else None

    run_id = wait_for(synced, timeout_s=30, every_s=1.0)
    assert run_id, "January and February were not written back"
    by_month = {r["month"]: r["metrics"]["month"] for r in rows}
    for metric, field in (("auc", "auc"), ("gini", "gini"), ("ks", "ks_good_bad"), ("ks_adherence", "ks_d"),
                          ("psi", "psi"), ("volume", "n")):
        history = {m.step: m.value for m in client.get_metric_history(run_id, f"monitor.{metric}")}
        assert history == pytest.approx({201801: by_month["2018-01"][field], 201802: by_month["2018-02"][field]}), metric
    monitoring = client.get_run(run_id)
    assert monitoring.data.tags["monitor.model"] == name and monitoring.data.tags["monitor.model_version"] == "1"

    out = monitor_cli(settings, "models", "sync-mlflow", "--model", name)  # again: nothing logged twice
    assert f"{name}:1: nothing new (open or settling: 2018-03)" in out.stdout
    assert len(client.get_metric_history(run_id, "monitor.auc")) == 2

    # The registered bytes changed behind the registry's back: scoring refuses them.
    registry.load(name, "champion")
    artifact = next((tmp_path / "mlartifacts").rglob("model.skops"))
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(IntegrityError, match=f"model {name}:1: its artifact has sha256"):
        registry.load(name, "champion")
    print(f"\nMLflow end to end (train, register, replay, sync): {time.perf_counter() - started:.1f} s")


def test_monitor_help_does_not_import_mlflow():
    """mlflow takes seconds to import: the CLI imports it only when a command needs it."""
    for command in (["--help"], ["models", "--help"], ["reference", "load", "--help"]):
        out = subprocess.run([sys.executable, "-X", "importtime", "-m", "monitor", *command], capture_output=True,
                             text=True, check=True)  # -X importtime: every imported module, on stderr
        assert "Usage:" in out.stdout and "mlflow" not in out.stderr, command
