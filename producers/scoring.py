"""Score a dataset or a credit-challenge file with a registered model, as records of the contract.

A credit-challenge file is a CSV, CSV.gz or JSON list of records with ``REF_DATE``, ``TARGET``
(optional, 0/1/null) and the feature columns (nulls as JSON null), without a score: the model
registered under that name (latest version unless one is given) scores it. Every column other
than ``record_id``, ``REF_DATE`` and ``TARGET`` is published as a feature (flat scalars, NaN as
null); the scoring report counts categories the model never saw in training.

Labels (``labels=``):

* ``inline``: each record carries its ``target`` (the default);
* ``none``: records are published without target;
* ``separate``: records without target, and the outcomes (``record_id``, ``model``,
  ``model_version``, ``target``, ``observed_at``) collected for a later publication on the
  outcomes topic (:meth:`RecordStream.outcome_records`).

>>> s = RecordStream([{"record_id": "a", "model": "m", "model_version": "2", "target": 1},
...                   {"record_id": "b", "model": "m", "model_version": "2", "target": None}], 2, labels="separate")
>>> [r["target"] for r in s], [(o["record_id"], o["target"]) for o in s.outcome_records("2024-05-01T00:00:00+00:00")]
([None, None], [('a', 1)])
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from monitor.errors import MonitorError

LABEL_MODES = ("inline", "none", "separate")
SCORE_COLUMN = "__score__"


class RecordStream(Iterator[dict]):
    """An iterator of records (publish it as is) that also keeps what the producer reports after:
    the scoring report, and with ``labels="separate"`` the outcomes met so far."""

    def __init__(self, records: Iterable[dict], total: int, labels: str = "inline", report=None,
                 model: str | None = None, version: str | None = None):
        if labels not in LABEL_MODES:
            raise MonitorError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
        self.total, self.labels, self.report = int(total), labels, report
        self.model, self.version = model, version
        self.outcomes: list[dict] = []
        self._it = self._run(iter(records))

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> RecordStream:
        return self

    def __next__(self) -> dict:
        return next(self._it)

    def _run(self, records: Iterator[dict]) -> Iterator[dict]:
        for rec in records:
            if self.labels != "inline":
                target = rec.pop("TARGET", None)
                target = rec.pop("target", target)
                rec["target"] = None
                if self.labels == "separate" and target is not None:
                    self.outcomes.append({"record_id": rec["record_id"], "model": rec.get("model"),
                                          "model_version": str(rec.get("model_version", "1")), "target": int(target)})
            yield rec

    def outcome_records(self, observed_at: str | None = None) -> list[dict]:
        """The outcomes met so far, stamped ``observed_at`` (default: now, UTC): publish them after the records."""
        stamp = observed_at or dt.datetime.now(dt.timezone.utc).isoformat()
        return [{**o, "observed_at": stamp} for o in self.outcomes]


def scored_records(frame: pd.DataFrame, model_name: str, version: str | None = None, *, labels: str = "inline",
                   source: str = "scored", registry_dir: str | Path | None = None) -> RecordStream:
    """Score ``frame`` with the registered model ``model_name`` (latest version unless ``version``)
    and yield records of the contract, published as that model and version.

    ``frame`` needs ``REF_DATE`` and the model's feature columns; ``TARGET`` and ``record_id`` are
    optional (ids default to ``<source>-<row>``). The stream's ``report`` is the scoring report.
    """
    from models.train import score_frame
    from producers.files import records_from_frame

    if labels not in LABEL_MODES:
        raise MonitorError(f"labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")
    registry = _registry(registry_dir)
    card = registry.card(model_name, version)
    model = registry.load(card.name, card.version)
    try:
        scores, report = score_frame(model, frame)
    except MonitorError as exc:
        raise MonitorError(f"{source}: cannot score with {card.name}:{card.version}: {exc}") from None
    scored = frame.copy()
    scored[SCORE_COLUMN] = scores
    records = records_from_frame(scored, card.name, card.version, SCORE_COLUMN, source=source)
    return RecordStream(records, len(frame), labels=labels, report=report, model=card.name, version=card.version)


def _registry(registry_dir: str | Path | None = None):
    """The on-disk registry ``registry_dir``, else the settings' (MLflow's when MONITOR_MLFLOW_TRACKING_URI is set)."""
    from models.registry import Registry
    from monitor.settings import get_settings

    if registry_dir is not None:
        return Registry(registry_dir)
    from models.mlflow_registry import registry_for

    return registry_for(get_settings())


def registry_root() -> str:
    """Where the settings' registry is (a folder, or an MLflow tracking URI), for messages."""
    return str(_registry().root)


def has_registered_model(name: str, registry_dir: str | Path | None = None) -> bool:
    try:
        return bool(_registry(registry_dir).versions(name))
    except MonitorError:
        return False
