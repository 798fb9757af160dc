"""Where `monitor produce` takes its records from: a file or a synthetic scenario."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from monitor.errors import MonitorError


def open_source(*, path: Path | None = None, synthetic: str | None = None, model: str | None = None,
                version: str = "1", score_column: str = "score") -> tuple[Iterator[dict], int]:
    """Records to publish and how many there are."""
    if synthetic:
        from dataclasses import replace

        from producers.synthetic import SCENARIOS, generate, monthly_counts

        if synthetic not in SCENARIOS:
            raise MonitorError(f"unknown scenario {synthetic!r}; choose one of {', '.join(SCENARIOS)}")
        scenario = SCENARIOS[synthetic]
        if model:
            scenario = replace(scenario, model=model, model_version=version)
        return generate(scenario), sum(monthly_counts(scenario).values())
    if not model:
        raise MonitorError("--model is required with --file")
    from producers.files import read_frame, records_from_frame

    frame = read_frame(path)
    return records_from_frame(frame, model, version, score_column, source=Path(path).stem), len(frame)
