"""Read alerts: subscribe to the alerts topic, or read the history and firing states in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import orjson

from monitor.connect import kafka_consumer
from monitor.settings import Settings
from monitor.state import Store


async def follow_alerts(settings: Settings, on_event: Callable[[dict], None], *, from_beginning: bool = False,
                        stop_after: int | None = None) -> None:
    """Print alert events as they arrive (a throwaway consumer group: every follower sees all)."""
    consumer = kafka_consumer(
        settings, settings.alerts_topic,
        group_id=f"monitor-alerts-follow-{uuid.uuid4().hex[:8]}", enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
        heartbeat_interval_ms=max(int(settings.broker_session_timeout_s * 1000 / 3), 300))
    await consumer.start()
    seen = 0
    try:
        async for msg in consumer:
            on_event(orjson.loads(msg.value))
            seen += 1
            if stop_after is not None and seen >= stop_after:
                return
    finally:
        await consumer.stop()


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
