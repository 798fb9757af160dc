"""A model registry on disk: versioned artifacts that cannot run code, their cards, and a trusted sha256.

Layout, under the registry directory (:func:`models_dir`)::

    <dir>/<name>/<version>/model.skops  the model in skops format (a zip of JSON + numpy arrays:
                                        loading it builds objects of listed types, it never unpickles)
    <dir>/<name>/<version>/card.json    name, version, created, dataset, library versions, features,
                                        split, metrics (test, out-of-time), reference histogram and
                                        raw scores (test split), artifact file, format and sha256

Versions are integer strings ``"1"``, ``"2"``, ... per name, allocated by an exclusive
``mkdir`` (two trainings at once never share a version). ``card.json`` is written last and
atomically: a version directory without it is unfinished and invisible.

Loading (:meth:`Registry.load`) refuses, with :class:`ArtifactRefused` naming the model and the reason:

* an artifact path outside the version's folder (``..``, an absolute path, a symlink out);
* bytes whose sha256 is not the one recorded at registration in the **ledger**
  (:class:`RedisLedger`, ``{prefix}:artifact:{name}:{version}``, or a :class:`FileLedger` outside
  the registry). The card's own sha256 is only informative: whoever can write ``card.json`` can
  rewrite it, but cannot reach the ledger;
* a pickle, unless ``MONITOR_ALLOW_PICKLE_ARTIFACTS=true`` (registered models before issue 16);
* a skops file holding any type not in :data:`TRUSTED_TYPES` (checked before anything is built).

>>> import tempfile
>>> reg = Registry(tempfile.mkdtemp(), ledger=FileLedger(Path(tempfile.mkdtemp()) / "ledger.json"))
>>> card = reg.register("demo", {"kind": "x"}, {"dataset": "none"})
>>> card.version, card.artifact["file"], reg.versions("demo"), reg.load("demo")
('1', 'model.skops', ['1'], {'kind': 'x'})
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
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

MODEL_FILE = "model.skops"
PICKLE_FILE = "model.pkl"  # registered before issue 16; loaded only with MONITOR_ALLOW_PICKLE_ARTIFACTS=true
CARD_FILE = "card.json"
# The types our models hold beyond those skops trusts by default (numpy, scipy, most of sklearn,
# builtins). Anything else found in an artifact is refused before it is built: keep this list
# explicit and short, and add a type only after reading what loading it can do.
TRUSTED_TYPES = (
    "models.train.TrainedModel",  # a dataclass: fields set, no code run
    "numpy.dtype",
    "functools.partial",  # HistGradientBoosting's preprocessor; its function is checked on its own
    "sklearn.utils.validation.check_array",  # ... which is this function
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")  # the record contract's model names


class RegistryError(MonitorError):
    """The registry refused an operation (bad name, unreadable card...)."""


class ArtifactRefused(RegistryError):
    """A model artifact that is not loaded: outside the registry, not the registered bytes, a pickle
    (not allowed) or holding an untrusted type. The message names the model, never a server path."""


class IntegrityError(ArtifactRefused):
    """A model artifact whose sha256 is not the one recorded at registration: it is not loaded."""


def models_dir(settings: Any = None) -> Path:
    """The registry directory: ``settings.models_dir`` (env ``MONITOR_MODELS_DIR``, default ``.run/models``);
    without settings, the process-wide ones (:func:`monitor.settings.get_settings`).

    >>> class S: models_dir = Path("/srv/models")
    >>> models_dir(S())
    PosixPath('/srv/models')
    """
    if settings is None:
        from monitor.settings import get_settings

        settings = get_settings()
    return Path(settings.models_dir)


def library_versions() -> dict[str, str]:
    """Versions of what a saved model depends on (recorded in the card, checked on load)."""
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


# ---- the ledger of trusted hashes ----------------------------------------------------------------
class FileLedger:
    """Trusted sha256 per ``name:version`` in a JSON file that must live outside the registry.

    For machines without Redis (tests, offline training); put it where the registry's writers
    cannot write (another owner, a read-only mount for the readers).

    >>> import tempfile
    >>> ledger = FileLedger(Path(tempfile.mkdtemp()) / "l.json")
    >>> ledger.trusted("m", "1") is None
    True
    >>> ledger.record("m", "1", "ab" * 32); ledger.trusted("m", "1") == "ab" * 32
    True
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def where(self) -> Path:
        return self.path

    def _read(self) -> dict[str, str]:
        try:
            return json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"unreadable model ledger ({type(exc).__name__})") from None

    def record(self, name: str, version: str, sha256: str) -> None:
        entries = self._read()
        entries[f"{name}:{version}"] = sha256
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, json.dumps(entries, indent=1, sort_keys=True).encode())

    def trusted(self, name: str, version: str) -> str | None:
        return self._read().get(f"{name}:{version}")


class RedisLedger:
    """Trusted sha256 per model version in Redis: ``{prefix}:artifact:{name}:{version}`` (a string).

    Written at registration, read on every load; the registry folder's writers cannot reach it.
    """

    def __init__(self, settings: Any):
        from monitor.state import Keys, redis_client

        self.keys = Keys(settings.key_prefix)
        self.prefix = settings.key_prefix
        self.redis_url = settings.redis_url
        self.client = redis_client(settings, socket_timeout=10)

    def where(self) -> None:
        return None

    def key(self, name: str, version: str) -> str:
        return self.keys.artifact(name, version)

    def _call(self, what: str, *args):
        import redis.exceptions

        try:
            return getattr(self.client, what)(*args)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise RegistryError(f"the model ledger in Redis is not reachable ({type(exc).__name__}); "
                                f"start Redis or set MONITOR_MODELS_LEDGER to a file") from None

    def record(self, name: str, version: str, sha256: str) -> None:
        self._call("set", self.key(name, version), sha256)

    def trusted(self, name: str, version: str) -> str | None:
        value = self._call("get", self.key(name, version))
        return None if value is None else value.decode()


_REDIS_LEDGERS: dict[tuple, RedisLedger] = {}


def ledger_for(settings: Any):
    """The ledger the settings name: ``MONITOR_MODELS_LEDGER`` = ``redis`` (default) or a file path.

    >>> class S: models_ledger = "/srv/ledger.json"
    >>> ledger_for(S()).path
    PosixPath('/srv/ledger.json')
    """
    where = str(getattr(settings, "models_ledger", "redis") or "redis")
    if where != "redis":
        return FileLedger(where)
    key = (settings.redis_url, settings.key_prefix, getattr(settings, "redis_username", None))
    if key not in _REDIS_LEDGERS:  # one connection pool per Redis and prefix, not one per request
        _REDIS_LEDGERS[key] = RedisLedger(settings)
    return _REDIS_LEDGERS[key]


class Registry:
    """Models by name and version in one directory, their trusted hashes in a ledger elsewhere.

    ``ledger`` and ``allow_pickle`` default to the settings' (``MONITOR_MODELS_LEDGER``,
    ``MONITOR_ALLOW_PICKLE_ARTIFACTS``); ``settings`` default to :func:`get_settings`.
    """

    def __init__(self, root: str | Path | None = None, ledger: Any = None, allow_pickle: bool | None = None,
                 settings: Any = None):
        if settings is None and (ledger is None or allow_pickle is None):
            from monitor.settings import get_settings

            settings = get_settings()
        self.root = Path(root) if root is not None else models_dir(settings)
        self.ledger = ledger if ledger is not None else ledger_for(settings)
        self.allow_pickle = (bool(getattr(settings, "allow_pickle_artifacts", False))
                             if allow_pickle is None else allow_pickle)
        where = self.ledger.where()
        if where is not None and Path(where).resolve().is_relative_to(self.root.resolve()):
            # whoever could plant an artifact could then rewrite its trusted hash too
            raise RegistryError("the model ledger file must be outside the registry directory "
                                "(MONITOR_MODELS_LEDGER)")

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
        """Save ``model`` (skops) as the next version of ``name``, record its sha256 in the ledger and
        write its card (``fields`` + the registry's own: name, version, created, libraries, artifact).

        A model holding a type outside :data:`TRUSTED_TYPES` is refused here, not at its first load."""
        data = skops_bytes(f"model {name}", model)
        version, folder = self._allocate(name)
        try:
            _atomic_write(folder / MODEL_FILE, data)
            self.ledger.record(name, version, sha256_of(data))
            card = ModelCard(**{**fields, "name": name, "version": version,
                                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                "libraries": {**library_versions(), **fields.get("libraries", {})},
                                "artifact": {"file": MODEL_FILE, "format": "skops", "sha256": sha256_of(data),
                                             "bytes": len(data)}})
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

    def artifact_path(self, card: ModelCard) -> Path:
        """The card's artifact file, resolved; ArtifactRefused unless it is inside its version's folder
        (no ``..``, no absolute path, no symlink out of the registry)."""
        label = f"model {card.name}:{card.version}"
        folder = self.path(card.name, card.version)
        file = str(card.artifact.get("file") or "")
        if not file:
            raise ArtifactRefused(f"{label}: its card names no artifact file")
        target = (folder / file).resolve()
        if not target.is_relative_to(folder.resolve()) or not folder.resolve().is_relative_to(self.root.resolve()):
            raise ArtifactRefused(f"{label}: its artifact path is outside the registry; not loaded")
        return target

    def load(self, name: str, version: str | None = None) -> Any:
        """The model, after every check of the module docstring (ArtifactRefused names the failed one)."""
        card = self.card(name, version)
        label = f"model {name}:{card.version}"
        path = self.artifact_path(card)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"{label}: cannot read its artifact ({type(exc).__name__})") from None
        trusted = self.ledger.trusted(name, card.version)
        actual = sha256_of(data)
        if not trusted:
            raise ArtifactRefused(f"{label}: no trusted sha256 recorded at registration in the model ledger; "
                                  f"not loaded (register it with `monitor models train` or `monitor models migrate`)")
        if actual != trusted:
            raise IntegrityError(f"{label}: its artifact has sha256 {actual}, but {trusted} was recorded at "
                                 f"registration; it was changed or corrupted and is not loaded (retrain it)")
        model = self._deserialize(label, card, data)
        stale = {k: (v, library_versions().get(k)) for k, v in card.libraries.items()
                 if k in ("sklearn", "numpy") and v != library_versions().get(k)}
        if stale:
            warnings.warn(f"model {name}:{card.version} was saved with "
                          + ", ".join(f"{k} {old} (now {new})" for k, (old, new) in stale.items())
                          + "; its scores may differ: retrain it", RuntimeWarning, stacklevel=2)
        return model

    def migrate(self, name: str, version: str) -> ModelCard:
        """Re-save a version registered as a pickle (before issue 16) as skops, in place (same version, so
        its records and Redis reference stay valid), and record its sha256 in the ledger.

        Unpickling runs code: only with ``MONITOR_ALLOW_PICKLE_ARTIFACTS=true``, for artifacts you made.
        The pickle's bytes must match the card's sha256 (the only hash those versions have).
        """
        import skops.io

        card = self.card(name, version)
        label = f"model {name}:{card.version}"
        if artifact_format(card) != "pickle":
            raise RegistryError(f"{label}: already a skops artifact; nothing to migrate")
        if not self.allow_pickle:
            raise ArtifactRefused(f"{label}: migrating unpickles the artifact, which can run code; set "
                                  f"MONITOR_ALLOW_PICKLE_ARTIFACTS=true only if you made it")
        path = self.artifact_path(card)
        data = path.read_bytes()
        if not card.sha256 or sha256_of(data) != card.sha256:
            raise IntegrityError(f"{label}: its pickle's sha256 is not its card's; not migrated (retrain it)")
        trusted = self.ledger.trusted(name, card.version)
        if trusted and trusted != card.sha256:
            raise IntegrityError(f"{label}: its pickle's sha256 is not the one in the model ledger; not migrated")
        saved = skops.io.dumps(pickle.loads(data))  # noqa: S301 - migrate: allowed, sha256 matches card and ledger
        refused = untrusted_types(saved)
        if refused:
            raise ArtifactRefused(f"{label}: holds untrusted type(s) {', '.join(refused)}; not migrated")
        folder = self.path(name, card.version)
        _atomic_write(folder / MODEL_FILE, saved)
        self.ledger.record(name, card.version, sha256_of(saved))
        new = ModelCard(**{**card.model_dump(), "migrated_from": "pickle",
                           "artifact": {"file": MODEL_FILE, "format": "skops", "sha256": sha256_of(saved),
                                        "bytes": len(saved)}})
        _atomic_write(folder / CARD_FILE, json.dumps(new.model_dump(), indent=1).encode())
        path.unlink(missing_ok=True)
        return new

    def legacy_versions(self) -> list[tuple[str, str]]:
        """(name, version) of every version whose artifact is a pickle."""
        return [(c.name, c.version) for c in self.cards() if artifact_format(c) == "pickle"]

    def _deserialize(self, label: str, card: ModelCard, data: bytes) -> Any:
        """skops with our trusted types only; a pickle only when allowed (it can run any code)."""
        if artifact_format(card) == "pickle":
            if not self.allow_pickle:
                raise ArtifactRefused(f"{label}: its artifact is a pickle, which can run code when loaded; "
                                      f"refused (set MONITOR_ALLOW_PICKLE_ARTIFACTS=true only for artifacts "
                                      f"you made, and migrate them: monitor models migrate)")
            return pickle.loads(data)  # noqa: S301 - only with MONITOR_ALLOW_PICKLE_ARTIFACTS (refused above)
        return load_skops(label, data)


def skops_bytes(label: str, model: Any) -> bytes:
    """``model`` as skops bytes; ArtifactRefused if it holds a type outside :data:`TRUSTED_TYPES` (refused
    when it is saved, not at its first load). Every registry (this one, MLflow's) saves through here.

    >>> load_skops("model m:1", skops_bytes("model m", {"a": [1, 2.0]}))
    {'a': [1, 2.0]}
    """
    import skops.io

    data = skops.io.dumps(model)
    refused = untrusted_types(data)
    if refused:
        raise ArtifactRefused(f"{label}: holds untrusted type(s) {', '.join(refused)}; "
                              f"add them to models.registry.TRUSTED_TYPES only if loading them runs no code")
    return data


def load_skops(label: str, data: bytes) -> Any:
    """The object in skops bytes, built from trusted types only (never unpickled); ArtifactRefused otherwise.
    Check the bytes' sha256 before calling this: it says what the bytes are, not whether they are ours.

    >>> load_skops("model m:1", b"not a zip")
    Traceback (most recent call last):
    ...
    models.registry.ArtifactRefused: model m:1: its artifact is not a valid skops file (BadZipFile)
    """
    import skops.io

    try:
        refused = untrusted_types(data)
    except Exception as exc:  # not a zip, no schema: a skops loader error of any kind
        raise ArtifactRefused(f"{label}: its artifact is not a valid skops file ({type(exc).__name__})") from None
    if refused:
        raise ArtifactRefused(f"{label}: its artifact holds untrusted type(s) {', '.join(refused)}; not loaded")
    try:
        return skops.io.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:
        raise ArtifactRefused(f"{label}: its skops artifact cannot be loaded ({type(exc).__name__})") from None


def artifact_format(card: ModelCard) -> str:
    """``skops`` or ``pickle``: the card's ``artifact.format``, else from the file name (cards before
    issue 16 had no format and a ``model.pkl``). Anything else is loaded as skops, which never unpickles.

    >>> artifact_format(ModelCard(name="m", version="1", created="", artifact={"file": "model.pkl"}))
    'pickle'
    """
    fmt = str(card.artifact.get("format") or "")
    if fmt:
        return "pickle" if fmt == "pickle" else "skops"
    return "pickle" if str(card.artifact.get("file", "")).endswith((".pkl", ".pickle")) else "skops"


def untrusted_types(data: bytes) -> list[str]:
    """The types in a skops artifact that neither skops nor :data:`TRUSTED_TYPES` trusts.

    >>> import skops.io
    >>> untrusted_types(skops.io.dumps({"a": [1, 2.0]}))
    []
    """
    import skops.io

    return sorted(t for t in skops.io.get_untrusted_types(data=data) if t not in TRUSTED_TYPES)


def load_model(name: str, version: str | None = None, root: str | Path | None = None) -> tuple[Any, ModelCard]:
    """The model ``name`` (latest version unless ``version``) and its card; every load check applied."""
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


def reference_scores(card: ModelCard):
    """The reference's raw scores recorded in the card (the test split, ``reference.scores``), or None
    for a card registered before issue 19 (then only its histogram is known).

    The card is not the trust anchor (the ledger's artifact sha256 is): whoever can rewrite ``card.json``
    can change these scores, hence an adherence result, but never what code runs.

    >>> reference_scores(ModelCard(name="m", version="1", created="", reference={"scores": [0.25, 0.5]}))
    array([0.25, 0.5 ])
    >>> reference_scores(ModelCard(name="m", version="1", created="", reference={"histogram": {}})) is None
    True
    """
    import numpy as np

    scores = (card.get("reference") or {}).get("scores")
    if scores is None:
        return None
    try:
        values = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        values = np.full(1, np.nan)  # not numbers: refused below
    if values.ndim != 1 or not np.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise RegistryError(f"model {card.name}:{card.version}: its card's reference scores are not a list of "
                            f"probabilities in [0, 1]; retrain it")
    return values


async def load_reference(settings, card: ModelCard, timeout_s: float = 10.0) -> dict:
    """Store the card's reference histogram in Redis for (name, version); returns the stored meta.

    Raises MonitorError when the histogram's resolution is not the settings' (the worker could
    not compare them) or Redis cannot be reached within ``timeout_s``.
    """
    import redis.exceptions

    from monitor.connect import redis_error_message
    from monitor.state import Store
    from monitor.stats import FeatureProfile

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
        except Exception as exc:  # pragma: no cover - closing a connection that never opened
            logging.getLogger("models.registry").debug("closing the Redis store: %r", exc)
    return meta
