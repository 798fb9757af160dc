"""A local Redis Cluster from the same ``redis-server`` binary: for the tests, ``monitor faults
--scenario failover`` and anyone who wants to try the monitor on a cluster without Docker.

``LocalCluster(run_dir, masters=3, replicas=1).start()`` starts ``masters x (1 + replicas)`` nodes
with ``--cluster-enabled yes`` on free loopback ports (each in its own directory, appendonly on),
joins them with ``redis-cli --cluster create ... --cluster-yes``, waits for ``cluster_state:ok`` on
every node and returns the URL to give ``MONITOR_REDIS_URL``:
``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`` (see :mod:`monitor.connect`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from monitor.errors import InfraError
from monitor.ops.infra import redis_binary

HOST = "127.0.0.1"


def free_cluster_port() -> int:
    """A free port P <= 55535 whose cluster bus port P + 10000 is free too (Redis refuses higher ones)."""
    import random
    import socket

    for _ in range(1000):
        port = random.randint(20_000, 55_535)  # noqa: S311 - a port, not a secret
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((HOST, port))
                b.bind((HOST, port + 10_000))
            return port
        except OSError:
            continue
    raise InfraError("no free port pair for a Redis Cluster node")


def redis_cli_binary() -> str:
    found = shutil.which("redis-cli")
    if not found:
        raise InfraError("redis-cli is missing (it comes with redis-server: apt-get install -y redis-server)")
    return found


def cluster_url(ports: list[int], host: str = HOST) -> str:
    """The ``MONITOR_REDIS_URL`` of a cluster reachable at these nodes.

    >>> cluster_url([7000, 7001])
    'redis+cluster://127.0.0.1:7000,127.0.0.1:7001'
    """
    return "redis+cluster://" + ",".join(f"{host}:{p}" for p in ports)


@dataclass
class LocalCluster:
    """``masters`` masters with ``replicas`` replicas each, on free loopback ports under ``run_dir``."""

    run_dir: Path
    masters: int = 3
    replicas: int = 0
    ports: list[int] = field(default_factory=list)
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return cluster_url(self.ports)

    def cli(self, port: int, *args: str, timeout: float = 30) -> str:
        """``redis-cli -p port args...``: its output (raises on a non-zero exit)."""
        done = subprocess.run([redis_cli_binary(), "-h", HOST, "-p", str(port), *args],  # noqa: S603 - fixed argv
                              capture_output=True, text=True, timeout=timeout, check=True)
        return done.stdout

    def _start_node(self, port: int) -> None:
        node_dir = self.run_dir / f"node-{port}"
        node_dir.mkdir(parents=True, exist_ok=True)
        argv = [redis_binary(), "--bind", HOST, "--port", str(port), "--dir", str(node_dir.resolve()),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000", "--appendonly", "yes", "--save", "", "--daemonize", "no",
                "--logfile", str((node_dir / "redis.log").resolve())]
        self.procs[port] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603

    def start(self, timeout_s: float = 60) -> str:
        """Start the nodes, create the cluster, wait until every node says ``cluster_state:ok``; the URL."""
        self.ports = [free_cluster_port() for _ in range(self.masters * (1 + self.replicas))]
        for port in self.ports:
            self._start_node(port)
        deadline = time.monotonic() + timeout_s
        for port in self.ports:
            self._wait(lambda p=port: self._answers(p), deadline, f"node {port} to answer")
        nodes = [f"{HOST}:{p}" for p in self.ports]
        subprocess.run([redis_cli_binary(), "--cluster", "create", *nodes,  # noqa: S603 - fixed argv
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       capture_output=True, text=True, timeout=timeout_s, check=True)
        self.wait_ok(deadline)
        return self.url

    def wait_ok(self, deadline: float | None = None) -> None:
        """Until every live node reports ``cluster_state:ok`` and the same slots covered."""
        deadline = deadline or time.monotonic() + 60
        for port in self.live_ports():
            self._wait(lambda p=port: "cluster_state:ok" in self.cli(p, "cluster", "info"), deadline,
                       f"node {port} to report cluster_state:ok")

    def live_ports(self) -> list[int]:
        return [p for p in self.ports if self.procs[p].poll() is None]

    def _answers(self, port: int) -> bool:
        try:
            return self.cli(port, "ping", timeout=2).strip() == "PONG"
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            return False

    @staticmethod
    def _wait(predicate, deadline: float, what: str) -> None:
        while True:
            try:
                if predicate():
                    return
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise InfraError(f"the local Redis Cluster: timed out waiting for {what}")
            time.sleep(0.1)

    # ---- roles and failover ---------------------------------------------------------------------
    def roles(self) -> dict[int, str]:
        """Port -> ``master`` / ``slave`` of every live node (``ROLE``)."""
        return {p: self.cli(p, "role").split()[0] for p in self.live_ports()}

    def replica_of(self, master_port: int) -> int:
        """A live replica of the master at ``master_port``."""
        for port in self.live_ports():
            info = self.cli(port, "info", "replication")
            if "role:slave" in info and f"master_port:{master_port}" in info:
                return port
        raise InfraError(f"no replica of the master at {master_port}")

    def failover(self, master_port: int, timeout_s: float = 30) -> int:
        """``CLUSTER FAILOVER`` on a replica of ``master_port`` (a manual, coordinated failover: no
        write acknowledged by the old master is lost); the new master's port once it took over."""
        replica = self.replica_of(master_port)
        self.cli(replica, "cluster", "failover")
        deadline = time.monotonic() + timeout_s
        self._wait(lambda: self.roles().get(replica) == "master", deadline, f"replica {replica} to take over")
        self.wait_ok(deadline)
        return replica

    def kill(self, port: int, timeout_s: float = 60) -> int:
        """SIGKILL the master at ``port``: its replica takes over once the others agree it failed
        (``cluster-node-timeout`` 2 s); the new master's port. Writes the replica had not received
        are lost (replication is asynchronous)."""
        replica = self.replica_of(port)
        self.procs[port].kill()
        self.procs[port].wait()
        deadline = time.monotonic() + timeout_s
        self._wait(lambda: self.roles().get(replica) == "master", deadline, f"replica {replica} to take over")
        self.wait_ok(deadline)
        return replica

    def restart(self, port: int, timeout_s: float = 60) -> None:
        """Start a killed node again from its directory: it rejoins the cluster (as a replica of the
        master that took its slots)."""
        self._start_node(port)
        deadline = time.monotonic() + timeout_s
        self._wait(lambda: self._answers(port), deadline, f"node {port} to answer")
        self._wait(lambda: self.roles().get(port) == "slave", deadline, f"node {port} to rejoin as a replica")
        self.wait_ok(deadline)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
