"""A model registry on disk: versioned artifacts, their cards, and a sha256 check before loading.

Layout, under the registry directory (:func:`models_dir`)::

    <dir>/<name>/<version>/model.pkl   the pickled model (pickle protocol 5)
    <dir>/<name>/<version>/card.json   name, version, created, dataset, library versions, features,
                                       split, metrics (test, out-of-time), reference histogram,
                                       artifact sha256

Versions are integer strings ``"1"``, ``"2"``, ... per name, allocated by an exclusive
``mkdir`` (two trainings at once never share a version). ``card.json`` is written last and
atomically: a version directory without it is unfinished and invisible. :func:`load_model`
hashes the bytes of ``model.pkl`` and refuses to unpickle them unless the hash is the card's.

>>> import tempfile
>>> reg = Registry(tempfile.mkdtemp())
>>> card = reg.register("demo", {"kind": "x"}, {"dataset": "none"})
>>> card.version, reg.versions("demo"), reg.load("demo")
('1', ['1'], {'kind': 'x'})
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from monitor.errors import MonitorError, NotFound

MODEL_FILE = "model.pkl"
CARD_FILE = "card.json"
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # the record contract's model names
MODELS_DIR_ENV = "MONITOR_MODELS_DIR"
DEFAULT_MODELS_DIR = Path(".run") / "models"


class RegistryError(MonitorError):
    """The registry refused an operation (bad name, unreadable card...)."""


class IntegrityError(RegistryError):
    """A model artifact whose sha256 is not the one its card recorded: it is not loaded."""


def models_dir(settings: Any = None) -> Path:
    """The registry directory: ``settings.models_dir`` (env ``MONITOR_MODELS_DIR``, default ``.run/models``).

    Without settings, or with a settings object that has no such field, the environment
    variable is read here, else ``.run/models`` (relative to the working directory).

    >>> class S: models_dir = Path("/srv/models")
    >>> models_dir(S())
    PosixPath('/srv/models')
    """
    configured = getattr(settings, "models_dir", None) if settings is not None else None
    if configured:
        return Path(configured)
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else DEFAULT_MODELS_DIR


def library_versions() -> dict[str, str]:
    """Versions of what a pickled model depends on (recorded in the card, checked on load)."""
    import numpy
    import pandas
    import sklearn

    return {"python": ".".join(map(str, sys.version_info[:3])), "sklearn": sklearn.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__}


def sha256_of(data: bytes) -> str:
    """
    >>> sha256_of(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


class ModelCard(BaseModel):
    """The card of one registered model version (``card.json``); ``extra`` fields are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    version: str
    created: str
    artifact: dict[str, Any] = Field(default_factory=dict)  # file, sha256, bytes
    libraries: dict[str, str] = Field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.model_dump().get(key, default)

    @property
    def sha256(self) -> str:
        return str(self.artifact.get("sha256", ""))

    def metric(self, split: str, name: str) -> float | None:
        """``card.metric("test", "auc")``: a recorded metric, or None."""
        value = ((self.get("metrics") or {}).get(split) or {}).get(name)
        return None if value is None else float(value)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Registry:
    """Models by name and version in one directory."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else models_dir()

    # ---- names and versions ---------------------------------------------------------------
    @staticmethod
    def check_name(name: str) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name) or name in (".", ".."):
            raise RegistryError(f"invalid model name {name!r}: use 1-128 of A-Z a-z 0-9 _ . -")
        return name

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Complete versions (with a card), in increasing order."""
        folder = self.root / self.check_name(name)
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if p.name.isdigit() and (p / CARD_FILE).is_file()]
        return sorted(found, key=int)

    def resolve(self, name: str, version: str | None = None) -> str:
        """The version asked for (``None`` or ``"latest"``: the highest), or NotFound."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"no registered model {name!r} in {self.root} (train one: monitor models train)")
        if version in (None, "", "latest"):
            return versions[-1]
        version = str(version)
        if version not in versions:
            raise NotFound(f"model {name!r} has no version {version!r} in {self.root} (versions: {', '.join(versions)})")
        return version

    def path(self, name: str, version: str) -> Path:
        return self.root / self.check_name(name) / str(version)

    # ---- write ------------------------------------------------------------------------------
    def _allocate(self, name: str) -> tuple[str, Path]:
        folder = self.root / self.check_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
        number = max(taken, default=0) + 1
        while True:
            try:
                (folder / str(number)).mkdir()
                return str(number), folder / str(number)
            except FileExistsError:
                number += 1

    def register(self, name: str, model: Any, fields: dict[str, Any]) -> ModelCard:
        """Pickle ``model`` as the next version of ``name`` and write its card (``fields`` + the
        registry's own: name, version, created, libraries, artifact)."""
        data = pickle.dumps(model, protocol=5)
        version, folder = self._allocate(name)
        try:
            _atomic_write(folder / MODEL_FILE, data)
            card = ModelCard(**{**fields, "name": name, "version": version,
                                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                "libraries": {**library_versions(), **fields.get("libraries", {})},
                                "artifact": {"file": MODEL_FILE, "sha256": sha256_of(data), "bytes": len(data)}})
            _atomic_write(folder / CARD_FILE, json.dumps(card.model_dump(), indent=1).encode())
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return card

    # ---- read -------------------------------------------------------------------------------
    def card(self, name: str, version: str | None = None) -> ModelCard:
        version = self.resolve(name, version)
        path = self.path(name, version) / CARD_FILE
        try:
            return ModelCard(**json.loads(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"unreadable model card {path}: {exc}") from None

    def cards(self) -> list[ModelCard]:
        return [self.card(n, v) for n in self.names() for v in self.versions(n)]

    def load(self, name: str, version: str | None = None) -> Any:
        """Unpickle a model after checking its sha256 against the card (IntegrityError if not equal)."""
        card = self.card(name, version)
        path = self.path(name, card.version) / str(card.artifact.get("file", MODEL_FILE))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"model {name}:{card.version}: cannot read {path}: {exc}") from None
        actual = sha256_of(data)
        if not card.sha256 or actual != card.sha256:
            raise IntegrityError(
                f"model {name}:{card.version}: {path} has sha256 {actual}, but its card records "
                f"{card.sha256 or 'none'}; the artifact was changed or corrupted and is not loaded "
                f"(retrain it with `monitor models train`)")
        model = pickle.loads(data)
        stale = {k: (v, library_versions().get(k)) for k, v in card.libraries.items()
                 if k in ("sklearn", "numpy") and v != library_versions().get(k)}
        if stale:
            warnings.warn(f"model {name}:{card.version} was pickled with "
                          + ", ".join(f"{k} {old} (now {new})" for k, (old, new) in stale.items())
                          + "; its scores may differ: retrain it", RuntimeWarning, stacklevel=2)
        return model


def load_model(name: str, version: str | None = None, root: str | Path | None = None) -> tuple[Any, ModelCard]:
    """The model ``name`` (latest version unless ``version``) and its card; sha256 checked first."""
    registry = Registry(root)
    card = registry.card(name, version)
    return registry.load(name, card.version), card


def reference_histogram(card: ModelCard):
    """The reference (test-split) score histogram recorded in the card."""
    from monitor.stats import ScoreHistogram

    ref = card.get("reference") or {}
    if "histogram" not in ref:
        raise RegistryError(f"model {card.name}:{card.version} has no reference histogram in its card")
    return ScoreHistogram.from_dict(ref["histogram"])


async def load_reference(settings, card: ModelCard, timeout_s: float = 10.0) -> dict:
    """Store the card's reference histogram in Redis for (name, version); returns the stored meta.

    Raises MonitorError when the histogram's resolution is not the settings' (the worker could
    not compare them) or Redis cannot be reached within ``timeout_s``.
    """
    import redis.exceptions

    from monitor.connect import redis_error_message
    from monitor.stats import FeatureProfile
    from monitor.store import Store

    hist = reference_histogram(card)
    if abs(hist.resolution - settings.resolution) > 1e-15:
        raise RegistryError(f"model {card.name}:{card.version}: reference resolution {hist.resolution} is not "
                            f"MONITOR_RESOLUTION {settings.resolution}; retrain with the same resolution")
    ref = card.get("reference") or {}
    meta = {"n": hist.n, "resolution": hist.resolution, "source": f"registry {card.name}:{card.version} {ref.get('source', '')}".strip(),
            "loaded_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    if ref.get("auc") is not None:
        meta["auc"] = ref["auc"]
    store = Store.connect(settings)
    try:
        profile = FeatureProfile.from_dict(ref["feature_profile"]) if ref.get("feature_profile") else None
        await asyncio.wait_for(store.save_reference(card.name, card.version, hist, meta, profile), timeout_s)
    except (redis.exceptions.RedisError, OSError, asyncio.TimeoutError) as exc:
        raise MonitorError(redis_error_message(settings, exc)) from None
    finally:
        try:
            await store.close()
        except Exception:  # pragma: no cover - closing a connection that never opened
            pass
    return meta
