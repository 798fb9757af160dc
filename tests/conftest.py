"""Shared fixtures: one real broker and one real Redis per test session, started here.

Each test gets its own topics, consumer group and key prefix (uuid), so tests never see each
other's data on the shared servers.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from monitor.ops import infra
from monitor.api.auth import hash_token
from monitor.ops.processes import settings_env, start_worker, stop_process
from monitor.settings import Settings

pytest_plugins = ["tests.cluster"]  # the session's Redis Cluster fixture (redis_cluster)

# API tokens of every test's settings (monitor.api.auth): the API needs one for all but /health and /docs.
API_READ_TOKEN = "test-read-" + uuid.uuid4().hex
API_WRITE_TOKEN = "test-write-" + uuid.uuid4().hex
API_TOKENS = f"test-read:read:{hash_token(API_READ_TOKEN)},test-write:write:{hash_token(API_WRITE_TOKEN)}"


def api_headers(token: str = API_WRITE_TOKEN) -> dict[str, str]:
    """The header that authenticates a test's requests to the API."""
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def api_client(settings: Settings, timeout: float = 5.0, **options) -> AsyncIterator[httpx.AsyncClient]:
    """The API of ``settings`` running in this process (its lifespan too) and a client authenticated to
    it; ``options`` go to create_api (``measure_lag`` is off: no broker lag is measured)."""
    from monitor.api.app import create_api, running

    app = create_api(settings, measure_lag=False, **options)
    async with running(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     headers=api_headers(), timeout=timeout) as client:
            yield client


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> Settings:
    """Start Tansu and redis-server on free loopback ports for the whole session."""
    run_dir = tmp_path_factory.mktemp("run")
    base = Settings(kafka_bootstrap=f"127.0.0.1:{infra.free_port()}",
                    redis_url=f"redis://127.0.0.1:{infra.free_port()}/0", run_dir=run_dir,
                    data_dir=tmp_path_factory.getbasetemp(), api_tokens=API_TOKENS)  # tests' files live in their tmp_path
    services = infra.services(base)
    for svc in services:
        svc.start()
    yield base
    for svc in reversed(services):
        svc.stop()


def unique_settings(base: Settings, **overrides) -> Settings:
    name = f"t-{uuid.uuid4().hex[:10]}"
    values = {"records_topic": f"{name}-records", "outcomes_topic": f"{name}-outcomes",
              "alerts_topic": f"{name}-alerts", "dead_letter_topic": f"{name}-dead-letter",
              "consumer_group": name, "key_prefix": name, "metrics_interval_s": 0.5}
    values.update(overrides)
    return base.model_copy(update=values)


@pytest.fixture
def settings(servers) -> Settings:
    """Settings with fresh topics (created on the broker), group and key prefix."""
    s = unique_settings(servers)
    asyncio.run(infra.create_topics(s))
    return s


@pytest.fixture
def worker_process(settings, tmp_path):
    """Start `monitor worker` processes for the test's settings; all stopped at teardown."""
    procs = []

    def start(s: Settings | None = None) -> subprocess.Popen:
        proc = start_worker(s or settings, tmp_path / f"worker-{len(procs)}.log", loglevel="info")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc)


def monitor_cli(settings: Settings, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run the `monitor` command with the test's settings, as a user would."""
    return subprocess.run(["monitor", *args], env=settings_env(settings), capture_output=True, text=True,
                          timeout=timeout, check=check)


def kcat_env() -> dict[str, str]:
    """Environment for Debian's kcat.

    Debian 12's librdkafka 2.0.2 cannot parse the ApiVersions v3 response of some brokers
    (Tansu among them), so kcat is pointed at the newer librdkafka that the confluent-kafka
    wheel bundles (ABI-compatible librdkafka.so.1). Against Apache Kafka plain kcat works.
    """
    env = dict(os.environ)
    try:
        import confluent_kafka
    except ImportError:
        return env
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    candidates = sorted(libs.glob("librdkafka*.so*"))
    if candidates:
        shim = Path(os.environ.get("TMPDIR", "/tmp")) / f"kcat-librdkafka-{os.getuid()}"
        shim.mkdir(exist_ok=True)
        link = shim / "librdkafka.so.1"
        if not link.exists():
            link.symlink_to(candidates[0])
        env["LD_LIBRARY_PATH"] = f"{shim}:{env.get('LD_LIBRARY_PATH', '')}"
    return env
