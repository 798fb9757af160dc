"""Where `monitor produce` takes its records from: a file, a synthetic scenario or a bundled dataset.

A file with a score column is published as it is. A file without one, or a dataset, is scored by
a registered model (`producers.scoring`): the one named by ``scored_with``, else ``model`` when a
model of that name is registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from monitor.errors import MonitorError

if TYPE_CHECKING:
    from producers.scoring import RecordStream


def open_source(*, path: Path | None = None, synthetic: str | None = None, dataset: str | None = None,
                model: str | None = None, version: str | None = "1", score_column: str = "score",
                scored_with: str | None = None, labels: str = "inline") -> tuple[RecordStream, int]:
    """Records to publish and how many there are.

    The iterator is a :class:`producers.scoring.RecordStream`: after publishing, its ``report``
    (scoring report, when a model scored) and, with ``labels="separate"``, its
    ``outcome_records()`` are what the producer reports and publishes on the outcomes topic.
    ``version`` is the published version of a file's or scenario's records (``None``: ``"1"``) and
    the registered version that scores (``None``: the latest).
    """
    from producers.scoring import RecordStream, has_registered_model, scored_records

    if dataset:
        from datasets import load

        name = scored_with or model
        if not name:
            raise MonitorError("--model is required with --dataset: the registered model that scores it")
        frame, _card = load(dataset)
        stream = scored_records(frame, name, version, labels=labels, source=dataset)
        return stream, len(stream)
    if synthetic:
        from dataclasses import replace

        from producers.synthetic import SCENARIOS, generate, monthly_counts

        if synthetic not in SCENARIOS:
            raise MonitorError(f"unknown scenario {synthetic!r}; choose one of {', '.join(SCENARIOS)}")
        scenario = SCENARIOS[synthetic]
        if model:
            scenario = replace(scenario, model=model, model_version=version or "1")
        total = sum(monthly_counts(scenario).values())
        return RecordStream(generate(scenario), total, labels=labels), total
    if path is None:
        raise MonitorError("give a file, a synthetic scenario or a dataset")
    if not (model or scored_with):
        raise MonitorError("--model is required with --file")
    from producers.files import read_frame, records_from_frame

    frame = read_frame(path)
    if scored_with is None and score_column not in frame.columns:
        if model is None or not has_registered_model(model):  # model is given without scored_with
            from producers.scoring import registry_root

            raise MonitorError(f"{path}: no score column {score_column!r} and no registered model {model!r} in "
                               f"{registry_root()} to score it (train one with `monitor models train`, "
                               f"or name the score column with --score-column)")
        scored_with = model
    if scored_with:
        frame = frame.drop(columns=[score_column], errors="ignore")
        stream = scored_records(frame, scored_with, version, labels=labels, source=Path(path).stem)
        return stream, len(stream)
    if model is None:  # checked above: a file needs a model when no scored_with
        raise MonitorError("--model is required with --file")
    records = records_from_frame(frame, model, version or "1", score_column, source=Path(path).stem)
    return RecordStream(records, len(frame), labels=labels), len(frame)
