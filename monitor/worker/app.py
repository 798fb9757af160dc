"""Builds the faust app and nothing else; the agents live in monitor.worker.agents."""

from __future__ import annotations

from monitor.security import faust_credentials
from monitor.settings import Settings
from monitor.worker.transport import MonitorApp


def create_app(settings: Settings) -> MonitorApp:
    """The worker's app. Its consumer group is ``<consumer_group>.<state epoch>``: a Redis that
    lost the state gets a new epoch, so the group starts from the earliest offsets and rebuilds it."""
    from monitor.state import state_epoch

    epoch = state_epoch(settings)
    session = settings.broker_session_timeout_s
    app = MonitorApp(
        f"{settings.consumer_group}.{epoch}",
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        store="memory://",  # state lives in Redis, not in faust tables
        datadir=str(settings.run_dir / "faust"),
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,  # topics are created by `monitor infra up` / the deployment
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=max(session / 3, 0.3),
        broker_rebalance_timeout=session,
        stream_wait_empty=False,
        producer_acks=-1,
        # Large fetches: a batched message holds hundreds of records, and fewer, bigger fetches
        # cost the consumer thread (which shares the GIL with the agent) less.
        consumer_max_fetch_size=8 * 1024 * 1024,
        broker_credentials=faust_credentials(settings),
        fetch_wait_ms=settings.consumer_fetch_wait_ms,
    )
    from monitor.worker import agents

    agents.register(app, settings, epoch)
    return app
