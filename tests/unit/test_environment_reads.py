"""The environment is read in one place: monitor/settings.py (Settings). Everything else takes its settings."""

from __future__ import annotations

import re
from pathlib import Path

from monitor.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
READS = re.compile(r"os\.environ\.get|os\.environ\[|os\.getenv|getenv\(")


def test_no_module_reads_the_environment_but_settings():
    readers = [str(path.relative_to(ROOT)) for package in ("monitor", "producers", "models", "datasets")
               for path in (ROOT / package).rglob("*.py")
               if path.name != "settings.py" and READS.search(path.read_text())]
    assert readers == []


def test_the_registry_directory_comes_from_the_settings(monkeypatch, tmp_path):
    from models.registry import models_dir
    monkeypatch.setenv("MONITOR_MODELS_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert models_dir() == tmp_path == get_settings().models_dir
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
