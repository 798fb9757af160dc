"""`monitor demo`: the whole product, live, on the local broker and Redis.

Each run uses its own topics, consumer group and key prefix (``demo-<id>``), so it never mixes
with earlier runs or with a deployment on the same servers.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from rich.console import Console

from monitor.cli.views import alert_line, print_state
from monitor.errors import MonitorError
from monitor.ops import infra
from monitor.ops.processes import (
    start_worker,
    stop_process,
    wait_until_caught_up,
)
from monitor.settings import Settings
from monitor.state import Store
from monitor.state.reads import collect_state


def demo_settings(settings: Settings, run_id: str) -> Settings:
    """The settings of one demo run: its own topics, consumer groups and key prefix ``demo-<run_id>``.

    >>> demo_settings(Settings(), "ab12").records_topic
    'demo-ab12-records'
    """
    name = f"demo-{run_id}"
    return settings.model_copy(update={
        "records_topic": f"{name}-records", "outcomes_topic": f"{name}-outcomes",
        "alerts_topic": f"{name}-alerts", "dead_letter_topic": f"{name}-dead-letter",
        "notify_dead_letter_topic": f"{name}-notify-dead-letter",
        "consumer_group": name, "notify_group": f"{name}-notify", "key_prefix": name})


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
    from monitor.alerts.follow import follow_alerts
    from monitor.ops.reference import save_reference
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
