"""Rooms keep to themselves: each folder imports only the layers below it (docs/architecture.md).

An AST scan of every import (lazy ones inside functions too) of monitor/, producers/, models/ and
datasets/. The layers, bottom up:

- ``core``: the top-level modules of monitor/ (settings, errors, schema, months, ...): the vocabulary
  every other room shares; they import one another only.
- ``stats`` (pure), ``state`` (the only door to Redis), ``alerts`` (rules, lifecycle, paging),
  ``worker`` (the faust app and its pipeline), each importing only what is below it.
- ``datasets``, ``models``, ``producers``: data, the model registry and record producers.
- ``api``, ``cli``, ``ops``, ``bench``: the faces and the tools: they may import anything.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("monitor", "producers", "models", "datasets")
CORE = frozenset({"settings", "errors", "schema", "months", "paths", "bounds", "connect", "security", "retry"})
PACKAGES = frozenset({"stats", "state", "alerts", "worker", "api", "cli", "ops", "bench"})

MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "stats": frozenset({"core", "stats"}),
    "state": frozenset({"core", "stats", "state"}),
    "alerts": frozenset({"core", "stats", "state", "alerts"}),
    "worker": frozenset({"core", "stats", "state", "alerts", "worker"}),
    "datasets": frozenset({"core", "datasets"}),
    # models/train.py builds the reference card the way `monitor reference load` does (ops.reference);
    # models/mlflow_sync.py closes months with the alert rules' grace (alerts)
    "models": frozenset({"core", "stats", "state", "alerts", "datasets", "models", "ops"}),
    "producers": frozenset({"core", "datasets", "models", "producers"}),
}
"""What each layer may import; a layer not listed (api, cli, ops, bench) may import anything."""

EXCEPTIONS: dict[tuple[str, str], str] = {
    ("monitor/state/layout_bench.py", "bench"):
        "the raw-layout micro-benchmark writes keys (so it lives in state/) on a throwaway redis-server",
}
"""(module, layer) imports that break the rule, each with why: may only shrink."""


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name, None when it is not ours.

    >>> layer_of("monitor.worker.engine"), layer_of("monitor.months"), layer_of("models.registry")
    ('worker', 'core', 'models')
    >>> layer_of("redis.asyncio") is None, layer_of("monitor") is None
    (True, True)
    """
    parts = module.split(".")
    if parts[0] in {"producers", "models", "datasets"}:
        return parts[0]
    if parts[0] != "monitor" or len(parts) == 1 or parts[1] in {"__main__", "__init__"}:
        return None
    return "core" if parts[1] in CORE else parts[1]


def imported_modules(path: Path) -> set[str]:
    """Every first-party module a file imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "monitor":  # from monitor import months, retry
                out.update(f"monitor.{alias.name}" for alias in node.names)
            else:
                out.add(node.module)
    return out


def _sources() -> list[Path]:
    return sorted(p for top in SCANNED for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_a_module_imports_only_the_layers_below_it(path):
    rel = path.relative_to(ROOT).as_posix()
    own = layer_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
    if own not in MAY_IMPORT:
        return  # the faces and tools (api, cli, ops, bench) may import anything
    wrong = sorted(f"{module} ({layer})" for module in imported_modules(path)
                   if (layer := layer_of(module)) is not None and layer not in MAY_IMPORT[own]
                   and (rel, layer) not in EXCEPTIONS)
    assert not wrong, f"{rel} ({own}) may import {sorted(MAY_IMPORT[own])}, not: {wrong}"


def test_the_top_of_monitor_holds_only_the_core_and_the_role_packages():
    modules = {p.stem for p in (ROOT / "monitor").glob("*.py")} - {"__init__", "__main__"}
    packages = {p.parent.name for p in (ROOT / "monitor").glob("*/__init__.py")}
    assert modules == CORE, "a new top-level module belongs in a role package (or in CORE, said in the docs)"
    assert packages == PACKAGES


def test_the_exceptions_are_still_needed():
    for (rel, layer), why in EXCEPTIONS.items():
        assert why
        assert any(layer_of(m) == layer for m in imported_modules(ROOT / rel)), f"{rel} no longer imports {layer}"


def test_the_architecture_doc_draws_every_package_in_its_tree():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for package in sorted(PACKAGES):
        assert re.search(rf"[├└]── {package}/ ", doc), f"monitor/{package}/ is not in the tree of docs/architecture.md"


DEMO_IMPORT = re.compile(r"^\s*from monitor\.ops(\.demo import| import .*\bdemo\b)|^\s*import monitor\.ops\.demo",
                         re.MULTILINE)


def test_only_the_cli_imports_the_demo_command():
    users = sorted(p.relative_to(ROOT).as_posix() for folder in ("monitor", "tests", "producers", "models", "datasets")
                   for p in (ROOT / folder).rglob("*.py")
                   if DEMO_IMPORT.search(p.read_text()))
    assert users == ["monitor/cli/main.py", "tests/unit/test_boundaries.py", "tests/unit/test_demo.py"]


def test_the_process_helpers_live_in_one_module():
    from monitor.ops import demo, processes
    for name in ("settings_env", "start_worker", "stop_process", "wait_until_caught_up"):
        assert callable(getattr(processes, name))
    assert not hasattr(demo, "settings_env")  # no second way in
