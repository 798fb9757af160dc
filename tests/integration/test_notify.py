"""`monitor notify` on the real broker and Redis, delivering to a real Alertmanager (Debian package
`prometheus-alertmanager`, installed by scripts/setup) and to a real HTTP webhook served by the test."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from monitor.ops import infra
from monitor.alerts.lifecycle import AlertEvent
from monitor.api.bench import wait_http
from monitor.ops.processes import settings_env, stop_process
from monitor.settings import Settings

AM_BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(AM_BINARY is None, reason="the Alertmanager binary is missing: apt-get install "
                                                           "prometheus-alertmanager (scripts/setup installs it)")]
ROOT = Path(__file__).resolve().parents[2]


class AlertmanagerProcess:
    """A real Alertmanager on a free loopback port, with the repository's deploy/ config."""

    def __init__(self, tmp_path: Path):
        self.port = infra.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tmp_path
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [AM_BINARY, f"--config.file={ROOT / 'deploy' / 'alertmanager.yml'}",
             f"--storage.path={self.dir / 'am-data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--cluster.listen-address=", "--log.level=warn"],
            stdout=open(self.dir / "alertmanager.log", "ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        await wait_http(f"{self.url}/-/ready", 30, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    async def alerts(self) -> list[dict]:
        """The active alerts (Alertmanager's GET leaves out resolved ones)."""
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/api/v2/alerts") as resp:
            assert resp.status == 200
            return await resp.json()

    async def wait_alerts(self, predicate, timeout_s: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        alerts: list[dict] = []
        while time.monotonic() < deadline:
            alerts = await self.alerts()
            if predicate(alerts):
                return alerts
            await asyncio.sleep(0.2)
        return alerts


@pytest.fixture
async def alertmanager(tmp_path):
    am = AlertmanagerProcess(tmp_path)
    await am.start()
    yield am
    am.stop()


@pytest.fixture
def notify_process(tmp_path):
    """Start `monitor notify` (the console command, as a user would) with given settings."""
    procs = []

    def start(s: Settings) -> subprocess.Popen:
        log = open(tmp_path / f"notify-{len(procs)}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "notify"], env=settings_env(s), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop_process(proc)


def notify_settings(settings: Settings, **overrides) -> Settings:
    values = {"notify_group": f"{settings.consumer_group}-notify",
              "notify_dead_letter_topic": f"{settings.alerts_topic}-notify-dlq",
              "notify_backoff_s": 0.1, "dashboard_url": "http://dash.example:8000"}
    return settings.model_copy(update={**values, **overrides})


def event(status: str = "firing", rule: str = "psi", month: str = "2024-03", severity: str = "warning",
          phase: str = "final", **extra) -> AlertEvent:
    fields = dict(alert_id=f"m:1:month:{month}:{rule}", event_id=uuid.uuid4().hex, status=status, phase=phase,
                  severity=severity, rule=rule, model="m", model_version="1", window="month", month=month,
                  value=0.31, threshold=0.25, n=900, message=f"PSI=0.310 ({status})",
                  emitted_at=dt.datetime.now(dt.timezone.utc))
    return AlertEvent(**{**fields, **extra})


async def publish(settings: Settings, *events: AlertEvent | bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for e in events:
            raw = e if isinstance(e, bytes) else e.model_dump_json().encode()
            key = orjson.loads(raw)["alert_id"].encode() if isinstance(e, AlertEvent) else b"junk"
            await producer.send_and_wait(settings.alerts_topic, raw, key=key)
    finally:
        await producer.stop()


async def log_says(path: Path, text: str, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return text in path.read_text()


def labels_of(alerts: list[dict]) -> list[dict]:
    return sorted((a["labels"] for a in alerts), key=lambda labels: sorted(labels.items()))


async def test_firing_resolved_and_duplicate_events_in_alertmanager(settings, alertmanager, notify_process, tmp_path):
    s = notify_settings(settings, alertmanager_url=alertmanager.url, notify_resend_s=1.0)
    proc = notify_process(s)
    psi = event()
    ks = event(rule="ks_adherence", severity="critical", phase="provisional", month="2024-04")
    await publish(s, psi, psi, ks)  # the PSI event twice, as an at-least-once upstream may deliver it
    alerts = await alertmanager.wait_alerts(lambda a: len(a) >= 2)
    assert proc.poll() is None
    assert labels_of(alerts) == [
        {"alertname": "CreditMonitorKsAdherence", "model": "m", "version": "1", "window": "month",
         "rule": "ks_adherence", "severity": "critical", "month": "2024-04", "phase": "provisional"},
        {"alertname": "CreditMonitorPsi", "model": "m", "version": "1", "window": "month", "rule": "psi",
         "severity": "warning", "month": "2024-03", "phase": "final"}]
    fired = next(a for a in alerts if a["labels"]["rule"] == "psi")
    assert fired["annotations"]["message"] == "PSI=0.310 (firing)"
    assert (fired["annotations"]["value"], fired["annotations"]["threshold"], fired["annotations"]["n"]) == (
        "0.31", "0.25", "900")
    assert fired["annotations"]["detail"] == "http://dash.example:8000/models/m/versions/1/months/2024-03"
    assert fired["status"]["state"] == "active"
    # the duplicate is recognised by its event_id (it may be read after the other alert's event)
    assert await log_says(tmp_path / "notify-0.log", f"event {psi.event_id} already delivered")

    # endsAt is 4 resends (4 s) ahead: after 6 s the alerts are still active only because they are re-posted
    await asyncio.sleep(6)
    assert len(await alertmanager.alerts()) == 2

    # the final verdict on 2024-04 replaces the provisional label set; the resolved PSI event ends its alert
    ks_final = event(rule="ks_adherence", severity="critical", phase="final", month="2024-04")
    await publish(s, event(status="resolved", previous_severity="warning"), ks_final)
    alerts = await alertmanager.wait_alerts(lambda a: [x["labels"]["phase"] for x in a] == ["final"]
                                            and a[0]["labels"]["rule"] == "ks_adherence")
    assert [(a["labels"]["rule"], a["labels"]["phase"]) for a in alerts] == [("ks_adherence", "final")]
    assert proc.poll() is None

    # an event older than the alert's last one (redelivered late) changes nothing
    stale = event(status="resolved", rule="ks_adherence", month="2024-04", severity="critical",
                  emitted_at=ks_final.emitted_at - dt.timedelta(seconds=1))
    await publish(s, stale)
    assert await log_says(tmp_path / "notify-0.log", f"event {stale.event_id} is older than the alert's last one")
    assert [a["labels"]["rule"] for a in await alertmanager.alerts()] == ["ks_adherence"]

    # stopped, `monitor notify` lets its alerts expire (endsAt); started again, it re-posts the firing one
    stop_process(proc)
    assert await alertmanager.wait_alerts(lambda a: not a) == []
    notify_process(s)
    alerts = await alertmanager.wait_alerts(lambda a: len(a) == 1)
    assert [(a["labels"]["rule"], a["labels"]["phase"]) for a in alerts] == [("ks_adherence", "final")]


async def test_an_alertmanager_outage_delays_but_loses_nothing(settings, alertmanager, notify_process, tmp_path):
    s = notify_settings(settings, alertmanager_url=alertmanager.url)
    proc = notify_process(s)
    first = event(month="2024-01")
    await publish(s, first)
    assert len(await alertmanager.wait_alerts(lambda a: len(a) == 1)) == 1

    alertmanager.stop()
    later = [event(month=f"2024-0{i}") for i in (2, 3, 4)]
    await publish(s, *later, event(status="resolved", month="2024-01"))
    assert await log_says(tmp_path / "notify-0.log", "Alertmanager unreachable")

    await alertmanager.start()  # same port; Alertmanager keeps alerts in memory only: it starts empty
    alerts = await alertmanager.wait_alerts(lambda a: {x["labels"]["month"] for x in a} == {"2024-02", "2024-03",
                                                                                            "2024-04"})
    assert sorted(a["labels"]["month"] for a in alerts) == ["2024-02", "2024-03", "2024-04"]
    assert proc.poll() is None

    # a restart of `monitor notify` resumes from its committed offsets: nothing is delivered twice
    stop_process(proc)
    proc = notify_process(s)
    await publish(s, event(month="2024-05"))
    alerts = await alertmanager.wait_alerts(lambda a: len(a) == 4)
    assert sorted(a["labels"]["month"] for a in alerts) == ["2024-02", "2024-03", "2024-04", "2024-05"]
    assert "already delivered" not in (tmp_path / "notify-1.log").read_text()


class Receiver:
    """A small real webhook: answers 500 to the first ``fail_first`` tries of each event (every try of an
    event whose rule is ``always_fails``), then 200; records what it accepted."""

    def __init__(self, fail_first: int):
        self.fail_first = fail_first
        self.tries: dict[str, int] = {}
        self.accepted: list[dict] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        assert request.headers["Idempotency-Key"] == body["event_id"]
        self.tries[body["event_id"]] = self.tries.get(body["event_id"], 0) + 1
        if body["rule"] == "always_fails" or self.tries[body["event_id"]] <= self.fail_first:
            return web.Response(status=500, text="not now")
        self.accepted.append(body)
        return web.Response(status=200)


async def dead_letters(s: Settings, expect: int, timeout_s: float = 60) -> list:
    consumer = AIOKafkaConsumer(s.notify_dead_letter_topic, bootstrap_servers=s.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < expect and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                found += messages
    finally:
        await consumer.stop()
    return found


async def test_webhook_retries_dedupes_and_dead_letters(settings, notify_process):
    receiver = Receiver(fail_first=2)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = infra.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        s = notify_settings(settings, alertmanager_url="", webhook_url=f"http://127.0.0.1:{port}/hook",
                            notify_attempts=3)
        proc = notify_process(s)
        ok, doomed = event(), event(rule="always_fails", month="2024-05")
        await publish(s, ok, doomed, ok, b"not json")  # ok twice: delivered once
        letters = await dead_letters(s, expect=2)
        deadline = time.monotonic() + 30
        while not receiver.accepted and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert [e["event_id"] for e in receiver.accepted] == [ok.event_id]
        assert receiver.tries[ok.event_id] == 3  # two 500s, then delivered; its duplicate never sent
        assert receiver.tries[doomed.event_id] == 3  # notify_attempts, then dead-lettered
        by_sink = {dict(m.headers)["dlq.sink"]: m for m in letters}
        assert set(by_sink) == {b"webhook", b"none"}
        assert orjson.loads(by_sink[b"webhook"].value)["event_id"] == doomed.event_id
        assert b"3 attempts failed" in dict(by_sink[b"webhook"].headers)["dlq.reason"]
        assert by_sink[b"none"].value == b"not json"
        assert proc.poll() is None
    finally:
        await runner.cleanup()


async def test_the_workers_alerts_reach_alertmanager(settings, worker_process, alertmanager, notify_process):
    """End to end: a drifting stream through the real worker; Alertmanager ends up holding exactly the
    alerts the monitor's state says are firing, with their severity and phase."""
    from dataclasses import replace

    from monitor.alerts.lifecycle import parse_alert_field
    from monitor.ops.reference import save_reference
    from monitor.state import Store
    from producers.publish import publish as publish_records
    from producers.synthetic import Scenario, generate, reference_frame

    spec = replace(Scenario(), model="paged", months=4, monthly_volume=1200, drift_start=2, score_shift=0.8)
    ref = reference_frame(spec, n=5000)
    await save_reference(settings, spec.model, spec.model_version, ref["score"].to_numpy(), ref["TARGET"].to_numpy(),
                         source="test")
    s = notify_settings(settings, alertmanager_url=alertmanager.url)
    worker_process(s.model_copy(update={"month_settle_s": 1.0}))
    notify_process(s)
    await publish_records(list(generate(spec)), settings, per_message=50)

    store = Store.connect(settings)

    async def firing_in_monitor() -> set[tuple]:
        states = await store.alert_states(spec.model, spec.model_version)
        return {(*parse_alert_field(field, st), st["severity"], st.get("phase", "final"))
                for field, st in states.items() if st["status"] == "firing"}

    def in_alertmanager(alerts: list[dict]) -> set[tuple]:
        return {(a["labels"]["rule"], a["labels"]["window"], a["labels"]["month"], a["labels"]["severity"],
                 a["labels"]["phase"]) for a in alerts if a["labels"]["model"] == spec.model}

    try:
        deadline = time.monotonic() + 120
        expected, seen = set(), set()
        while time.monotonic() < deadline:
            expected, seen = await firing_in_monitor(), in_alertmanager(await alertmanager.alerts())
            # the last month stays open (provisional); an earlier drifted one closes (final)
            if expected == seen and "final" in {x[4] for x in expected}:
                break
            await asyncio.sleep(0.5)
        print(f"\nfiring in the monitor and in Alertmanager: {sorted(expected)}")
        assert seen == expected
        assert {x[0] for x in expected} >= {"psi", "ks_adherence"} and "final" in {x[4] for x in expected}
    finally:
        await store.close()
