"""Child worker processes, for `monitor demo`, the fault runs, the benches and the tests: every setting
in their environment, start, stop, and waiting until the state in Redis caught up with what was sent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import orjson
from pydantic import SecretStr

from monitor.errors import MonitorError
from monitor.settings import Settings
from monitor.state import Store


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that gives a child process the same settings: every field, so that none is lost.

    >>> env = settings_env(Settings(key_prefix="t1", redis_password="s3cret", apply_attempts=2))
    >>> env["MONITOR_KEY_PREFIX"], env["MONITOR_REDIS_PASSWORD"], env["MONITOR_APPLY_ATTEMPTS"]
    ('t1', 's3cret', '2')
    """
    env = dict(os.environ)
    for name in Settings.model_fields:
        value = getattr(settings, name)
        key = f"MONITOR_{name.upper()}"
        if value is None:
            env.pop(key, None)
        elif isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif isinstance(value, bool):
            env[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple, set, dict)):
            env[key] = orjson.dumps(sorted(value) if isinstance(value, set) else value).decode()
        else:
            env[key] = str(value)
    return env


def start_worker(settings: Settings, log_path, loglevel: str = "warning") -> subprocess.Popen:
    """``monitor worker`` in a child process with ``settings`` (its own session), logging to ``log_path``."""
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "monitor", "worker", "--loglevel", loglevel],  # noqa: S603 - fixed argv
                            env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``; waits for the end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_until_caught_up(store: Store, expected_by_month: dict[str, int], model: str, version: str,
                               timeout_s: float, worker: subprocess.Popen | None = None) -> bool:
    """True once Redis counts equal the expected counts and every month's metrics cover them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker is not None and worker.poll() is not None:
            raise MonitorError(f"the worker exited with code {worker.returncode}")
        metrics = await store.metrics(model, version)
        counts = {m: (await store.counts(model, version, m))["n"] for m in expected_by_month}
        computed = {m: (metrics.get(m, {}).get("windows") or {}).get("month", {}).get("n") for m in expected_by_month}
        if counts == expected_by_month and computed == expected_by_month:
            return True
        await asyncio.sleep(0.25)
    return False
