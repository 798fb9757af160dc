"""The pure parts of the MLflow registry: model URIs, the artifact hash check, what a month logs."""

from __future__ import annotations

import pytest
import skops.io

from models.mlflow_registry import ModelRef, check_artifact, parse_model_uri
from models.mlflow_sync import month_metrics, month_step
from models.registry import IntegrityError, sha256_of
from monitor.errors import MonitorError


@pytest.mark.parametrize("uri, ref", [
    ("models:/lc_default@champion", ModelRef("lc_default", None, "champion")),
    ("models:/lc_default/3", ModelRef("lc_default", "3", None)),
    ("models:/a.b-c_d@challenger", ModelRef("a.b-c_d", None, "challenger")),
])
def test_model_uris_name_a_version_or_an_alias(uri, ref):
    assert parse_model_uri(uri) == ref


@pytest.mark.parametrize("uri", ["lc_default", "models:/lc", "models:/lc/x", "models:/lc/1/2", "runs:/abc/model",
                                 "models:/../x@champion", "models:/lc@", "models:/lc@bad alias"])
def test_a_model_uri_that_names_no_version_is_refused(uri):
    with pytest.raises(MonitorError, match="models:/<name>@<alias> or models:/<name>/<version>"):
        parse_model_uri(uri)


def test_an_artifact_whose_sha256_is_not_the_tag_is_refused():
    data = skops.io.dumps({"a": 1})
    check_artifact("model m:1", data, sha256_of(data))  # the registered bytes: fine
    with pytest.raises(IntegrityError, match="model m:1: its artifact has sha256 .* but .* was recorded"):
        check_artifact("model m:1", data + b"x", sha256_of(data))
    with pytest.raises(IntegrityError, match="no sha256 tag"):
        check_artifact("model m:1", data, None)


def test_a_month_logs_its_headline_metrics_with_the_month_as_step():
    row = {"month": "2018-02", "counts": {"n": 2988},
           "metrics": {"month": {"n": 2988, "auc": 0.7, "gini": 0.4, "ks_good_bad": 0.3, "ks_d": 0.05,
                                 "psi": 0.01, "ks_pvalue": 0.2}}}
    assert month_step("2018-02") == 201802
    assert month_metrics(row) == {"auc": 0.7, "gini": 0.4, "ks": 0.3, "ks_adherence": 0.05, "psi": 0.01,
                                  "volume": 2988.0}
    row["metrics"]["month"].update(auc=None, psi=None)  # too few labels, no reference: not logged
    assert month_metrics(row) == {"gini": 0.4, "ks": 0.3, "ks_adherence": 0.05, "volume": 2988.0}


def test_a_training_that_fails_half_way_leaves_no_version_behind(tmp_path):
    """A real local store (sqlite file): a card that cannot be written after the version was made."""
    from mlflow import MlflowClient

    from models.mlflow_registry import MlflowRegistry
    from monitor.settings import Settings

    settings = Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", run_dir=tmp_path)
    registry = MlflowRegistry(settings)
    with pytest.raises(TypeError):  # json cannot write an object(): raised after create_model_version
        registry.register("half", {"a": 1}, {"unwritable": object()})
    assert registry.versions("half") == []
    run = MlflowClient(settings.mlflow_tracking_uri).search_runs([registry.experiment_id()])[0]
    assert run.info.status == "FAILED"
    card = registry.register("half", {"a": 1}, {"dataset": "none"})  # the next one is whole
    assert (card.version, registry.load("half", card.version)) == ("2", {"a": 1})


def test_a_version_still_being_logged_is_not_listed(tmp_path):
    """A version is registered before its card is logged: while another training logs it (or after a
    clean-up that failed), listing, `latest` and the cards skip it instead of failing on its card."""
    from mlflow import MlflowClient

    from models.mlflow_registry import MlflowRegistry
    from monitor.settings import Settings

    settings = Settings(mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", run_dir=tmp_path)
    registry = MlflowRegistry(settings)
    card = registry.register("busy", {"a": 1}, {"dataset": "none"})
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.create_run(registry.experiment_id())
    client.create_model_version("busy", source=run.info.artifact_uri, run_id=run.info.run_id)  # no card yet
    assert registry.versions("busy") == [card.version]
    assert registry.resolve("busy") == card.version
    assert [c.version for c in registry.cards() if c.name == "busy"] == [card.version]
