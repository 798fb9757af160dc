"""`monitor demo`: the whole product, live, on the local broker and Redis.

Each run uses its own topics, consumer group and key prefix (``demo-<id>``), so it never mixes
with earlier runs or with a deployment on the same servers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import orjson
from pydantic import SecretStr
from rich.console import Console

from monitor import infra
from monitor.errors import MonitorError
from monitor.settings import Settings
from monitor.state import Store
from monitor.state.reads import collect_state
from monitor.views import alert_line, print_state

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
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "monitor", "worker", "--loglevel", loglevel],
                            env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
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


async def _delete_keys(store: Store) -> None:
    await store.wipe()


def run_demo(settings: Settings, console: Console, scenario: str = "demo", keep: bool = False,
             timeout_s: float = 180.0) -> bool:
    from producers.synthetic import SCENARIOS, generate, monthly_counts, reference_frame

    if scenario not in SCENARIOS:
        raise MonitorError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    spec = SCENARIOS[scenario]
    run_id = uuid.uuid4().hex[:8]
    settings = demo_settings(settings, run_id)
    console.rule(f"credit-monitor demo {run_id}: scenario {scenario!r}")

    already = {svc.name for svc in infra.services(settings) if svc.pid() is not None}
    for line in infra.up(settings):
        console.print(f"[dim]{line}[/]")
    started_here = {svc.name for svc in infra.services(settings)} - already
    worker = start_worker(settings, settings.run_dir / f"demo-{run_id}-worker.log")
    console.print(f"[dim]worker: started (pid {worker.pid}), log {settings.run_dir}/demo-{run_id}-worker.log[/]")
    try:
        ok = asyncio.run(_demo_flow(settings, console, spec, generate, monthly_counts, reference_frame,
                                    worker, timeout_s, keep))
    finally:
        if not keep:
            stop_process(worker)
            for svc in reversed(infra.services(settings)):
                if svc.name in started_here:
                    console.print(f"[dim]{svc.name}: {svc.stop()}[/]")
        else:
            console.print(f"[dim]--keep: worker pid {worker.pid} and the servers keep running; "
                          f"`monitor infra down` stops the servers. Settings of this run: "
                          f"MONITOR_KEY_PREFIX={settings.key_prefix} MONITOR_ALERTS_TOPIC={settings.alerts_topic}[/]")
    return ok


async def _demo_flow(settings, console, spec, generate, monthly_counts, reference_frame, worker, timeout_s, keep) -> bool:
    from monitor.follow import follow_alerts
    from monitor.reference import save_reference
    from producers.publish import publish

    ref = reference_frame(spec)
    card = await save_reference(settings, spec.model, spec.model_version, ref["score"].to_numpy(),
                                ref["TARGET"].to_numpy(), source=f"synthetic reference of {spec.name!r}",
                                features=ref.drop(columns=["score", "TARGET"]))
    console.print(f"reference: {card['n']} test-set scores of {spec.model}:{spec.model_version}, "
                  f"AUC {card.get('auc', float('nan')):.3f}")

    alerts_seen: list[dict] = []

    def on_alert(event: dict) -> None:
        alerts_seen.append(event)
        console.print(alert_line(event))

    follower = asyncio.create_task(follow_alerts(settings, on_alert, from_beginning=True))
    expected = monthly_counts(spec)
    total = sum(expected.values())
    console.print(f"publishing {total} records over {len(expected)} months to {settings.records_topic} ...")
    started = time.monotonic()
    sent = await publish(generate(spec), settings, rate=spec.monthly_volume * 1.5)
    console.print(f"published {sent} records in {time.monotonic() - started:.1f} s; waiting for the worker")

    store = Store.connect(settings)
    try:
        caught_up = await wait_until_caught_up(store, expected, spec.model, spec.model_version, timeout_s, worker)
        await asyncio.sleep(2 * settings.metrics_interval_s + 1)  # the last alert transitions reach the topic
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        rows = await collect_state(store)
        print_state(rows, console)
        counted = {r["month"]: r["counts"]["n"] for r in rows}
        counts_match = counted == expected
        console.print(f"published {total}, counted {sum(counted.values())}: "
                      + ("[green]counts match per month[/]" if counts_match else f"[red]MISMATCH {counted} != {expected}[/]"))
        firing = [a for a in alerts_seen if a["status"] == "firing"]
        console.print(f"alert events received: {len(alerts_seen)} ({len(firing)} firing)")
        if not caught_up:
            console.print(f"[red]the worker did not catch up within {timeout_s:.0f} s[/]")
        if not keep:
            await _delete_keys(store)
        return caught_up and counts_match and bool(firing)
    finally:
        await store.close()
