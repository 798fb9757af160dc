"""docker-compose.yml, Dockerfile and deploy/prometheus.yml agree with each other and with
monitor/settings.py. Parsed with PyYAML; no Docker daemon needed (the `config` check runs
only where a compose CLI is installed)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib
import yaml

from monitor.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager.yml"
APP_SERVICES = ("worker", "api", "demo-producer", "notify")
KAFKA_IMAGE = "apache/kafka:3.9.0"


def default(field: str):
    """A Settings default, whatever MONITOR_* variables the test process has."""
    return Settings.model_fields[field].default


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def depends(service: dict) -> dict[str, str]:
    dep = service.get("depends_on") or {}
    if isinstance(dep, list):
        return {name: "service_started" for name in dep}
    return {name: (cond or {}).get("condition", "service_started") for name, cond in dep.items()}


def command_words(service: dict) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def test_all_services_are_there(services):
    assert set(services) >= {"kafka", "redis", "topics", "worker", "demo-producer", "api", "prometheus", "grafana",
                             "alertmanager", "notify"}
    assert "zookeeper" not in services


def test_kafka_is_a_single_kraft_node_reachable_as_kafka_9092(services):
    kafka = services["kafka"]
    assert kafka["image"] == KAFKA_IMAGE
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert controller in listeners and controller not in advertised
    assert set(listeners) <= set(protocols)
    inter = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    assert advertised[inter] == "kafka:9092" and listeners[inter].endswith(":9092")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])  # a base64url UUID
    assert not any("ZOOKEEPER" in k for k in env)
    assert "kafka-broker-api-versions.sh" in str(kafka["healthcheck"]["test"])


def test_redis_persists_with_appendonly_and_has_a_healthcheck(compose, services):
    redis = services["redis"]
    assert redis["image"] == "redis:7.2"
    words = command_words(redis)
    assert words[words.index("--appendonly") + 1] == "yes"
    volume = next(v for v in redis["volumes"] if v.split(":")[1] == "/data")
    assert volume.split(":")[0] in compose["volumes"]
    assert "ping" in redis["healthcheck"]["test"]


def test_topics_creates_the_settings_topics_and_exits(services):
    topics = services["topics"]
    assert topics["image"] == KAFKA_IMAGE
    assert depends(topics) == {"kafka": "service_healthy"}
    assert topics.get("restart", "no") == "no"
    cmd = topics["command"]
    script = cmd if isinstance(cmd, str) else " ".join(str(c) for c in cmd)
    assert "/opt/kafka/bin/kafka-topics.sh" in script
    assert "--create" in script and "--if-not-exists" in script
    env = env_of(topics)

    # Resolve the shell variables of the loop (`$$` is compose's escape of `$`).
    loop = re.search(r"for \w+ in (.*?); do", script).group(1)
    created = {env[name] for name in re.findall(r"\$\$(\w+)", loop)}
    expected = {default(f) for f in ("records_topic", "outcomes_topic", "alerts_topic", "dead_letter_topic")}
    assert created == expected == {"credit-records", "credit-outcomes", "credit-alerts", "credit-dead-letter"}

    partitions = re.search(r"--partitions\s+\"?\$\$(\w+)", script).group(1)
    assert int(env[partitions]) == default("partitions") == 4
    bootstrap = re.search(r"--bootstrap-server\s+\"?\$\$(\w+)", script).group(1)
    assert env[bootstrap] == "kafka:9092"


def test_worker_waits_for_healthy_kafka_redis_and_the_topics(services):
    worker = services["worker"]
    assert depends(worker) == {
        "kafka": "service_healthy",
        "redis": "service_healthy",
        "topics": "service_completed_successfully",
    }
    assert command_words(worker) == ["monitor", "worker"]
    env = env_of(worker)
    assert env["MONITOR_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["MONITOR_REDIS_URL"] == "redis://redis:6379/0"
    # scalable: `docker compose up --scale worker=N`
    assert "container_name" not in worker and "ports" not in worker
    build = worker["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert (ROOT / context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")).is_file()


def test_api_and_demo_producer(services):
    api = services["api"]
    assert command_words(api) == ["monitor", "api", "--host", "0.0.0.0", "--port", "8000"]
    assert any(str(p).split(":")[-1] == "8000" for p in api["ports"])
    demo = services["demo-producer"]
    assert demo["profiles"] == ["demo"]
    assert command_words(demo) == ["monitor", "produce", "--synthetic", "demo"]
    assert "demo" not in (services["worker"].get("profiles") or [])
    for name in APP_SERVICES:
        assert services[name]["image"] == services["worker"]["image"]
        assert depends(services[name])["kafka"] == "service_healthy"


def test_every_monitor_variable_is_a_settings_field_with_a_valid_value(services):
    fields = set(Settings.model_fields)
    seen = set()
    for name, service in services.items():
        values = {}
        for key, value in env_of(service).items():
            if key.startswith("MONITOR_"):
                field = key.removeprefix("MONITOR_").lower()
                assert field in fields, f"{name}: {key} is not a field of monitor.settings.Settings"
                values[field] = value
                seen.add(key)
        Settings(**values)  # the values validate (e.g. partitions is an integer >= 1)
    assert {"MONITOR_KAFKA_BOOTSTRAP", "MONITOR_REDIS_URL"} <= seen
    # and the topic names given to the apps are the defaults too
    for name in APP_SERVICES:
        env = env_of(services[name])
        for field in ("records_topic", "outcomes_topic", "alerts_topic", "dead_letter_topic", "partitions"):
            key = f"MONITOR_{field.upper()}"
            if key in env:
                assert env[key] == str(default(field))


def test_the_monitor_command_exists():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "monitor" in scripts


def test_prometheus_scrapes_the_api(services):
    prom = services["prometheus"]
    assert prom["image"].split(":")[0] == "prom/prometheus"
    mounts = [str(v) for v in prom["volumes"]]
    assert any(m.startswith("./deploy/prometheus.yml:/etc/prometheus/prometheus.yml") for m in mounts)
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = [
        (job.get("metrics_path", "/metrics"), target)
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert ("/metrics", "api:8000") in targets


def test_alertmanager_runs_the_deploy_config_on_loopback_only(compose, services):
    am = services["alertmanager"]
    assert am["image"].split(":")[0] == "prom/alertmanager"
    words = command_words(am)
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in words
    mounts = [str(v) for v in am["volumes"]]
    assert "./deploy/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in mounts
    storage = next(w.split("=", 1)[1] for w in words if w.startswith("--storage.path="))
    assert any(m.split(":")[1] == storage and m.split(":")[0] in compose["volumes"] for m in mounts)
    assert [str(p) for p in am["ports"]] == ["${BIND_ADDRESS:-127.0.0.1}:9093:9093"]  # silences and alerts: not for the network
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert config["route"]["group_by"] == ["model", "version"]
    severities = {m for route in config["route"]["routes"] for m in route["matchers"]}
    assert severities == {'severity="critical"', 'severity="warning"'}
    receivers = {r["name"] for r in config["receivers"]}
    assert config["route"]["receiver"] in receivers and {r["receiver"] for r in config["route"]["routes"]} <= receivers
    if shutil.which("amtool"):
        result = subprocess.run(["amtool", "check-config", str(ALERTMANAGER)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_notify_delivers_to_the_alertmanager_service(services):
    notify = services["notify"]
    assert command_words(notify) == ["monitor", "notify"]
    env = env_of(notify)
    assert env["MONITOR_ALERTMANAGER_URL"] == "http://alertmanager:9093"
    assert env["MONITOR_NOTIFY_GROUP"] == str(default("notify_group"))
    assert depends(notify) == {"kafka": "service_healthy", "redis": "service_healthy",
                               "topics": "service_completed_successfully", "alertmanager": "service_started"}
    assert notify.get("restart") == "unless-stopped" and "ports" not in notify
    prometheus = yaml.safe_load(PROMETHEUS.read_text())
    targets = [t for am in prometheus["alerting"]["alertmanagers"] for s in am["static_configs"] for t in s["targets"]]
    assert targets == ["alertmanager:9093"]


def test_grafana_is_exposed_and_its_provisioning_path_documented(services):
    grafana = services["grafana"]
    assert grafana["image"].split(":")[0] == "grafana/grafana"
    assert any(str(p).split(":")[-1] == "3000" for p in grafana["ports"])
    assert "deploy/grafana/" in COMPOSE.read_text()


def test_dockerfile_installs_requirements_then_the_project():
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    final = lines[max(i for i, line in enumerate(lines) if line.upper().startswith("FROM ")):]
    assert not any(line.upper().startswith("ENTRYPOINT") for line in final)
    assert final[-1] == 'CMD ["monitor", "worker"]'
    copy_req = next(i for i, line in enumerate(final) if line.startswith("COPY requirements.txt"))
    install_req = next(i for i, line in enumerate(final) if "-r requirements.txt" in line)
    copy_all = next(i for i, line in enumerate(final) if line == "COPY . .")
    install_project = next(i for i, line in enumerate(final) if "pip install --no-deps ." in line)
    assert copy_req < install_req < copy_all < install_project


def _compose_clis() -> list[list[str]]:
    return [["docker", "compose"], ["docker-compose"]]


@pytest.mark.parametrize("cli", _compose_clis(), ids=lambda c: " ".join(c))
def test_compose_config_validates_offline(cli):
    if shutil.which(cli[0]) is None:
        pytest.skip(f"{cli[0]} is not installed")
    probe = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"{' '.join(cli)} is not available: {probe.stderr.strip()[:200]}")
    if not (ROOT / "deploy" / "api.env").is_file():
        pytest.skip("deploy/api.env is missing (cp deploy/api.env.example deploy/api.env)")
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "a-test-password"}  # required, no default
    for extra in ([], ["--profile", "demo"]):
        result = subprocess.run(
            [*cli, "-f", str(COMPOSE), *extra, "config", "-q"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
        )
        assert result.returncode == 0, result.stderr


# ---- locked down (issue 16) --------------------------------------------------------------------
def published(port) -> dict:
    """A `ports:` entry as (host_ip, published, target): short ("127.0.0.1:8000:8000") or long syntax."""
    if isinstance(port, dict):
        return {"host_ip": port.get("host_ip"), "published": str(port.get("published")), "target": str(port["target"])}
    parts = str(port).rsplit(":", 2)  # the host ip may be "${VAR:-127.0.0.1}", itself with a colon
    if len(parts) == 3:
        return {"host_ip": parts[0], "published": parts[1], "target": parts[2]}
    return {"host_ip": None, "published": parts[0], "target": parts[-1]}


def test_every_published_port_is_bound_to_loopback_by_default(services):
    seen = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            p = published(port)
            # "${MONITOR_BIND:-127.0.0.1}" style: the default after ":-" is what an unset variable gives
            ip = re.sub(r"^\$\{\w+:-(.*)\}$", r"\1", p["host_ip"] or "")
            assert ip == "127.0.0.1", f"{name} publishes {port} on {p['host_ip'] or 'every interface'}"
            seen[name] = p["target"]
    assert {"api", "kafka", "grafana", "prometheus", "redis"} <= set(seen)


def test_kafka_advertises_the_host_listener_on_loopback(services):
    env = env_of(services["kafka"])
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert advertised["HOST"].startswith(("localhost:", "127.0.0.1:"))
    assert listeners["HOST"] == ":29092"  # inside the container; the host side is the 127.0.0.1 binding


def test_grafana_admin_password_comes_from_the_environment_with_no_default(services):
    env = env_of(services["grafana"])
    password = env["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", password), password
    assert "admin/admin" not in COMPOSE.read_text()


def test_the_api_reads_its_tokens_from_an_env_file_that_is_not_committed(services):
    api = services["api"]
    files = api.get("env_file") or []
    files = [files] if isinstance(files, (str, dict)) else files
    paths = [f["path"] if isinstance(f, dict) else f for f in files]
    assert "deploy/api.env" in [p.removeprefix("./") for p in paths]
    example = ROOT / "deploy" / "api.env.example"
    text = example.read_text()
    assert "MONITOR_API_TOKENS=" in text
    assert not any(re.fullmatch(r"MONITOR_API_TOKENS=\S*[0-9a-f]{64}\S*", line) for line in text.splitlines())
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "deploy/api.env" in ignored or "/deploy/api.env" in ignored
