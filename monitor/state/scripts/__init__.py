"""The Lua scripts of the state layer, one ``.lua`` file each, read once and registered once per client.

``apply_batch`` and ``apply_outcomes`` share two preludes: ``add_bins.lua`` and ``join.lua`` (the latter after a generated line with the join buffer's constants, so that Lua and
Python agree).

Every script starts with the shebang ``#!lua`` (Redis 7): with it Redis refuses a script that touches
keys of two cluster slots (a flag-less EVAL may touch any key of its node), and every key a script
touches is declared in KEYS (no script builds a key name), so a cluster client, which routes a call
by its KEYS, sends it to the node holding all its keys (``tests/unit/test_script_keys.py``, and on a real
Redis by what it ran: ``tests/integration/test_declared_keys.py``). The join buffer's keys depend on
Redis's clock and stored pending periods: the caller declares them optimistically and the script says,
before any write, when they are not the right ones (:mod:`monitor.state.joins`).

>>> sorted(SCRIPTS) == sorted(p.stem for p in HERE.glob("*.lua") if p.stem not in PRELUDES)
True
>>> all(source(name).startswith("#!lua") for name in SCRIPTS)
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
SHEBANG = "#!lua\n"  # Redis 7 script flags (none): cross-slot access refused, see above
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
    parts = [SHEBANG]
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
