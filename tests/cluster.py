"""The session's real Redis Cluster: 3 masters with one replica each, from the same ``redis-server``
binary (``monitor.ops.redis_cluster.LocalCluster``), started on first use and stopped at the end."""

from __future__ import annotations

import pytest

from monitor.ops.redis_cluster import LocalCluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A running 3-master, 3-replica cluster (``.url`` is its ``redis+cluster://`` URL)."""
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"), masters=3, replicas=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
