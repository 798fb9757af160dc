"""Read alerts: subscribe to the alerts topic, or read the history and firing states in Redis."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import orjson
from aiokafka.errors import KafkaError

from monitor.connect import kafka_consumer
from monitor.settings import Settings
from monitor.state import Store

T = TypeVar("T")
STOP_TIMEOUT_S = 5.0  # how long `monitor alerts --follow` waits to leave its group when stopped


async def follow_alerts(settings: Settings, on_event: Callable[[dict], None], *, from_beginning: bool = False,
                        stop_after: int | None = None, stop: asyncio.Event | None = None) -> None:
    """Print alert events as they arrive (a throwaway consumer group: every follower sees all), until
    ``stop`` is set: by SIGINT (Ctrl-C) or SIGTERM when this runs the process's loop. The signals set the
    event instead of cancelling the task, because a cancellation that arrives while the consumer starts
    or joins its group can be swallowed there, and the follower then runs on (seen once in CI)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals here
            pass
    consumer = kafka_consumer(
        settings, settings.alerts_topic,
        group_id=f"monitor-alerts-follow-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
        heartbeat_interval_ms=max(int(settings.broker_session_timeout_s * 1000 / 3), 300))
    stopped = asyncio.create_task(stop.wait())
    seen = 0
    try:
        if not await _unless_stopped(consumer.start(), stopped):
            return
        while True:
            got = await _unless_stopped(consumer.getone(), stopped)
            if not got:
                return
            on_event(orjson.loads(got[0].value))
            seen += 1
            if stop_after is not None and seen >= stop_after:
                return
    finally:
        stopped.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
        # A throwaway group with nothing committed: leaving it cleanly is a courtesy, not a duty. A stop
        # must not wait on it long (a group join under way holds it for seconds).
        try:
            await asyncio.wait_for(consumer.stop(), STOP_TIMEOUT_S)
        except (asyncio.TimeoutError, KafkaError):
            pass


async def _unless_stopped(work: Awaitable[T], stopped: asyncio.Task) -> tuple[T] | None:
    """``(result,)`` of ``work``, or None (``work`` cancelled) if ``stopped`` finishes first."""
    task = asyncio.ensure_future(work)
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return (task.result(),)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return None


async def alert_history(settings: Settings, limit: int = 50) -> list[dict]:
    store = Store.connect(settings)
    try:
        return await store.alert_history(limit)
    finally:
        await store.close()


async def firing_now(settings: Settings) -> list[dict]:
    """The latest firing event of every alert whose state is firing."""
    store = Store.connect(settings)
    try:
        firing_events = set()
        for model, version in await store.models():
            for state in (await store.alert_states(model, version)).values():
                if state["status"] == "firing":
                    firing_events.add(state["event_id"])
        events = await store.alert_history()
        return sorted((e for e in events if e["event_id"] in firing_events), key=lambda e: e["alert_id"])
    finally:
        await store.close()
