"""Read credit files (CSV, CSV.gz, JSON list) into records of the monitor's contract.

A file has a reference date (``REF_DATE`` or ``ref_date``), a score column, optionally a
``TARGET``/``target`` and a ``record_id``; every other column becomes a feature.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.errors import MonitorError

DATE_COLUMNS = ("REF_DATE", "ref_date")
TARGET_COLUMNS = ("TARGET", "target")


def read_frame(path: str | Path) -> pd.DataFrame:
    """Load a CSV, CSV.gz or JSON-list file into a DataFrame.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "x.csv")
    >>> _ = open(p, "w").write("REF_DATE,score,TARGET\\n2024-01-03,0.2,0\\n")
    >>> read_frame(p).shape
    (1, 3)
    """
    path = Path(path)
    if not path.exists():
        raise MonitorError(f"file not found: {path}")
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path)
    if name.endswith((".json", ".json.gz")):
        frame = pd.read_json(path, orient="records", dtype=False)  # no conversion at all: dates stay text
        if not isinstance(frame, pd.DataFrame):
            raise MonitorError(f"{path}: expected a JSON list of records")
        return frame
    raise MonitorError(f"{path}: unsupported file type (use .csv, .csv.gz or .json)")


def _pick(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in frame.columns), None)


def scores_of(frame: pd.DataFrame, score_column: str, source: str = "file") -> np.ndarray:
    if score_column not in frame.columns:
        raise MonitorError(f"{source}: no score column {score_column!r} (columns: {', '.join(map(str, frame.columns))})")
    scores = pd.to_numeric(frame[score_column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        raise MonitorError(f"{source}: {int(bad.sum())} scores are missing or outside [0, 1] "
                           f"(first at row {int(np.argmax(bad))})")
    return scores


def records_from_frame(frame: pd.DataFrame, model: str, version: str = "1", score_column: str = "score",
                       source: str = "file") -> Iterator[dict]:
    """Yield record dicts for the records topic (validated later by the worker).

    >>> f = pd.DataFrame({"REF_DATE": ["2024-01-03"], "score": [0.25], "TARGET": [1], "income": [10.0]})
    >>> next(records_from_frame(f, "default", source="demo"))
    {'record_id': 'demo-0', 'model': 'default', 'model_version': '1', 'ref_date': '2024-01-03', 'score': 0.25, 'target': 1, 'features': {'income': 10.0}}
    """
    date_col = _pick(frame, DATE_COLUMNS)
    if date_col is None:
        raise MonitorError(f"{source}: no REF_DATE column")
    target_col = _pick(frame, TARGET_COLUMNS)
    scores = scores_of(frame, score_column, source)
    dates = pd.to_datetime(frame[date_col], errors="coerce")
    if dates.isna().any():
        raise MonitorError(f"{source}: {int(dates.isna().sum())} unreadable REF_DATE values")
    days = dates.dt.strftime("%Y-%m-%d").tolist()
    targets = frame[target_col].tolist() if target_col else [None] * len(frame)
    ids = frame["record_id"].astype(str).tolist() if "record_id" in frame.columns else None
    skip = {date_col, score_column, "record_id", *(c for c in [target_col] if c)}
    feature_cols = [c for c in frame.columns if c not in skip]
    features = frame[feature_cols].astype(object).where(frame[feature_cols].notna(), None).to_dict("records")
    for i in range(len(frame)):
        target = targets[i]
        if target is not None and not (isinstance(target, float) and np.isnan(target)):
            target = int(target)
        else:
            target = None
        yield {"record_id": ids[i] if ids else f"{source}-{i}", "model": model, "model_version": version,
               "ref_date": days[i], "score": float(scores[i]), "target": target,
               "features": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in features[i].items()}}
