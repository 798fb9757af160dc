"""Model artifacts cannot run code: a planted pickle, a skops file with an untrusted type, a
tampered artifact whose card was rewritten to match, and a card pointing outside the registry
are all refused; a legitimately trained model round-trips (issue 16).

The trusted sha256 lives in a ledger the registry folder's writers do not own (here a JSON file
outside it; Redis in tests/integration/test_artifacts.py)."""

from __future__ import annotations

import json
import os
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

from datasets import load
from models.registry import FileLedger, Registry, RegistryError, sha256_of
from models.train import fit, score_frame


class RunsCode:
    """Unpickling this runs a shell command that creates ``marker`` (what the planted pickle did)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(root: Path, name: str, data: bytes, file: str = "model.pkl", **artifact) -> Path:
    """Write an artifact and a card claiming it (with the artifact's true sha256) into the registry."""
    folder = root / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / file).write_bytes(data)
    card = {"name": name, "version": "1", "created": "2026-01-01T00:00:00+00:00",
            "artifact": {"file": file, "sha256": sha256_of(data), "bytes": len(data), **artifact}}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "models", ledger=FileLedger(tmp_path / "ledger" / "models.json"), allow_pickle=False)


@pytest.fixture(scope="module")
def trained():
    return fit("credit_data", "default")


def test_a_planted_code_running_pickle_is_refused_and_never_runs(registry, tmp_path):
    marker = tmp_path / "pwned"
    plant(registry.root, "evil", pickle.dumps(RunsCode(marker)))
    with pytest.raises(RegistryError, match="evil:1") as err:
        registry.load("evil")
    assert not marker.exists()
    assert str(tmp_path) not in str(err.value)  # no server path in the message (it reaches API answers)


def test_a_pickle_with_a_trusted_hash_is_still_refused_unless_pickles_are_allowed(registry, tmp_path):
    data = pickle.dumps({"legacy": True})
    plant(registry.root, "legacy", data)
    registry.ledger.record("legacy", "1", sha256_of(data))
    with pytest.raises(RegistryError, match="pickle.*MONITOR_ALLOW_PICKLE_ARTIFACTS"):
        registry.load("legacy")
    allowed = Registry(registry.root, ledger=registry.ledger, allow_pickle=True)
    assert allowed.load("legacy") == {"legacy": True}


def test_a_skops_file_with_an_untrusted_type_is_refused(registry):
    data = sio.dumps({"weights": Fraction(1, 3)})
    plant(registry.root, "odd", data, file="model.skops", format="skops")
    registry.ledger.record("odd", "1", sha256_of(data))
    with pytest.raises(RegistryError, match="odd:1.*untrusted type.*fractions.Fraction"):
        registry.load("odd")


def test_a_tampered_artifact_with_a_rewritten_card_is_refused(registry, trained):
    model, fields = trained
    card = registry.register("cd", model, fields)
    folder = registry.path("cd", card.version)
    artifact = folder / card.artifact["file"]
    forged = sio.dumps({"not": "the model"})
    artifact.write_bytes(forged)
    on_disk = json.loads((folder / "card.json").read_text())
    on_disk["artifact"]["sha256"] = sha256_of(forged)  # the card agrees with the forged bytes
    (folder / "card.json").write_text(json.dumps(on_disk))
    with pytest.raises(RegistryError, match="cd:1.*sha256"):
        registry.load("cd")


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_an_artifact_path_outside_the_registry_is_refused(registry, tmp_path, how):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    data = sio.dumps({"kind": "x"})
    (outside / "model.skops").write_bytes(data)
    file = {"dotdot": "../../../elsewhere/model.skops", "absolute": str(outside / "model.skops"),
            "symlink": "model.skops"}[how]
    folder = plant(registry.root, "escape", b"", file="placeholder")
    card = json.loads((folder / "card.json").read_text())
    card["artifact"] = {"file": file, "format": "skops", "sha256": sha256_of(data), "bytes": len(data)}
    (folder / "card.json").write_text(json.dumps(card))
    if how == "symlink":
        (folder / "model.skops").symlink_to(outside / "model.skops")
    registry.ledger.record("escape", "1", sha256_of(data))
    with pytest.raises(RegistryError, match="escape:1.*outside the registry") as err:
        registry.load("escape")
    assert str(tmp_path) not in str(err.value)


def test_a_trained_model_round_trips_with_the_same_predictions(registry, trained):
    model, fields = trained
    card = registry.register("cd", model, fields)
    assert card.artifact["file"].endswith(".skops") and card.artifact["format"] == "skops"
    assert registry.ledger.trusted("cd", card.version) == card.sha256
    frame = load("credit_data")[0]
    expected, _ = score_frame(model, frame)
    loaded, _ = score_frame(registry.load("cd"), frame)
    assert np.array_equal(expected, loaded)


def test_a_version_without_a_trusted_hash_is_refused(registry, trained):
    model, fields = trained
    card = registry.register("cd", model, fields)
    other = Registry(registry.root, ledger=FileLedger(registry.root.parent / "other.json"))
    with pytest.raises(RegistryError, match="cd:1.*no trusted sha256"):
        other.load("cd", card.version)


def test_a_ledger_inside_the_registry_is_refused(tmp_path):
    with pytest.raises(RegistryError, match="outside the registry"):
        Registry(tmp_path, ledger=FileLedger(tmp_path / "ledger.json"))


def legacy_version(registry: Registry, name: str, model) -> None:
    """A version as registered before issue 16: model.pkl, its sha256 only in the card, nothing in the ledger."""
    data = pickle.dumps(model, protocol=5)
    plant(registry.root, name, data)


def test_migrate_turns_a_legacy_pickle_into_skops_in_place(registry, trained):
    model, _ = trained
    legacy_version(registry, "old", model)
    with pytest.raises(RegistryError, match="old:1.*MONITOR_ALLOW_PICKLE_ARTIFACTS"):
        registry.migrate("old", "1")
    allowed = Registry(registry.root, ledger=registry.ledger, allow_pickle=True)
    card = allowed.migrate("old", "1")
    assert card.version == "1" and card.artifact["format"] == "skops" and card.get("migrated_from") == "pickle"
    assert not (registry.path("old", "1") / "model.pkl").exists()
    assert registry.ledger.trusted("old", "1") == card.sha256
    frame = load("credit_data")[0]
    assert np.array_equal(score_frame(registry.load("old"), frame)[0], score_frame(model, frame)[0])
    with pytest.raises(RegistryError, match="old:1.*already"):
        allowed.migrate("old", "1")


def test_migrate_refuses_a_pickle_whose_card_does_not_match(registry, tmp_path):
    legacy_version(registry, "bad", {"x": 1})
    (registry.path("bad", "1") / "model.pkl").write_bytes(pickle.dumps(RunsCode(tmp_path / "pwned")))
    allowed = Registry(registry.root, ledger=registry.ledger, allow_pickle=True)
    with pytest.raises(RegistryError, match="bad:1.*sha256"):
        allowed.migrate("bad", "1")
    assert not (tmp_path / "pwned").exists()


def test_monitor_models_migrate(registry, monkeypatch):
    from click.testing import CliRunner

    from models.cli import models_group
    from monitor.settings import get_settings

    legacy_version(registry, "old", {"kind": "legacy"})
    monkeypatch.setenv("MONITOR_MODELS_DIR", str(registry.root))
    monkeypatch.setenv("MONITOR_MODELS_LEDGER", str(registry.ledger.path))
    for allow, words in (("false", "MONITOR_ALLOW_PICKLE_ARTIFACTS=true"), ("true", "migrated old:1 to skops")):
        monkeypatch.setenv("MONITOR_ALLOW_PICKLE_ARTIFACTS", allow)
        get_settings.cache_clear()
        out = CliRunner().invoke(models_group, ["migrate"])
        assert words in out.output, out.output
    get_settings.cache_clear()
    assert registry.load("old") == {"kind": "legacy"}
