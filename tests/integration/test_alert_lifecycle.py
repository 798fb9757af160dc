"""Alerts on real streams, through the real worker: every month judged, provisional then final, no flapping.

Each test publishes a synthetic stream in an order a real stream has (late batches, a month ahead
of others, records ordered within a month, a record dated far ahead) and reads the alert events
from the alerts topic.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace

import orjson
import pytest

from monitor.ops.processes import wait_until_caught_up
from monitor.state import Store
from producers.publish import publish
from producers.synthetic import Scenario, generate
from tests.integration.test_alert_engine import load_references
from tests.integration.test_worker import consume_all

pytestmark = pytest.mark.integration

QUIET = Scenario(name="quiet", model="quiet", months=5, monthly_volume=2000, seed=21)
DRIFT = Scenario(name="drift", model="drift", months=6, monthly_volume=2000, seed=22, drift_start=3, score_shift=1.0)
SCORE_RULES = ("psi", "ks_adherence")
SETTLE_S = 3.0


@pytest.fixture
def settings(settings):
    """A closed month settles (its verdicts turn final) 3 s after its last record, not 10."""
    return settings.model_copy(update={"month_settle_s": SETTLE_S})


def by_month(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        out[r["ref_date"][:7]].append(r)
    return out


async def stream(settings, worker, spec: Scenario, batches: list[list[dict]], per_message: int = 20) -> None:
    """Publish each batch and wait until the worker has counted and computed it."""
    store = Store.connect(settings)
    expected: dict[str, int] = defaultdict(int)
    try:
        for batch in batches:
            await publish(batch, settings, per_message=per_message)
            for r in batch:
                expected[r["ref_date"][:7]] += 1
            assert await wait_until_caught_up(store, dict(expected), spec.model, spec.model_version, 90, worker)
        # The last months settle, are judged final, and their events leave the outbox.
        await asyncio.sleep(SETTLE_S + 4 * settings.metrics_interval_s)
    finally:
        await store.close()


async def events_of(settings) -> list[dict]:
    return [orjson.loads(m.value) for m in await consume_all(settings, settings.alerts_topic, 10_000, timeout_s=6)]


def lifecycle(events: list[dict]) -> dict[tuple[str, str, str], list[tuple[str, str]]]:
    """(rule, window, month) -> [(status, phase), ...] in the order emitted."""
    out: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)
    for e in events:
        out[(e["rule"], e["window"], e["month"])].append((e["status"], e["phase"]))
    return out


def assert_no_flapping(alerts: dict) -> None:
    """At most one provisional event, then final ones; at most two events unless late data changed a final verdict."""
    for alert, seq in alerts.items():
        phases = [phase for _, phase in seq]
        assert phases.count("provisional") <= 1 and phases == sorted(phases, key=("provisional", "final").index), \
            (alert, seq)
        assert len(seq) <= 2, (alert, seq)


async def test_a_late_batch_for_a_closed_month_is_judged_again(settings, worker_process):
    await load_references(settings, [QUIET])
    worker = worker_process()
    months = by_month(list(generate(QUIET)))
    await stream(settings, worker, QUIET, [months[m] for m in sorted(months)])
    assert [e for e in await events_of(settings) if e["month"] == "2024-02"] == []

    # Weeks later, a batch of 2024-02 records from a shifted population arrives.
    shifted = replace(QUIET, seed=23, months=2, drift_start=1, score_shift=1.5)
    late = [{**r, "record_id": f"late-{r['record_id']}"} for r in by_month(list(generate(shifted)))["2024-02"]]
    await stream(settings, worker, QUIET, [late])
    alerts = lifecycle(await events_of(settings))
    # Judged final at once (the month was final): firing, then maybe a new severity as the batch lands.
    late = alerts[("psi", "month", "2024-02")]
    assert late and all(phase == "final" for _, phase in late) and late[-1][0] == "firing", alerts
    assert_no_flapping(alerts)


async def test_in_order_drift_fires_provisionally_then_finally(settings, worker_process):
    await load_references(settings, [DRIFT])
    worker = worker_process()
    months = by_month(list(generate(DRIFT)))
    await stream(settings, worker, DRIFT, [months[m] for m in sorted(months)])
    alerts = lifecycle(await events_of(settings))
    for month in ("2024-04", "2024-05"):  # drifted, and closed by the next month's records
        assert alerts[("psi", "month", month)] == [("firing", "provisional"), ("firing", "final")], alerts
    assert alerts[("psi", "month", "2024-06")] == [("firing", "provisional")]  # drifted, still open
    assert not [a for a in alerts if a[2] < "2024-04" and a[1] == "month"], alerts  # quiet months: silence
    assert_no_flapping(alerts)


async def test_a_month_ahead_of_the_others_does_not_make_alerts_flap(settings, worker_process):
    """The latest month reaches the worker before months 3-5 (a lagging producer): each alert still
    settles with at most a provisional and a final event, and the closed months' verdicts are right."""
    await load_references(settings, [DRIFT])
    worker = worker_process()
    months = by_month(list(generate(DRIFT)))
    order = ["2024-01", "2024-02", "2024-06", "2024-03", "2024-04", "2024-05"]
    await stream(settings, worker, DRIFT, [months[m] for m in order])
    alerts = lifecycle(await events_of(settings))
    assert_no_flapping(alerts)
    finals = {(rule, window, month): seq[-1][0] for (rule, window, month), seq in alerts.items()
              if seq[-1][1] == "final" and rule in SCORE_RULES}
    assert {a for a, status in finals.items() if status == "firing" and a[1] == "month"} >= {
        ("psi", "month", "2024-04"), ("psi", "month", "2024-05")}, alerts
    assert not [a for a, status in finals.items() if status == "firing" and a[2] < "2024-04"], alerts


async def test_records_ordered_by_score_within_each_month_settle_without_false_final_alarms(settings, worker_process):
    """Worst case for an open month: its first records are its lowest scores. Provisional verdicts
    may fire; every closed month's final verdict is quiet, and no alert flaps."""
    await load_references(settings, [QUIET])
    worker = worker_process()
    months = by_month(list(generate(QUIET)))
    await stream(settings, worker, QUIET, [sorted(months[m], key=lambda r: r["score"]) for m in sorted(months)])
    alerts = lifecycle(await events_of(settings))
    assert_no_flapping(alerts)
    final_firing = [a for a, seq in alerts.items() if seq[-1] == ("firing", "final")]
    assert final_firing == [], alerts
    print(f"provisional firings on an ordered quiet stream: {sum(seq[0][1] == 'provisional' for seq in alerts.values())}")


async def test_a_record_dated_far_ahead_does_not_stall_judgement(settings, worker_process):
    """One record of 9999-12 (bounds on event time off): the drift of 2024-04 is still judged."""
    settings = settings.model_copy(update={name: 0 for name in ("max_event_future_days", "max_event_age_days")
                                           if name in type(settings).model_fields})
    await load_references(settings, [DRIFT])
    worker = worker_process(settings)
    records = list(generate(replace(DRIFT, months=5)))
    far = {**records[0], "record_id": "far-ahead", "ref_date": "9999-12-31"}
    months = by_month(records)
    await stream(settings, worker, DRIFT, [months["2024-01"], months["2024-02"] + [far], months["2024-03"],
                                           months["2024-04"], months["2024-05"]])
    alerts = lifecycle(await events_of(settings))
    assert ("firing", "provisional") in alerts[("psi", "month", "2024-04")] or \
        ("firing", "final") in alerts[("psi", "month", "2024-04")], alerts
    assert_no_flapping(alerts)


async def test_labels_trickling_into_a_closed_month_do_not_keep_it_open(settings):
    """Outcomes arrive for months long after their records: a closed month whose records stopped
    coming settles (its verdicts turn final) even while its labels keep arriving."""
    from monitor.worker.engine import MetricsUpdater
    from monitor.worker.outcomes import OutcomeProcessor
    from monitor.worker.pipeline import BatchProcessor, RawMessage

    settings = settings.model_copy(update={"month_settle_s": 0.5})
    store = Store.connect(settings)
    try:
        async def refuse(msg, reason):
            raise AssertionError(reason)

        records = [{"record_id": f"r{i}", "model": "labels", "ref_date": f"2024-0{1 + i % 2}-10",
                    "score": (i % 100) / 100} for i in range(400)]
        records.append({"record_id": "closer", "model": "labels", "ref_date": "2024-03-20", "score": 0.5})
        await BatchProcessor(store, refuse, "e1").process(
            [RawMessage("records", 0, i, orjson.dumps(r)) for i, r in enumerate(records)])
        updater = MetricsUpdater(store, settings)
        outcomes = OutcomeProcessor(store, refuse)
        january = [r for r in records if r["ref_date"].startswith("2024-01")]
        final_at = None
        for step, record in enumerate(january[:40]):  # an outcome every 0.1 s, for 4 s
            await outcomes.process([RawMessage("outcomes", 0, step, orjson.dumps(
                {"record_id": record["record_id"], "model": "labels", "target": step % 2}))])
            await updater.update_model("labels", "1")
            if final_at is None and "2024-01" in updater._final[("labels", "1")]:
                final_at = step
            await asyncio.sleep(0.1)
        assert final_at is not None and final_at < 20, "January never settled while its labels came"
        assert (await store.counts("labels", "1", "2024-01"))["bad"] + \
            (await store.counts("labels", "1", "2024-01"))["good"] == 40
    finally:
        await store.close()
