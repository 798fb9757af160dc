"""The worker's consumer: it waits at most MONITOR_CONSUMER_FETCH_WAIT_MS per fetch (faust hard-codes
1,500) and returns the memory a backlog freed."""

import asyncio

import aiokafka
from aiokafka.structs import TopicPartition

from monitor.worker.app import create_app
from monitor.settings import Settings
from monitor.worker.transport import MonitorApp


def _worker_consumer(app) -> aiokafka.AIOKafkaConsumer:
    async def build():
        async def nothing(*args):
            return None
        consumer = app.transport.create_consumer(callback=nothing, on_partitions_revoked=nothing,
                                                 on_partitions_assigned=nothing)
        thread = consumer._new_consumer_thread()
        return thread._create_worker_consumer(app.transport)
    return asyncio.run(build())


def test_worker_consumer_uses_the_configured_fetch_wait():
    app = MonitorApp("t-fetch-wait", broker="kafka://127.0.0.1:9", store="memory://", web_enabled=False,
                     fetch_wait_ms=37)
    kafka_consumer = _worker_consumer(app)
    assert isinstance(kafka_consumer, aiokafka.AIOKafkaConsumer)
    assert kafka_consumer._fetch_max_wait_ms == 37
    # everything else is faust's: e.g. its group and manual commits
    assert kafka_consumer._group_id == "t-fetch-wait"
    assert kafka_consumer._enable_auto_commit is False


def test_create_app_takes_the_wait_from_the_settings(monkeypatch):
    monkeypatch.setattr("monitor.state.state_epoch", lambda settings: "e0")
    app = create_app(Settings(consumer_fetch_wait_ms=15, kafka_bootstrap="127.0.0.1:9"))
    assert _worker_consumer(app)._fetch_max_wait_ms == 15
    assert app.conf.id.endswith(".e0")


def test_the_worker_returns_freed_memory_unless_told_not_to(monkeypatch):
    """A backlog's buffers are freed once processed; their memory goes back to the OS."""
    monkeypatch.setattr("monitor.state.state_epoch", lambda settings: "e0")

    def tasks(app) -> set[str]:
        return {task.__name__ for task in app._app_tasks}

    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9"))
    assert {"recompute_metrics", "release_memory"} <= tasks(app)
    quiet = create_app(Settings(kafka_bootstrap="127.0.0.1:9", memory_trim_interval_s=0))
    assert "recompute_metrics" in tasks(quiet) and "release_memory" not in tasks(quiet)


T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


class _State:
    def __init__(self, position, highwater=None):
        self.position, self.highwater, self.reset = position, highwater, None

    @property
    def has_valid_position(self):
        return self.position is not None

    @property
    def awaiting_reset(self):
        return self.reset is not None

    def await_reset(self, strategy):
        self.reset, self.position = strategy, None


class _Assignment:
    def __init__(self, states):
        self.states = states
        self.tps = set(states)

    def state_value(self, tp):
        return self.states[tp]


class _Fetcher:
    """Answers a fetch as a broker would: out of range (Apache Kafka) or a log shorter than the position."""

    def __init__(self, answer):
        self.answer = answer

    async def _proc_fetch_request(self, assignment, node_id, request):
        for tp, state in assignment.states.items():
            self.answer(tp, state)
        return False


async def test_a_position_out_of_the_logs_range_makes_faust_forget_the_old_log():
    from monitor.worker.transport import rewind_lost_logs

    def out_of_range(tp, state):  # what aiokafka does on OFFSET_OUT_OF_RANGE with reset "earliest"
        if tp == T0:
            state.await_reset("earliest")

    fetcher, rewound = _Fetcher(out_of_range), []
    rewind_lost_logs(fetcher, rewound.append)
    await fetcher._proc_fetch_request(_Assignment({T0: _State(999), T1: _State(5)}), 0, None)
    assert rewound == [T0]


async def test_a_log_shorter_than_the_position_is_read_again_from_its_start():
    from monitor.worker.transport import rewind_lost_logs

    def shorter(tp, state):  # Tansu after a restart: no records, a high watermark below the position
        state.highwater = 3 if tp == T0 else 10

    fetcher, rewound = _Fetcher(shorter), []
    rewind_lost_logs(fetcher, rewound.append)
    states = {T0: _State(999), T1: _State(5)}
    await fetcher._proc_fetch_request(_Assignment(states), 0, None)
    assert rewound == [T0] and states[T0].awaiting_reset and states[T1].position == 5
