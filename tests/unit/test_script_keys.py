"""Redis Cluster contract of the Lua scripts (issue 18).

A cluster client routes a script call by its declared keys only, and Redis rejects a script that
touches keys of two slots only when the script has a shebang (``#!lua``; a flag-less EVAL may touch
any key its node holds). So every script starts with ``#!lua`` and every key it touches is a declared
key, ``KEYS[...]`` (no script builds a key name, from ARGV or from a declared key): read here from the
scripts' text; tests/integration/test_declared_keys.py checks it on a real Redis by what the scripts
ran. Also: how 1,000 models spread over the 16384 slots and 3 masters.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from redis.crc import key_slot

from monitor.state.keys import Keys
from monitor.state.scripts import SCRIPTS, source

KEYLESS = {"TIME"}
# A call's key arguments: the first one, or all for DEL / EXISTS.
CALL = re.compile(r"redis\.call\(\s*'([A-Z]+)'\s*,?\s*([^)]*)\)")


def split_args(args: str) -> list[str]:
    """Top-level comma-separated arguments of a Lua call's argument text.

    >>> split_args("KEYS[1], base .. ':count:' .. m, f(a, b)")
    ['KEYS[1]', "base .. ':count:' .. m", 'f(a, b)']
    """
    out, depth, current = [], 0, ""
    for ch in args:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        out.append(current.strip())
    return out


def key_arguments(command: str, args: str) -> list[str]:
    parts = split_args(args)
    if command in KEYLESS or not parts:
        return []
    return parts if command in {"DEL", "EXISTS", "UNLINK"} else parts[:1]


def assignments(text: str, name: str) -> list[str]:
    """What the script assigns to local ``name`` (``local name = ...`` / ``name = ...``)."""
    found = re.finditer(rf"(?:local\s+)?\b{re.escape(name)}\s*=\s*([^\n]+)", text)
    return [m.group(1).split("--")[0].strip() for m in found]


def declared(expr: str, text: str, seen: frozenset = frozenset()) -> bool:
    """Is this key expression a declared key (``KEYS[...]``, or a local that holds one)?"""
    expr = expr.strip()
    if "ARGV" in expr:
        return False
    if re.fullmatch(r"KEYS\[[^\]]+\]", expr):
        return True
    if re.fullmatch(r"[a-z_]+", expr) and expr not in seen:
        values = assignments(text, expr)
        params = re.findall(rf"function \w+\(([^)]*\b{expr}\b[^)]*)\)", text)
        if params:  # a helper's parameter: checked at its call sites by the caller's own calls
            return True
        return bool(values) and all(declared(v.split(" or ")[0].split(",")[0], text, seen | {expr}) for v in values)
    return False


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_has_a_shebang_so_redis_refuses_cross_slot_keys(name):
    assert source(name).startswith("#!lua"), f"{name}: without #!lua Redis lets a script touch any slot of its node"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_key_a_script_touches_is_declared(name):
    text = source(name)
    calls = CALL.findall(text)
    undeclared = [(command, expr) for command, args in calls for expr in key_arguments(command, args)
                  if not declared(expr, text)]
    assert not undeclared, f"{name} touches keys not in KEYS: {undeclared}"


def test_helper_calls_pass_declared_keys():
    """add_bins(hist, ...) and pending_periods(key, ...) are called with declared keys only."""
    for name in SCRIPTS:
        text = source(name)
        for helper in ("add_bins", "pending_periods"):
            for args in re.findall(rf"(?<!function ){helper}\(([^\n]*)\)", text):
                assert declared(split_args(args)[0], text), f"{name}: {helper}({args})"


def test_one_thousand_models_spread_over_slots_and_masters():
    """Every key of a model shares its slot; 1,000 models spread over the slots and 3 masters."""
    keys = Keys("cm")
    slots = [key_slot(keys.count(f"model-{i}", "1", "2024-01").encode()) for i in range(1000)]
    for i in range(0, 1000, 97):
        model = f"model-{i}"
        same = {key_slot(k.encode()) for k in (keys.of(model, "1", "offsets"), keys.hist(model, "1", "2024-02", "bad"),
                                               keys.features(model, "1", "2024-03"), keys.of(model, "1", "alerts"))}
        assert same == {slots[i]}
    # redis-cli --cluster create splits the slots into 3 equal ranges: 0-5460, 5461-10922, 10923-16383.
    per_master = Counter(min(slot * 3 // 16384, 2) for slot in slots)
    distinct = len(set(slots))
    print(f"\n1,000 models: {distinct} distinct slots of 16384; per master {[per_master[m] for m in range(3)]}")
    assert distinct > 950
    assert all(280 <= per_master[m] <= 390 for m in range(3)), per_master
