"""One connection path: every Redis and Kafka client of the product is built by monitor/connect.py, so
the settings' password, ACL user, TLS and SASL apply to all of them; no secret in a message.

The embedded broker cannot run SASL end to end in the tests (tests/integration/test_secured_connections.py
says why), so the Kafka half is checked here: clients built (not started) from SASL settings carry them.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from monitor.connect import (
    kafka_admin,
    kafka_consumer,
    kafka_producer,
    redact_url,
    redis_client,
)
from monitor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("monitor", "producers", "models", "datasets")
ALLOWED = {"monitor/connect.py", "monitor/security.py"}
# Calls that build a client (or a pool) of Redis or Kafka, by the name called.
CLIENT_BUILDERS = {"Redis", "StrictRedis", "from_url", "from_pool", "ConnectionPool", "BlockingConnectionPool",
                   "AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "KafkaAdminClient",
                   "KafkaProducer", "KafkaConsumer", "Producer", "Consumer", "AdminClient"}
CLIENT_MODULES = ("confluent_kafka", "kafka")  # libraries the product does not use: a use would bypass connect

SASL = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
                kafka_sasl_username="svc", kafka_sasl_password=SecretStr("k-secret"))


def product_files() -> list[Path]:
    return sorted(p for top in PRODUCT for p in (ROOT / top).rglob("*.py"))


def direct_constructions(path: Path) -> list[str]:
    """``file:line name`` of every call or import that builds a client without monitor.connect."""
    found = []
    rel = path.relative_to(ROOT).as_posix()
    for node in ast.walk(ast.parse(path.read_text(), rel)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in CLIENT_BUILDERS:
                found.append(f"{rel}:{node.lineno} {name}(")
            if name in ("App", "MonitorApp") and not any(k.arg == "broker_credentials" for k in node.keywords):
                found.append(f"{rel}:{node.lineno} faust App without broker_credentials")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] in CLIENT_MODULES for m in modules):
                found.append(f"{rel}:{node.lineno} import {modules}")
    return found


def test_the_scan_sees_a_direct_construction(tmp_path):
    sample = ROOT / "monitor" / "_scan_sample_for_test.py"
    try:
        sample.write_text("import redis\nfrom aiokafka import AIOKafkaConsumer\nimport faust\n"
                          "r = redis.Redis.from_url('redis://h')\nc = AIOKafkaConsumer('t')\napp = faust.App('x')\n")
        assert len(direct_constructions(sample)) == 3
    finally:
        sample.unlink()


def test_no_module_builds_a_redis_or_kafka_client_itself():
    offenders = [hit for path in product_files() if path.relative_to(ROOT).as_posix() not in ALLOWED
                 for hit in direct_constructions(path)]
    assert not offenders, "build clients with monitor.connect: " + "; ".join(offenders)


def test_redis_clients_carry_the_credentials_of_the_settings():
    s = Settings(redis_url="rediss://h:6380/2", redis_username="svc", redis_password=SecretStr("r-secret"),
                 redis_ssl_ca_certs=Path("/etc/ssl/ca.pem"))
    for client in (redis_client(s), redis_client(s, asyncio=True), redis_client(s, asyncio=True, blocking_pool=4)):
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["ssl_ca_certs"]) == ("svc", "r-secret", "/etc/ssl/ca.pem")
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("h", 6380, 2)
        assert "r-secret" not in repr(client)


def test_every_kafka_client_gets_the_sasl_options():
    async def build():
        return [kafka_producer(SASL), kafka_consumer(SASL, "t", group_id="g"), kafka_admin(SASL)]

    producer, consumer, admin = asyncio.run(build())
    for client in (producer.client, consumer._client, admin._client):
        assert client._security_protocol == "SASL_PLAINTEXT"
        assert client._sasl_mechanism == "SCRAM-SHA-256"
        assert (client._sasl_plain_username, client._sasl_plain_password) == ("svc", "k-secret")


def test_faust_gets_the_sasl_credentials():
    """The worker's faust app takes ``faust_credentials`` (the scan above checks that every app is given them)."""
    import faust

    from monitor.security import faust_credentials

    credentials = faust_credentials(SASL)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password, credentials.mechanism.value) == ("svc", "k-secret",
                                                                                         "SCRAM-SHA-256")


@pytest.mark.parametrize("url", ["redis://u:pw@h:1/0", "rediss://:pw@h", "redis://u:pw@[::1]:1"])
def test_redacted_urls_keep_no_password(url):
    assert "pw" not in redact_url(url) and "***" in redact_url(url)


async def test_registry_error_shows_no_password_of_the_url(tmp_path):
    """The old workaround, the password in the URL, leaked in load_reference's error."""
    from models.registry import load_reference
    from monitor.ops import infra
    from monitor.errors import MonitorError

    class Card(dict):
        name, version = "m", "1"

    from monitor.stats import ScoreHistogram

    hist = ScoreHistogram.from_scores([0.1, 0.5])
    s = Settings(redis_url=f"redis://u:url-secret@127.0.0.1:{infra.free_port()}/0", resolution=hist.resolution)
    card = Card(reference={"histogram": hist.to_dict()})
    with pytest.raises(MonitorError) as info:
        await load_reference(s, card, timeout_s=5)
    assert "url-secret" not in str(info.value) and "redis://u:***@127.0.0.1" in str(info.value)
