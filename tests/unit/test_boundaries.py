"""Rooms keep to themselves: `monitor demo` is a command, not a library for tests, faults and benches."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_IMPORT = re.compile(r"^\s*from monitor\.demo import|^\s*import monitor\.demo", re.MULTILINE)


def test_only_the_cli_imports_the_demo_command():
    users = sorted(str(p.relative_to(ROOT)) for folder in ("monitor", "tests", "producers", "models", "datasets")
                   for p in (ROOT / folder).rglob("*.py")
                   if DEMO_IMPORT.search(p.read_text()))
    assert users == ["monitor/cli.py", "tests/unit/test_demo.py"]


def test_the_process_helpers_live_in_one_module():
    from monitor import demo, processes
    for name in ("settings_env", "start_worker", "stop_process", "wait_until_caught_up"):
        assert callable(getattr(processes, name))
    assert not hasattr(demo, "settings_env")  # no second way in
