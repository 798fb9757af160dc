"""Training is deterministic, the registry records true metrics and refuses tampered artifacts,
scoring counts unseen categories, and the producer turns scored frames into contract records."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pandas as pd
import pytest
import skops.io
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from datasets import load
from models.registry import IntegrityError, Registry, load_model
from models.train import MissingFeatures, score_frame, split_indices, train
from monitor.errors import MonitorError, NotFound
from monitor.schema import ScoredRecord
from monitor.settings import get_settings
from monitor.stats import ScoreHistogram
from producers.scoring import RecordStream, scored_records
from producers.sources import open_source


@pytest.fixture(scope="module", autouse=True)
def ledger_file(tmp_path_factory):
    """No Redis in unit tests: the trusted hashes go to a ledger file outside every registry here."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("ledger") / "models.json"
        mp.setenv("MONITOR_MODELS_LEDGER", str(path))
        get_settings.cache_clear()
        yield path
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def registry(tmp_path_factory, ledger_file) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("models"))
    train("lendingclub", "default", "lc", registry=reg)
    train("credit_data", "enhanced", "cd", registry=reg)
    return reg


def use_models_dir(monkeypatch, path) -> None:
    """Point MONITOR_MODELS_DIR at ``path`` for this test (the settings are cached: re-read them)."""
    monkeypatch.setenv("MONITOR_MODELS_DIR", str(path))
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def models_env(registry, monkeypatch):
    use_models_dir(monkeypatch, registry.root)
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.parametrize("dataset,kind", [("lendingclub", "default"), ("lendingclub", "enhanced"),
                                          ("lending_club", "default"), ("credit_data", "enhanced")])
def test_training_is_deterministic_and_records_the_test_auc(tmp_path, dataset, kind):
    reg = Registry(tmp_path)
    first = train(dataset, kind, "m", registry=reg)
    second = train(dataset, kind, "m", registry=reg)
    assert (first.version, second.version) == ("1", "2")
    frame, dcard = load(dataset)
    parts, how = split_indices(frame, dcard)
    m1, m2 = reg.load("m", "1"), reg.load("m", "2")
    s1, _ = score_frame(m1, frame)
    s2, _ = score_frame(m2, frame)
    assert np.array_equal(s1, s2)
    assert first.get("metrics") == second.get("metrics")
    y = frame["TARGET"].to_numpy()
    test = parts["test"]
    auc = roc_auc_score(y[test], s1[test])
    assert first.metric("test", "auc") == auc  # exactly, on the raw scores
    assert first.metric("test", "gini") == 2 * auc - 1
    assert 0.55 < auc < 0.95
    ref = ScoreHistogram.from_dict(first.get("reference")["histogram"])
    assert ref == ScoreHistogram.from_scores(s1[test], ref.resolution) and ref.n == len(test)
    if dcard.dates_from_data:
        assert how["method"] == "time" and first.get("split")["oot_months"] == [max(dcard.months)]
        assert first.metric("oot", "auc") == roc_auc_score(y[parts["oot"]], s1[parts["oot"]])
    else:
        assert how["method"] == "stratified" and first.get("metrics")["oot"] is None
    assert first.get("training_seconds") < 30


def test_card_on_disk(registry):
    card = json.loads((registry.root / "lc" / "1" / "card.json").read_text())
    assert card["name"] == "lc" and card["version"] == "1" and card["dataset"] == "lendingclub"
    assert set(card["libraries"]) >= {"python", "sklearn", "numpy", "pandas"}
    assert "interest_rate" in card["features"]["numeric"] and "grade" in card["features"]["categorical"]
    assert set(card["metrics"]["test"]) >= {"auc", "gini", "ks", "n", "bads"}
    assert card["split"]["train_months"] == ["2018-01"] and card["split"]["test_months"] == ["2018-02"]
    assert len(card["artifact"]["sha256"]) == 64


def test_tampered_artifact_is_refused(tmp_path):
    reg = Registry(tmp_path)
    train("credit_data", "default", "x", registry=reg)
    path = tmp_path / "x" / "1" / "model.skops"
    path.write_bytes(skops.io.dumps({"evil": True}))
    with pytest.raises(IntegrityError, match="sha256"):
        load_model("x", root=tmp_path)
    assert issubclass(IntegrityError, MonitorError)


def test_versions_latest_and_missing(registry):
    assert registry.resolve("lc") == "1" and registry.resolve("lc", "latest") == "1"
    with pytest.raises(NotFound):
        registry.resolve("lc", "9")
    with pytest.raises(NotFound):
        registry.card("nope")
    with pytest.raises(MonitorError, match="invalid model name"):
        registry.versions("../etc")


def test_unseen_categories_are_counted_not_fatal(registry):
    model = registry.load("lc")
    frame = load("lendingclub")[0].head(50).copy()
    base, _ = score_frame(model, frame)
    frame.loc[frame.index[:3], "state"] = "ZZ"
    frame.loc[frame.index[5], "loan_purpose"] = "spaceship"
    frame["annual_income"] = frame["annual_income"].astype(object)
    frame.loc[frame.index[6], "annual_income"] = "a lot"
    scores, report = score_frame(model, frame)
    assert report.n == 50
    assert report.unseen == {"state": {"ZZ": 3}, "loan_purpose": {"spaceship": 1}}
    assert report.unseen_total == 4 and report.invalid_numeric == {"annual_income": 1}
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert np.array_equal(scores[10:], base[10:])
    boosted = registry.load("cd")
    frame = load("credit_data")[0].head(20).copy()
    frame.loc[frame.index[0], "Home"] = "castle"
    _, report = score_frame(boosted, frame)
    assert report.unseen == {"Home": {"castle": 1}}


def test_missing_feature_columns_are_named(registry):
    frame = load("lendingclub")[0].head(5).drop(columns=["grade", "term"])
    with pytest.raises(MissingFeatures, match="missing feature columns: term, grade"):
        score_frame(registry.load("lc"), frame)


def test_scored_dataset_records_follow_the_contract(registry):
    frame, dcard = load("lendingclub")
    stream = scored_records(frame, "lc", registry_dir=registry.root, source="lendingclub")
    records = list(stream)
    assert len(records) == len(stream) == dcard.rows
    for rec in records[:200] + records[-200:]:
        ScoredRecord.model_validate_json(orjson.dumps(rec))
        assert all(v is None or isinstance(v, (str, int, float, bool)) for v in rec["features"].values())
    months = pd.Series([r["ref_date"][:7] for r in records]).value_counts().sort_index().to_dict()
    assert months == dcard.months
    assert {r["model"] for r in records} == {"lc"} and {r["model_version"] for r in records} == {"1"}
    assert sum(r["target"] for r in records) == dcard.bads
    model = registry.load("lc")
    assert [r["score"] for r in records] == score_frame(model, frame)[0].tolist()


def test_labels_none_and_separate():
    recs = [{"record_id": f"r{i}", "model": "m", "model_version": "1", "target": t} for i, t in enumerate([1, 0, None])]
    none = RecordStream([dict(r) for r in recs], 3, labels="none")
    assert [r["target"] for r in none] == [None] * 3 and none.outcomes == []
    sep = RecordStream([dict(r) for r in recs], 3, labels="separate")
    assert [r["target"] for r in sep] == [None] * 3
    outcomes = sep.outcome_records("2024-06-01T00:00:00+00:00")
    assert outcomes == [
        {"record_id": "r0", "model": "m", "model_version": "1", "target": 1, "observed_at": "2024-06-01T00:00:00+00:00"},
        {"record_id": "r1", "model": "m", "model_version": "1", "target": 0, "observed_at": "2024-06-01T00:00:00+00:00"}]
    with pytest.raises(MonitorError):
        RecordStream([], 0, labels="later")


@pytest.mark.parametrize("suffix", [".json", ".csv", ".csv.gz"])
def test_credit_challenge_file_is_scored_by_the_registered_model(registry, tmp_path, suffix):
    frame = load("lendingclub")[0].head(40).drop(columns=["record_id"])
    frame.loc[frame.index[0], "state"] = "ZZ"
    path = tmp_path / f"challenge{suffix}"
    if suffix == ".json":
        path.write_text(frame.to_json(orient="records"))  # NaN -> null
        assert "null" in path.read_text()
    else:
        frame.to_csv(path, index=False)
    stream, total = open_source(path=path, model="lc", version=None, labels="separate")
    records = list(stream)
    assert total == 40 and len(records) == 40
    assert stream.report.unseen == {"state": {"ZZ": 1}}
    assert all(r["target"] is None for r in records)
    assert len(stream.outcome_records()) == 40
    expected, _ = score_frame(registry.load("lc"), frame)
    assert np.allclose([r["score"] for r in records], expected, rtol=0, atol=1e-12)


def test_file_with_a_score_column_is_published_as_before(tmp_path):
    path = tmp_path / "scored.csv"
    path.write_text("REF_DATE,score,TARGET,income\n2024-01-03,0.2,0,10\n")
    stream, total = open_source(path=path, model="lc")
    assert list(stream) == [{"record_id": "scored-0", "model": "lc", "model_version": "1", "ref_date": "2024-01-03",
                             "score": 0.2, "target": 0, "features": {"income": 10}}]
    with pytest.raises(MonitorError, match="no registered model 'nobody'"):
        open_source(path=tmp_path / "scored.csv", model="nobody", score_column="p")


def test_models_cli_train_list_show(tmp_path, monkeypatch):
    from models.cli import models_group

    use_models_dir(monkeypatch, tmp_path)
    runner = CliRunner()
    out = runner.invoke(models_group, ["train", "--dataset", "credit_data", "--kind", "default", "--no-redis"])
    assert out.exit_code == 0, out.output
    assert "credit_data_default" in out.output and "version 1" in out.output and "AUC" in out.output
    assert "monitor models load-reference credit_data_default --version 1" in out.output
    card = Registry(tmp_path).card("credit_data_default")
    out = runner.invoke(models_group, ["list", "--json"])
    assert json.loads(out.output) == [{"name": "credit_data_default", "version": "1", "dataset": "credit_data",
                                       "kind": "default", "created": card.created,
                                       "test_auc": card.metric("test", "auc")}]
    out = runner.invoke(models_group, ["show", "credit_data_default"])
    assert out.exit_code == 0 and f"AUC {card.metric('test', 'auc'):.4f}" in out.output and card.sha256 in out.output
    shown = json.loads(runner.invoke(models_group, ["show", "credit_data_default", "--json"]).output)
    assert shown["metrics"]["test"]["auc"] == card.metric("test", "auc")
    out = runner.invoke(models_group, ["train", "--dataset", "german", "--no-redis"])
    assert out.exit_code != 0 and "German credit" in out.output
