"""Cluster URLs in monitor.connect, and a worker's start against a cluster that does not answer yet."""

from __future__ import annotations

import logging

import pytest
import redis.exceptions

from monitor.connect import redis_client
from monitor.settings import Settings
from monitor.state.store import state_epoch


def test_cluster_url_builds_cluster_clients_with_the_settings_credentials():
    s = Settings(redis_url="rediss+cluster://127.0.0.1:1,127.0.0.1:2", redis_username="svc", redis_password="pw",
                 redis_ssl_ca_certs="/etc/ssl/ca.pem")
    client = redis_client(s, asyncio=True, blocking_pool=4, timeout=10)
    kwargs = client.connection_kwargs
    assert type(client).__module__ == "redis.asyncio.cluster"
    assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == ("svc", "pw", "/etc/ssl/ca.pem")
    assert "pw" not in repr(client)


def test_state_epoch_retries_a_cluster_that_does_not_answer(caplog):
    caplog.set_level(logging.WARNING)
    with pytest.raises(redis.exceptions.RedisClusterException):
        state_epoch(Settings(redis_url="redis+cluster://127.0.0.1:1"), attempts=2)
    assert "retrying" in caplog.text
