"""monitor.stats is pure computation: no server, no process, no network (the benches that need Redis
live in monitor/bench/)."""

from __future__ import annotations

import re
from pathlib import Path

STATS = Path(__file__).resolve().parents[2] / "monitor" / "stats"
IMPURE = re.compile(r"^\s*(?:import|from)\s+(?:subprocess|socket|redis|monitor\.connect|monitor\.store)\b", re.MULTILINE)


def test_the_stats_package_imports_no_server_or_process_module():
    offenders = [str(p.relative_to(STATS)) for p in STATS.rglob("*.py") if IMPURE.search(p.read_text())]
    assert offenders == []
