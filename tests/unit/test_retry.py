"""The retry policy: transient failures wait, others are retried a few times, then the worker stops."""

from __future__ import annotations

import aiokafka.errors
import pytest
import redis.exceptions

from monitor import retry
from monitor.errors import StateLost


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch):
    async def instant(_seconds):
        return None

    monkeypatch.setattr(retry.asyncio, "sleep", instant)


@pytest.mark.parametrize("exc, transient", [
    (redis.exceptions.ConnectionError("gone"), True),
    (redis.exceptions.ResponseError("BUSY Redis is busy running a script."), True),
    (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), True),
    (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), True),
    (redis.exceptions.ResponseError("MASTERDOWN Link with MASTER is down"), True),
    # A Redis Cluster between a master's failure and its replica's promotion (issue 18):
    (redis.exceptions.SlotNotCoveredError('Slot "3174" is not covered by the cluster.'), True),
    (redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"), True),
    # no node of the cluster answers while its slot map is read again (redis-py raises the base class)
    (redis.exceptions.RedisClusterException("Redis Cluster cannot be connected. Please provide at least one "
                                            "reachable node: Error 111 connecting to 127.0.0.1:7000."), True),
    (redis.exceptions.RedisClusterException("No way to dispatch this command to Redis Cluster."), False),
    (redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), False),
    (redis.exceptions.NoPermissionError("this user has no permissions to run the 'evalsha' command"), False),
    (aiokafka.errors.KafkaConnectionError(), True),
    (aiokafka.errors.KafkaTimeoutError(), True),
    (aiokafka.errors.MessageSizeTooLargeError(), False),
    (ValueError("a bug"), False),
])
def test_transient_or_not(exc, transient):
    assert retry.is_transient(exc) is transient


class Flaky:
    """Fails with each of ``errors`` in turn, then returns ``"done"``."""

    def __init__(self, *errors: BaseException):
        self.errors, self.calls = list(errors), 0

    async def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class GaveUp(Exception):
    pass


def give_up(what, exc):
    raise GaveUp(what, exc)


async def test_transient_failures_are_waited_out_however_many():
    call = Flaky(*[redis.exceptions.ResponseError("BUSY busy")] * 50)
    assert await retry.apply_or_stop("batch", call, attempts=2, give_up=give_up) == "done"
    assert call.calls == 51


async def test_other_failures_are_retried_then_the_worker_gives_up_instead_of_moving_on():
    call = Flaky(*[ValueError("bug")] * 3)
    with pytest.raises(GaveUp):
        await retry.apply_or_stop("batch", call, attempts=3, give_up=give_up)
    assert call.calls == 3
    recovers = Flaky(ValueError("once"))
    assert await retry.apply_or_stop("batch", recovers, attempts=3, give_up=give_up) == "done"


async def test_exceptions_the_caller_handles_pass_through_at_once():
    call = Flaky(StateLost("gone", rebuild=True))
    with pytest.raises(StateLost):
        await retry.apply_or_stop("batch", call, attempts=5, passes=(StateLost,), give_up=give_up)
    assert call.calls == 1


def test_a_write_on_a_connection_closed_under_it_is_transient():
    """redis-py leaks the transport's AttributeError when a command is written on a connection another
    command's failure closed (redis/redis-py#4287): the worker must wait and retry, not stop."""
    from monitor.retry import is_transient

    namespace: dict = {}
    exec(compile("def send_packed_command():\n    writer = None\n    writer.writelines([b'PING'])\n",
                 "/site-packages/redis/asyncio/connection.py", "exec"), namespace)
    try:
        namespace["send_packed_command"]()
    except AttributeError as exc:
        assert is_transient(exc)
    try:
        None.writelines([])  # the same error in our own code is a bug, not a blip
    except AttributeError as exc:
        assert not is_transient(exc)
