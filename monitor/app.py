"""Builds the faust app and nothing else; the agents live in monitor.agents."""

from __future__ import annotations

import faust

from monitor.settings import Settings


def create_app(settings: Settings) -> faust.App:
    session = settings.broker_session_timeout_s
    app = faust.App(
        settings.consumer_group,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",  # state lives in Redis, not in faust tables
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,  # topics are created by `monitor infra up` / the deployment
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=max(session / 3, 0.3),
        broker_rebalance_timeout=session,
        stream_wait_empty=False,
        producer_acks=-1,
    )
    from monitor import agents

    agents.register(app, settings)
    return app
