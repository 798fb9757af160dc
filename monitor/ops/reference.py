"""Load a model's reference (test-set) scores into Redis as a score histogram."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from monitor.settings import Settings
from monitor.state import Store
from monitor.stats import FeatureProfile, ScoreHistogram, roc_auc


def reference_card(scores: np.ndarray, targets: np.ndarray | None, resolution: float, source: str) -> tuple[ScoreHistogram, dict]:
    """The reference histogram and its card (n, resolution, source, AUC when targets are known).

    >>> h, card = reference_card(np.array([0.1, 0.8, 0.3]), np.array([0, 1, 0]), 1e-4, "doc")
    >>> h.n, card["n"], card["auc"]
    (3, 3, 1.0)
    """
    hist = ScoreHistogram.from_scores(scores, resolution)
    card: dict = {"n": hist.n, "resolution": resolution, "source": source,
                  "loaded_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    if targets is not None:
        labelled = ~np.isnan(targets.astype(float))
        y = targets[labelled].astype(int)
        auc = roc_auc(ScoreHistogram.from_scores(scores[labelled][y == 1], resolution),
                      ScoreHistogram.from_scores(scores[labelled][y == 0], resolution))
        if auc is not None:
            card["auc"] = auc
    return hist, card


async def save_reference(settings: Settings, model: str, version: str, scores: np.ndarray,
                         targets: np.ndarray | None = None, source: str = "array",
                         features: pd.DataFrame | None = None) -> dict:
    """Store the reference histogram (and, given the reference's feature columns, their profile)."""
    hist, card = reference_card(np.asarray(scores, dtype=float), targets, settings.resolution, source)
    profile = FeatureProfile.from_frame(features) if features is not None and len(features.columns) else None
    if profile is not None:
        card["features"] = ",".join(profile.features)
    store = Store.connect(settings)
    try:
        await store.save_reference(model, version, hist, card, profile)
    finally:
        await store.close()
    return card


async def load_reference_file(settings: Settings, model: str, version: str, path: Path, score_column: str) -> dict:
    from producers.files import TARGET_COLUMNS, read_frame, scores_of

    frame = read_frame(path)
    scores = scores_of(frame, score_column, str(path))
    target_col = next((c for c in TARGET_COLUMNS if c in frame.columns), None)
    targets = frame[target_col].to_numpy(dtype=float) if target_col else None
    non_features = {score_column, target_col, "REF_DATE", "ref_date", "record_id"}
    features = frame[[c for c in frame.columns if c not in non_features]]
    return await save_reference(settings, model, version, scores, targets, source=str(path), features=features)
