"""`monitor notify`: alert events from the alerts topic to Alertmanager and to a generic webhook.

People do not read Kafka topics: Alertmanager pages them (Slack, e-mail, PagerDuty) with grouping,
silences and inhibition. This consumer has its own group (``MONITOR_NOTIFY_GROUP``) and commits an
event's offset only once every sink took it (or it was dead-lettered): at-least-once, resumable.

**Alertmanager** (``POST /api/v2/alerts``, every URL of ``MONITOR_ALERTMANAGER_URL``). An alert's
identity there is its label set (:func:`am_labels`), so a redelivered event updates the same alert.
Alertmanager ends an alert at its ``endsAt``; without one it sets ``now + resolve_timeout`` (5 min).
So, as Prometheus does, a firing alert is posted with ``endsAt`` 4 resends ahead and re-posted every
``MONITOR_NOTIFY_RESEND_S`` while it fires (the firing ones are kept in Redis, ``<prefix>:notify:firing``,
so a restart resumes them); a ``resolved`` event posts it with ``endsAt`` = now. Severity and phase
are labels: when a later event of the same alert changes them, the old label set is ended at once.
Alertmanager away or answering 5xx/429 is waited out (nothing is committed meanwhile); a 4xx refusal
dead-letters the event.

**Webhook** (``MONITOR_WEBHOOK_URL``): the event's JSON, with ``Idempotency-Key: <event_id>``; tried
``MONITOR_NOTIFY_ATTEMPTS`` times with backoff, then dead-lettered to ``MONITOR_NOTIFY_DEAD_LETTER_TOPIC``.

Duplicates (the upstream outbox is at-least-once): a delivered ``event_id`` is remembered per sink in
Redis (``<prefix>:notify:delivered:<sink>:<event_id>``, ``MONITOR_NOTIFY_DEDUP_TTL_S``) and not sent again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import aiohttp
import orjson
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from monitor.alerts.lifecycle import AlertEvent
from monitor.connect import kafka_admin, kafka_consumer, kafka_producer
from monitor.errors import MonitorError
from monitor.retry import retry_forever
from monitor.settings import Settings
from monitor.state import Store

log = logging.getLogger("monitor.alerts.notify")

BACKOFF_MAX_S = 30.0
FIRST_RESEND_S = 5.0
RESENDS_AHEAD = 4
"""A firing alert's endsAt is this many resend intervals ahead (Prometheus: 4 x max(evaluation, resend))."""


class Undeliverable(MonitorError):
    """A sink refused an event for good (or after every attempt): it goes to the dead-letter topic."""


def alertname(rule: str) -> str:
    """Alertmanager's ``alertname`` of a rule (a feature rule ``feature_psi:<name>`` shares one).

    >>> alertname("ks_adherence"), alertname("feature_psi:income"), alertname("source_reset")
    ('CreditMonitorKsAdherence', 'CreditMonitorFeaturePsi', 'CreditMonitorSourceReset')
    """
    return "CreditMonitor" + "".join(word.capitalize() for word in rule.split(":", 1)[0].split("_"))


def am_labels(event: dict, severity: str | None = None, phase: str | None = None) -> dict[str, str]:
    """The label set identifying the event's alert in Alertmanager.

    >>> e = {"rule": "psi", "model": "m", "model_version": "2", "window": "month", "month": "2024-03",
    ...      "severity": "warning", "phase": "final"}
    >>> am_labels(e)
    {'alertname': 'CreditMonitorPsi', 'model': 'm', 'version': '2', 'window': 'month', 'rule': 'psi', \
'severity': 'warning', 'month': '2024-03', 'phase': 'final'}
    """
    return {"alertname": alertname(event["rule"]), "model": event["model"], "version": str(event["model_version"]),
            "window": event["window"], "rule": event["rule"], "severity": severity or event["severity"],
            "month": event["month"], "phase": phase or event.get("phase", "final")}


def _number(value) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def am_annotations(event: dict, dashboard_url: str) -> dict[str, str]:
    """What a person reads: the message, the figures and links to the dashboard and the month's detail.

    >>> a = am_annotations({"model": "m", "model_version": "1", "month": "2024-03", "message": "PSI high",
    ...                     "value": 0.31234567, "threshold": 0.25, "n": 900, "event_id": "e1"}, "http://x:8000/")
    >>> a["value"], a["dashboard"], a["detail"]
    ('0.312346', 'http://x:8000/', 'http://x:8000/models/m/versions/1/months/2024-03')
    """
    base = dashboard_url.rstrip("/")
    detail = (f"{base}/models/{quote(event['model'], safe='')}/versions/{quote(str(event['model_version']), safe='')}"
              f"/months/{quote(event['month'], safe='')}")
    return {"message": event.get("message", ""), "value": _number(event.get("value")),
            "threshold": _number(event.get("threshold")), "n": _number(event.get("n")),
            "dashboard": f"{base}/", "detail": detail, "event_id": event.get("event_id", "")}


def iso(moment: dt.datetime) -> str:
    """RFC 3339 in UTC, as Alertmanager reads it.

    >>> iso(dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    '2024-03-01T12:00:00.000000Z'
    """
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def moment(text: str) -> dt.datetime:
    """An event's ``emitted_at`` as a time (pydantic leaves out zero microseconds: as text, a whole
    second would sort after its fractions).

    >>> moment("2024-03-01T12:00:00Z") < moment("2024-03-01T12:00:00.5Z"), "12:00:00Z" < "12:00:00.5Z"
    (True, False)
    """
    return dt.datetime.fromisoformat(text)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def backoff(first_s: float, attempt: int) -> float:
    """Wait before try ``attempt + 1`` (attempt counts from 1).

    >>> [backoff(0.5, a) for a in (1, 2, 3)], backoff(1, 10)
    ([0.5, 1.0, 2.0], 30.0)
    """
    return min(BACKOFF_MAX_S, first_s * 2 ** (attempt - 1))


class Transient(Exception):
    """A sink that is away or overloaded (connection error, timeout, 5xx, 429): try again later."""


async def post_json(session: aiohttp.ClientSession, url: str, payload, headers: dict | None = None) -> None:
    """POST ``payload`` as JSON; :class:`Transient` or :class:`Undeliverable` unless the answer is 2xx."""
    try:
        async with session.post(url, data=orjson.dumps(payload),
                                headers={"Content-Type": "application/json", **(headers or {})}) as resp:
            if 200 <= resp.status < 300:
                return
            body = (await resp.text())[:300]
            if resp.status >= 500 or resp.status == 429:
                raise Transient(f"{url} answered {resp.status}: {body}")
            raise Undeliverable(f"{url} refused the event ({resp.status}): {body}")
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise Transient(f"{url}: {type(exc).__name__}: {exc}") from exc


class Alertmanager:
    """Posts alerts to every Alertmanager of an HA cluster; delivered when one of them took them
    (its peers gossip; the resend loop posts the firing ones to all again)."""

    def __init__(self, session: aiohttp.ClientSession, urls: list[str], backoff_s: float):
        self.session = session
        self.urls = [u.rstrip("/") for u in urls]
        self.backoff_s = backoff_s

    async def post_once(self, alerts: list[dict]) -> None:
        errors: list[Exception] = []
        for url in self.urls:
            try:
                await post_json(self.session, f"{url}/api/v2/alerts", alerts)
            except (Transient, Undeliverable) as exc:
                errors.append(exc)
        if len(errors) == len(self.urls):
            transient = [e for e in errors if isinstance(e, Transient)]
            raise transient[0] if transient else errors[0]

    async def post(self, alerts: list[dict]) -> None:
        """Post until one Alertmanager accepts: an outage delays the events, it never drops them."""
        attempt = 0
        while True:
            try:
                return await self.post_once(alerts)
            except Transient as exc:
                attempt += 1
                wait = backoff(self.backoff_s, attempt)
                log.warning("Alertmanager unreachable (%s); retrying in %.1f s", exc, wait)
                await asyncio.sleep(wait)


class Webhook:
    """POSTs an event's JSON to one URL, ``attempts`` times with backoff, else :class:`Undeliverable`."""

    def __init__(self, session: aiohttp.ClientSession, url: str, attempts: int, backoff_s: float):
        self.session, self.url, self.attempts, self.backoff_s = session, url, attempts, backoff_s

    async def deliver(self, event: dict) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                return await post_json(self.session, self.url, event,
                                       {"Idempotency-Key": event["event_id"], "X-Alert-Id": event["alert_id"]})
            except (Transient, Undeliverable) as exc:
                if attempt == self.attempts:
                    raise Undeliverable(f"webhook: {self.attempts} attempts failed, last: {exc}") from exc
                wait = backoff(self.backoff_s, attempt)
                log.warning("webhook delivery of %s failed (%s), attempt %d of %d; retrying in %.1f s",
                            event["event_id"], exc, attempt, self.attempts, wait)
                await asyncio.sleep(wait)


class Notifier:
    """Delivers alert events to the sinks, keeps the firing alerts and the delivered event ids in Redis."""

    def __init__(self, settings: Settings, store: Store, alertmanager: Alertmanager | None, webhook: Webhook | None,
                 dead_letter: Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]):
        self.settings, self.store = settings, store
        self.alertmanager, self.webhook, self.dead_letter = alertmanager, webhook, dead_letter
        self.lock = asyncio.Lock()  # a resend must not re-post an alert a resolve is ending
        self.delivered = 0

    def ends_at_firing(self, now: dt.datetime) -> str:
        return iso(now + dt.timedelta(seconds=RESENDS_AHEAD * self.settings.notify_resend_s))

    async def _redis(self, what: str, call, *args):
        return await retry_forever(what, call, *args)

    async def handle(self, key: bytes | None, value: bytes, topic: str, partition: int, offset: int) -> None:
        """Deliver one message of the alerts topic to every sink; returns when it may be committed."""
        headers = [("dlq.topic", topic.encode()), ("dlq.partition", str(partition).encode()),
                   ("dlq.offset", str(offset).encode())]
        try:
            AlertEvent.model_validate_json(value)  # every field a sink reads is there, with its type
        except ValidationError as exc:
            await self.dead_letter(key, value, [("dlq.reason", f"not an alert event: {exc}"[:1000].encode()),
                                                ("dlq.sink", b"none"), *headers])
            return
        event = orjson.loads(value)  # as published: the webhook gets the producer's JSON unchanged
        sinks: list[tuple[str, Callable[[dict, int], Awaitable[None]]]] = []
        if self.alertmanager is not None:
            sinks.append(("alertmanager", self.to_alertmanager))
        webhook = self.webhook
        if webhook is not None:
            sinks.append(("webhook", lambda e, _partition: webhook.deliver(e)))
        for name, deliver in sinks:
            if await self._redis("reading the delivered events", self.store.notify_delivered, name, event["event_id"]):
                log.info("%s: event %s already delivered, skipped", name, event["event_id"])
                continue
            try:
                await deliver(event, partition)
            except Undeliverable as exc:
                log.error("%s: event %s of %s dead-lettered: %s", name, event["event_id"], event["alert_id"], exc)
                await self.dead_letter(key, value, [("dlq.reason", str(exc).encode()), ("dlq.sink", name.encode()),
                                                    *headers])
            await self._redis("remembering a delivered event", self.store.notify_mark_delivered, name,
                              event["event_id"], self.settings.notify_dedup_ttl_s)
        self.delivered += 1

    async def to_alertmanager(self, event: dict, partition: int) -> None:
        """Fire, re-label or end the event's alert in Alertmanager, and keep the firing ones in Redis
        (with the alerts topic's ``partition`` it came from: its owner re-posts it, see resend_firing)."""
        alertmanager = self.alertmanager
        if alertmanager is None:  # a sink only when configured (handle)
            raise RuntimeError("no Alertmanager configured")
        async with self.lock:
            raw = await self._redis("reading the firing alerts", self.store.notify_firing, event["alert_id"])
            stored = orjson.loads(raw) if raw else None
            if stored and moment(stored["emitted_at"]) > moment(event["emitted_at"]):
                log.info("event %s is older than the alert's last one, skipped", event["event_id"])
                return
            now = utcnow()
            ended_at = iso(now)
            alerts = []
            if event["status"] == "firing":
                alert = {"labels": am_labels(event), "annotations": am_annotations(event, self.settings.dashboard_url),
                         "startsAt": event["emitted_at"], "generatorURL": self.settings.dashboard_url}
                if stored and stored["alert"]["labels"] != alert["labels"]:
                    alerts.append({**stored["alert"], "endsAt": ended_at})  # severity or phase changed
                elif stored:
                    alert["startsAt"] = stored["alert"]["startsAt"]
                alerts.append({**alert, "endsAt": self.ends_at_firing(now)})
            elif stored:
                alerts.append({**stored["alert"], "endsAt": ended_at})
            else:  # its firing event came before this notifier's state: end every label set it may have had
                severity = event.get("previous_severity") or event["severity"]
                for phase in ("provisional", "final"):
                    alerts.append({"labels": am_labels(event, severity, phase), "startsAt": event["emitted_at"],
                                   "annotations": am_annotations(event, self.settings.dashboard_url),
                                   "endsAt": ended_at})
            await alertmanager.post(alerts)
            if event["status"] == "firing" and event["rule"] != "source_reset":  # source_reset is one-shot
                await self._redis("keeping a firing alert", self.store.notify_keep_firing, event["alert_id"],
                                  orjson.dumps({"alert": alerts[-1], "emitted_at": event["emitted_at"],
                                                "partition": partition}))
            elif stored:
                await self._redis("dropping a resolved alert", self.store.notify_drop_firing, event["alert_id"])
            log.info("alertmanager: %s %s %s", event["status"], event["severity"], event["alert_id"])

    async def resend_firing(self, owned: set[int] | None = None) -> int:
        """Post the firing alerts again with a later endsAt; returns how many.

        With ``owned``, only the alerts whose events come from those partitions of the alerts topic: the
        notifier that owns a partition is the one that resolves its alerts (under ``self.lock``), so a
        resend by another instance can never revive an alert that was just ended.
        """
        if self.alertmanager is None:
            return 0
        async with self.lock:
            firing = await self._redis("reading the firing alerts", self.store.notify_all_firing)
            states = [orjson.loads(raw) for raw in firing.values()]
            if owned is not None:
                states = [st for st in states if st.get("partition", -1) in owned | {-1}]  # -1: not known
            if not states:
                return 0
            ends_at = self.ends_at_firing(utcnow())
            await self.alertmanager.post([{**st["alert"], "endsAt": ends_at} for st in states])
            return len(states)


async def ensure_topic(settings: Settings, topic: str) -> None:
    """Create ``topic`` if the broker lacks it (the dead-letter topic of `monitor notify`)."""
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = kafka_admin(settings)
    await retry_forever("connecting to Kafka", admin.start)
    try:
        if topic not in set(await admin.list_topics()):
            try:
                await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def resend_loop(notifier: Notifier, interval_s: float, owned: Callable[[], set[int]]) -> None:
    """Re-post the firing alerts of the owned partitions every ``interval_s``; the first time soon after
    the start, as a notifier stopped for longer than the alerts' endsAt lets them expire."""
    await asyncio.sleep(min(interval_s, FIRST_RESEND_S))
    while True:
        try:
            count = await notifier.resend_firing(owned())
            if count:
                log.info("re-posted %d firing alerts to Alertmanager", count)
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("re-posting the firing alerts failed")
        await asyncio.sleep(interval_s)


async def run_notify(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Consume the alerts topic and deliver every event, until ``stop`` is set (or forever)."""
    urls = [u.strip() for u in settings.alertmanager_url.split(",") if u.strip()]
    if not urls and not settings.webhook_url:
        raise MonitorError("nothing to notify: set MONITOR_ALERTMANAGER_URL and/or MONITOR_WEBHOOK_URL")
    stop = stop or asyncio.Event()
    await ensure_topic(settings, settings.notify_dead_letter_topic)
    store = Store.connect(settings)
    producer = kafka_producer(settings)
    consumer = kafka_consumer(
        settings, settings.alerts_topic, group_id=settings.notify_group, enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
        heartbeat_interval_ms=max(int(settings.broker_session_timeout_s * 1000 / 3), 300))
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.notify_timeout_s))
    await retry_forever("starting the dead-letter producer", producer.start)
    await retry_forever("joining the notify group", consumer.start)

    async def dead_letter(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        await retry_forever("dead-lettering an alert event", producer.send_and_wait,
                            settings.notify_dead_letter_topic, value, key, None, None, headers)

    notifier = Notifier(settings, store,
                        Alertmanager(session, urls, settings.notify_backoff_s) if urls else None,
                        Webhook(session, settings.webhook_url, settings.notify_attempts, settings.notify_backoff_s)
                        if settings.webhook_url else None, dead_letter)
    resender = asyncio.create_task(resend_loop(
        notifier, settings.notify_resend_s,
        lambda: {tp.partition for tp in consumer.assignment() if tp.topic == settings.alerts_topic}))
    log.info("notify: %s -> %s%s (group %s)", settings.alerts_topic, ", ".join(urls) or "-",
             f" and {settings.webhook_url}" if settings.webhook_url else "", settings.notify_group)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                for msg in messages:
                    await notifier.handle(msg.key, msg.value, msg.topic, msg.partition, msg.offset)
                    try:  # delivered (or dead-lettered): only now may the group move past it
                        await consumer.commit({tp: msg.offset + 1})
                    except (CommitFailedError, KafkaError) as exc:
                        # a rebalance took the partition: its new owner redelivers, the event ids dedupe
                        log.warning("commit of %s:%s@%s failed (%s)", tp.topic, tp.partition, msg.offset, exc)
    finally:
        resender.cancel()
        await consumer.stop()
        await producer.stop()
        await session.close()
        await store.close()
