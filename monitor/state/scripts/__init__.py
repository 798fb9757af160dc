"""The Lua scripts of the state layer, one ``.lua`` file each, read once and registered once per client.

``apply_batch`` and ``apply_outcomes`` share two preludes: ``add_bins.lua`` and ``join.lua`` (the
latter after a generated line with the join buffer's constants, so that Lua and Python agree).

>>> sorted(SCRIPTS) == sorted(p.stem for p in HERE.glob("*.lua") if p.stem not in PRELUDES)
True
>>> "local JOIN_PERIOD, MONTH_ORIGIN = 2592000, 24000" in source("apply_outcomes")
True
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PRELUDES = ("add_bins", "join")
SCRIPTS = {  # script -> the preludes it starts with
    "apply_batch": PRELUDES,
    "apply_outcomes": PRELUDES,
    "adopt_epoch": (),
    "reset_source": (),
    "lease": (),
    "transition": (),
    "busy": (),
}


def _join_constants() -> str:
    from monitor.state.keys import JOIN_PERIOD_S, MONTH_ORIGIN

    return f"local JOIN_PERIOD, MONTH_ORIGIN = {JOIN_PERIOD_S}, {MONTH_ORIGIN}\n"


@cache
def source(name: str) -> str:
    """The full text of script ``name`` (preludes included), read from its file once."""
    parts = []
    for prelude in SCRIPTS[name]:
        if prelude == "join":
            parts.append(_join_constants())
        parts.append((HERE / f"{prelude}.lua").read_text())
    parts.append((HERE / f"{name}.lua").read_text())
    return "".join(parts)


class Scripts:
    """Every script registered on one client (redis-py's Script: EVALSHA, loading it on NOSCRIPT)."""

    def __init__(self, client: Any):
        for name in SCRIPTS:
            setattr(self, name, client.register_script(source(name)))

    apply_batch: Any
    apply_outcomes: Any
    adopt_epoch: Any
    reset_source: Any
    lease: Any
    transition: Any
    busy: Any
