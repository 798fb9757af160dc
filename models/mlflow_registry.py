"""Registered models in an MLflow tracking store: the same interface as :class:`models.registry.Registry`.

Set ``MONITOR_MLFLOW_TRACKING_URI`` (or pass ``--mlflow``: the embedded store
``sqlite:///<run_dir>/mlflow.db``, artifacts in a folder beside it) and `monitor models`, `monitor produce
--dataset` and the API's scoring use MLflow's registry instead of ``MONITOR_MODELS_DIR``
(:func:`registry_for`). Unset, nothing here is imported and MLflow is not needed.

A training (:meth:`MlflowRegistry.register`) is one run of the experiment ``MONITOR_MLFLOW_EXPERIMENT``:

* params: dataset, kind, estimator, split, features, resolution; metrics ``train_*``, ``test_*``, ``oot_*``
  (n, bads, bad_rate, auc, gini, ks);
* artifacts: ``model.skops`` (the model in the format that cannot run code on load, written and read by
  :func:`models.registry.skops_bytes` / :func:`models.registry.load_skops`, trusted types only),
  ``card.json`` (the monitor's card, as the on-disk registry writes it), ``reference/histogram.json``,
  ``reference/scores.json`` (the test split's raw scores) and ``reference/feature_profile.json``;
* a registered model version (its number is the ``model_version`` of the records it scores) whose tag
  ``sha256`` is the artifact's: :meth:`MlflowRegistry.load` downloads the bytes and refuses them
  (:class:`models.registry.IntegrityError`) unless they hash to it.

Only the MLflow client (``mlflow-skinny``) is used; a sqlite store needs ``sqlalchemy`` and ``alembic``.
mlflow is imported lazily (it takes seconds): `monitor --help` never imports it.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.registry import (
    CARD_FILE,
    MODEL_FILE,
    IntegrityError,
    ModelCard,
    Registry,
    RegistryError,
    library_versions,
    load_skops,
    sha256_of,
    skops_bytes,
)
from monitor.errors import MonitorError, NotFound

log = logging.getLogger("models.mlflow_registry")

SHA_TAG = "sha256"  # model version tag: the sha256 of model.skops, checked before every load
COMPLETE_TAG = "monitor.complete"  # model version tag, set once its card is logged: only such versions are listed
MONITORING_RUN_TAG = "monitoring_run_id"  # model version tag: the run that models/mlflow_sync.py logs to
ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MODEL_URI_RE = re.compile(r"^models:/(?P<name>[A-Za-z0-9_.-]{1,128})(?:/(?P<version>[0-9]+)|@(?P<alias>[^/]*))$")
URI_FORMS = "models:/<name>@<alias> or models:/<name>/<version>"


@dataclass(frozen=True)
class ModelRef:
    """A registered model version named by a ``models:/`` URI: a version number or an alias."""

    name: str
    version: str | None
    alias: str | None


def parse_model_uri(uri: str) -> ModelRef:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>``; MonitorError for anything else.

    >>> parse_model_uri("models:/lc@champion"), parse_model_uri("models:/lc/2").version
    (ModelRef(name='lc', version=None, alias='champion'), '2')
    """
    match = MODEL_URI_RE.match(str(uri))
    if not match or match["name"] in (".", "..") or (match["alias"] is not None and not ALIAS_RE.match(match["alias"])):
        raise MonitorError(f"{uri!r} is not a registered model version: use {URI_FORMS}")
    return ModelRef(match["name"], match["version"], match["alias"])


def check_artifact(label: str, data: bytes, expected: str | None) -> None:
    """Refuse bytes whose sha256 is not the one recorded when the version was registered."""
    if not expected:
        raise IntegrityError(f"{label}: no sha256 tag on the registered version; not loaded "
                             f"(register it with `monitor models train --mlflow`)")
    actual = sha256_of(data)
    if actual != expected:
        raise IntegrityError(f"{label}: its artifact has sha256 {actual}, but {expected} was recorded at "
                             f"registration; it was changed or corrupted and is not loaded (retrain it)")


def tracking_uri(settings: Any) -> str:
    """``MONITOR_MLFLOW_TRACKING_URI``, else the embedded store in the run directory.

    >>> class S: mlflow_tracking_uri = None; run_dir = Path(".run")
    >>> tracking_uri(S())
    'sqlite:///.run/mlflow.db'
    """
    return settings.mlflow_tracking_uri or f"sqlite:///{Path(settings.run_dir) / 'mlflow.db'}"


def local_artifact_root(settings: Any, uri: str) -> Path | None:
    """Where a local store's experiment keeps its artifacts (None: an http(s) server's own place).

    >>> class S: mlflow_artifact_root = None
    >>> local_artifact_root(S(), "sqlite:////srv/mlflow.db"), local_artifact_root(S(), "http://mlflow:5000")
    (PosixPath('/srv/mlflow-artifacts'), None)
    """
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    if settings.mlflow_artifact_root:
        return Path(settings.mlflow_artifact_root).resolve()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / "mlflow-artifacts"
    return Path(uri.removeprefix("file://")).resolve() / "mlflow-artifacts"


_REGISTRIES: dict[tuple, MlflowRegistry] = {}


def registry_for(settings: Any, mlflow: bool = False) -> Any:
    """The registry the settings name: MLflow's when ``MONITOR_MLFLOW_TRACKING_URI`` is set or ``mlflow``
    is asked for, else the on-disk :class:`models.registry.Registry` (no MLflow needed)."""
    if not (mlflow or settings.mlflow_tracking_uri):
        return Registry(Path(settings.models_dir), settings=settings)
    key = (tracking_uri(settings), settings.mlflow_artifact_root, settings.mlflow_experiment)
    if key not in _REGISTRIES:  # one client (and sqlite engine) per store, not one per request
        _REGISTRIES[key] = MlflowRegistry(settings)
    return _REGISTRIES[key]


def _mlflow_error(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or exc).splitlines()[0][:300]


class MlflowRegistry:
    """Models by name and version in an MLflow registry (see the module docstring)."""

    def __init__(self, settings: Any):
        self.settings = settings
        self.uri = tracking_uri(settings)
        self.root = self.uri  # what messages and the API's model cache name the registry by
        self._client: Any = None
        self._experiment_id: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            if self.uri.startswith("sqlite:///"):  # the embedded store's folder may not exist yet
                Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        return self._client

    def call(self, what: str, *args, **kwargs) -> Any:
        """A client call (by method name); MLflow's errors become RegistryError (NotFound for a missing resource)."""
        from mlflow.exceptions import MlflowException

        try:
            return getattr(self.client, what)(*args, **kwargs)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
                raise NotFound(f"MLflow {self.uri}: {_mlflow_error(exc)}") from None
            raise RegistryError(f"MLflow {self.uri}: {_mlflow_error(exc)}") from None

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            name = self.settings.mlflow_experiment
            found = self.call("get_experiment_by_name", name)
            if found is not None:
                self._experiment_id = str(found.experiment_id)
            else:
                root = local_artifact_root(self.settings, self.uri)
                self._experiment_id = str(self.call("create_experiment", name,
                                                     artifact_location=root.as_uri() if root else None))
        return self._experiment_id

    # ---- names and versions ---------------------------------------------------------------
    check_name = staticmethod(Registry.check_name)

    def names(self) -> list[str]:
        """Every registered model's name (all pages: the client returns 100 at a time)."""
        names, token = [], None
        while True:
            page = self.call("search_registered_models", max_results=1000, page_token=token)
            names += [m.name for m in page]
            token = getattr(page, "token", None)
            if not token:
                return sorted(names)

    def versions(self, name: str) -> list[str]:
        """Registered versions of ``name`` whose card is logged, in increasing order (a version is
        registered before its card: one still being logged, or left by a failed clean-up, is skipped)."""
        found = self.call("search_model_versions", f"name='{self.check_name(name)}'")
        return sorted((str(v.version) for v in found if (v.tags or {}).get(COMPLETE_TAG) == "1"), key=int)

    def resolve(self, name: str, version: str | None = None) -> str:
        """The version asked for: ``None``/``latest`` (the highest), a number, or an alias; else NotFound."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"no registered model {name!r} in MLflow {self.uri} (train one: monitor models train --mlflow)")
        if version in (None, "", "latest"):
            return versions[-1]
        version = str(version)
        if version.isdigit():
            if version not in versions:
                raise NotFound(f"model {name!r} has no version {version!r} in MLflow (versions: {', '.join(versions)})")
            return version
        return str(self.call("get_model_version_by_alias", name, version.lstrip("@")).version)

    def resolve_uri(self, uri: str) -> tuple[str, str]:
        """(name, version) of a ``models:/`` URI."""
        ref = parse_model_uri(uri)
        return ref.name, self.resolve(ref.name, ref.version or ref.alias)

    def path(self, name: str, version: str) -> str:
        return f"models:/{name}/{version}"

    # ---- write ------------------------------------------------------------------------------
    def register(self, name: str, model: Any, fields: dict[str, Any], alias: str | None = None) -> ModelCard:
        """Log a training run (params, metrics, artifacts) and register its model as the next version of
        ``name``; ``alias`` (e.g. ``champion``) then points at it. Returns the card, version = MLflow's."""
        self.check_name(name)
        if alias is not None and not ALIAS_RE.match(alias):
            raise RegistryError(f"invalid alias {alias!r}: use 1-64 of A-Z a-z 0-9 _ -")
        data = skops_bytes(f"model {name}", model)
        sha = sha256_of(data)
        run = self.call("create_run", self.experiment_id(), run_name=f"train {name}",
                         tags={"monitor.model": name, "monitor.kind": "training", SHA_TAG: sha})
        try:
            card = self._log_training(run, name, data, sha, fields)
        except BaseException:
            # a half-logged training is marked FAILED (its version, if made, deleted): never a version without card
            self._abandon(run.info.run_id, name)
            raise
        self.call("set_terminated", run.info.run_id)
        if alias is not None:
            self.set_alias(name, alias, card.version)
        return card

    def _log_training(self, run: Any, name: str, data: bytes, sha: str, fields: dict[str, Any]) -> ModelCard:
        import datetime as dt

        from mlflow.entities import Metric, Param

        run_id = run.info.run_id
        now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
        self.call("log_batch", run_id, params=[Param(k, v) for k, v in training_params(fields).items()],
                  metrics=[Metric(k, v, now_ms, 0) for k, v in training_metrics(fields).items()])
        reference = fields.get("reference") or {}
        with tempfile.TemporaryDirectory(prefix="mlflow-model-") as tmp:
            folder = Path(tmp)
            (folder / MODEL_FILE).write_bytes(data)
            (folder / "reference").mkdir()
            for part in ("histogram", "scores", "feature_profile"):
                if reference.get(part) is not None:
                    (folder / "reference" / f"{part}.json").write_text(json.dumps(reference[part]))
            self.call("log_artifacts", run_id, str(folder))
            if not self.call("search_registered_models", f"name='{name}'"):
                self.call("create_registered_model", name)
            registered = self.call("create_model_version", name, source=run.info.artifact_uri, run_id=run_id,
                                   tags={SHA_TAG: sha})
            card = ModelCard(**{**fields, "name": name, "version": str(registered.version),
                                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                "libraries": {**library_versions(), **fields.get("libraries", {})},
                                "registry": {"mlflow": self.uri, "run_id": run_id},
                                "artifact": {"file": MODEL_FILE, "format": "skops", "sha256": sha, "bytes": len(data)}})
            (folder / CARD_FILE).write_text(json.dumps(card.model_dump(), indent=1))
            self.call("log_artifact", run_id, str(folder / CARD_FILE))
            self.call("set_model_version_tag", name, card.version, COMPLETE_TAG, "1")
        return card

    def _abandon(self, run_id: str, name: str) -> None:
        """Best effort after a failed training: its run FAILED, the version it registered (if any) deleted."""
        try:
            for version in self.call("search_model_versions", f"name='{name}'"):
                if version.run_id == run_id:
                    self.call("delete_model_version", name, str(version.version))
            self.call("set_terminated", run_id, "FAILED")
        except Exception:  # noqa: BLE001 - best effort: the training's error, re-raised, says more than this one
            log.warning("cleaning up the failed training run %s of %s did not finish", run_id, name, exc_info=True)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``models:/<name>@<alias>`` at ``version``."""
        if not ALIAS_RE.match(alias):
            raise RegistryError(f"invalid alias {alias!r}: use 1-64 of A-Z a-z 0-9 _ -")
        self.call("set_registered_model_alias", name, alias, self.resolve(name, version))

    # ---- read -------------------------------------------------------------------------------
    def registered_version(self, name: str, version: str | None) -> Any:
        return self.call("get_model_version", self.check_name(name), self.resolve(name, version))

    def _download(self, run_id: str, path: str) -> bytes:
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory(prefix="mlflow-get-") as tmp:
            try:
                local = download_artifacts(run_id=run_id, artifact_path=path, dst_path=tmp, tracking_uri=self.uri)
                return Path(local).read_bytes()
            except Exception as exc:  # MlflowException or OSError: a missing or unreadable artifact
                raise RegistryError(f"MLflow run {run_id}: cannot read its artifact {path} "
                                    f"({type(exc).__name__}: {_mlflow_error(exc)})") from None

    def card(self, name: str, version: str | None = None) -> ModelCard:
        """The version's card (its ``card.json`` artifact); name and version are the registry's."""
        registered = self.registered_version(name, version)
        raw = self._download(registered.run_id, CARD_FILE)
        try:
            fields = json.loads(raw)
        except ValueError:
            raise RegistryError(f"model {name}:{registered.version}: unreadable card.json in MLflow") from None
        fields.update(name=name, version=str(registered.version),
                      aliases=sorted(getattr(registered, "aliases", []) or []))
        return ModelCard(**fields)

    def cards(self) -> list[ModelCard]:
        return [self.card(n, v) for n in self.names() for v in self.versions(n)]

    def load(self, name: str, version: str | None = None) -> Any:
        """The model: its skops artifact downloaded, its sha256 checked against the version's tag, built
        from trusted types only. IntegrityError on a hash mismatch, ArtifactRefused on an untrusted type."""
        registered = self.registered_version(name, version)
        label = f"model {name}:{registered.version}"
        data = self._download(registered.run_id, MODEL_FILE)
        check_artifact(label, data, (registered.tags or {}).get(SHA_TAG))
        return load_skops(label, data)

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.call("set_model_version_tag", name, version, key, value)


def training_params(fields: dict[str, Any]) -> dict[str, str]:
    """The run's params from a training's card fields (short strings: MLflow caps a param's length).

    >>> training_params({"dataset": "d", "kind": "default", "split": {"method": "time", "test_months": ["2018-02"]}})
    {'dataset': 'd', 'kind': 'default', 'split': 'time', 'test_months': '2018-02'}
    """
    split = fields.get("split") or {}
    features = fields.get("features") or {}
    reference = fields.get("reference") or {}
    params = {"dataset": fields.get("dataset"), "kind": fields.get("kind"), "estimator": fields.get("estimator"),
              "split": split.get("method"),
              **{f"{part}_months": ",".join(split.get(f"{part}_months") or []) for part in ("train", "test", "oot")},
              "numeric_features": len(features.get("numeric", [])) if features else None,
              "categorical_features": len(features.get("categorical", [])) if features else None,
              "resolution": reference.get("resolution")}
    return {k: str(v)[:500] for k, v in params.items() if v not in (None, "")}


def training_metrics(fields: dict[str, Any]) -> dict[str, float]:
    """``<split>_<metric>`` of every split's recorded metrics (n, bads, bad_rate, auc, gini, ks).

    >>> training_metrics({"metrics": {"test": {"n": 10, "auc": 0.7, "gini": None}, "oot": None}})
    {'test_n': 10.0, 'test_auc': 0.7}
    """
    out = {}
    for part, values in (fields.get("metrics") or {}).items():
        for key, value in (values or {}).items():
            if value is not None:
                out[f"{part}_{key}"] = float(value)
    return out
