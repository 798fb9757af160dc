"""Nothing outside monitor/state/ talks to Redis or formats a key: the state layer is the only door.

An AST scan of every module of monitor/, producers/, models/ and datasets/ (monitor/state/ and
monitor/connect.py, which builds the clients, excepted) for:

- a call of a Redis command method on any object (``x.hgetall(...)``, ``pipe.sadd(...)``,
  ``client.eval(...)``, ``redis.register_script(...)``);
- an access to a ``.redis`` attribute (a Store's client);
- an import of ``redis`` other than ``redis.exceptions`` (the errors may be caught anywhere);
- a string literal or f-string that spells a key of the schema (``cm:``, ``{prefix}:...``, ``:{{model``).

ALLOWED lists the modules that still do, each with why: it may only shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("monitor", "producers", "models", "datasets")
EXEMPT = ("monitor/state/", "monitor/connect.py")

REDIS_METHODS = frozenset("""  # noqa: SIM905 - a word list reads better
get set mget mset setnx getset incr incrby decr delete unlink exists expire expireat pexpire ttl pttl
hget hset hsetnx hmget hmset hgetall hdel hincrby hkeys hvals hlen hexists
sadd srem smembers sismember smismember scard
lpush rpush lpop rpop lrange ltrim llen
zadd zrem zrange zrangebyscore zcard
eval evalsha register_script script_load pipeline scan_iter keys memory_usage flushdb flushall
bitfield setrange getrange time dbsize info config_resetstat
""".split())
# Names that some non-Redis objects share (dict.get, dict.keys, set/list ops, settings.time...):
# flagged only when called on an object whose name says it is a Redis client or pipeline.
AMBIGUOUS = frozenset({"get", "set", "delete", "keys", "time", "info", "exists", "incr", "expire", "eval", "unlink"})
CLIENT_NAMES = frozenset({"redis", "client", "pipe", "pipeline", "aioredis"})

ALLOWED: dict[str, str] = {}
"""Modules that still reach Redis directly, with the reason; must shrink to nothing."""


def _modules() -> list[Path]:
    out = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not rel.startswith(EXEMPT):
                out.append(path)
    return out


def _receiver_name(node: ast.expr) -> str:
    """The last name of a call's receiver: ``self.store.redis`` -> ``redis``, ``pipe`` -> ``pipe``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _receiver_name(node.func)
    return ""


def _string_spells_key(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.startswith("cm:")
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append("{" + ast.unparse(value.value) + "}")
        text = "".join(parts)
        return any(p in text for p in ("prefix}:", "{base}:", "base(model, version)}:", "cm:{", "}:{{{"))
    return False


def offences(path: Path) -> list[str]:
    """Where ``path`` reaches Redis or spells a key: ``line: what``."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, receiver = node.func.attr, _receiver_name(node.func.value)
            if method in REDIS_METHODS and (method not in AMBIGUOUS or receiver in CLIENT_NAMES) \
                    and receiver not in ("np", "numpy", "os", "math", "asyncio", "re", "json", "orjson", "time"):
                found.append(f"{node.lineno}: {receiver}.{method}()")
        elif isinstance(node, ast.Attribute) and node.attr == "redis" and isinstance(node.ctx, ast.Load):
            if _receiver_name(node.value) not in ("settings", "args", "opts"):  # those hold a URL
                found.append(f"{node.lineno}: .redis")
        elif isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if a.name.split(".")[0] == "redis" and a.name != "redis.exceptions"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "redis" \
                and node.module != "redis.exceptions":
            found.append(f"{node.lineno}: from {node.module} import")
        elif isinstance(node, (ast.Constant, ast.JoinedStr)) and id(node) not in docstrings and _string_spells_key(node):
            found.append(f"{node.lineno}: key string")
    return found


def test_scanner_sees_the_patterns():
    """The scan flags a Redis call, a client attribute, an import and a key spelled in an f-string."""
    sample = ROOT / "tests" / "unit" / "_boundary_sample.py"
    sample.write_text('import redis\nasync def f(store, model, version, prefix):\n'
                      '    await store.redis.hgetall(f"{prefix}:{{{model}:{version}}}:alerts")\n'
                      '    pipe = store.redis.pipeline()\n    return {}.get("x")\n')
    try:
        found = offences(sample)
    finally:
        sample.unlink()
    assert "1: import redis" in found, found
    assert any("hgetall" in f for f in found) and any(".redis" in f for f in found)
    assert any("key string" in f for f in found) and any("pipeline" in f for f in found)
    assert not any(".get(" in f for f in found)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_redis_outside_the_state_layer(path):
    rel = path.relative_to(ROOT).as_posix()
    found = offences(path)
    if rel in ALLOWED:
        assert found, f"{rel} no longer reaches Redis: take it off ALLOWED"
        return
    assert not found, f"{rel} reaches Redis outside monitor/state/ ({len(found)}): " + "; ".join(found)
