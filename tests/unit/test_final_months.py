"""Which months are final: closed by the event-time watermark, settled, and every month before them too."""

from __future__ import annotations

import time

from monitor.worker.engine import MetricsUpdater
from monitor.alerts.rules import AlertConfig
from monitor.settings import Settings

MONTHS = ["2024-01", "2024-02", "2024-03", "2024-04"]


def updater(settle_s: float) -> MetricsUpdater:
    u = MetricsUpdater.__new__(MetricsUpdater)  # no Redis: final_months is bookkeeping only
    u.settings, u.config, u._changed_at, u._final = Settings(month_settle_s=settle_s), AlertConfig(), {}, {}
    return u


def test_closed_months_are_final_once_settled():
    u = updater(settle_s=0)
    # The watermark 2024-04-20 closes January to March (grace 5 days); April is open.
    assert u.final_months(("m", "1"), MONTHS, MONTHS, "2024-04-20") == {"2024-01", "2024-02", "2024-03"}


def test_a_closed_month_still_receiving_records_is_not_final_nor_any_after_it():
    u = updater(settle_s=60)
    key = ("m", "1")
    u.final_months(key, MONTHS, [], "2024-04-20")
    long_ago = time.monotonic() - 120
    u._changed_at[key].update({"2024-01": long_ago, "2024-03": long_ago})
    u._changed_at[key]["2024-02"] = time.monotonic()  # a lagging producer still sends February
    assert u.final_months(key, MONTHS, [], "2024-04-20") == {"2024-01"}


def test_a_final_month_stays_final_when_late_records_change_it():
    u = updater(settle_s=60)
    key = ("m", "1")
    u._final[key] = {"2024-01"}
    assert u.final_months(key, MONTHS, ["2024-01"], "2024-04-20") == {"2024-01"}
    assert u.final_months(key, MONTHS, [], None) == {"2024-01"}


def test_a_gap_month_settles_from_when_it_closed():
    u = updater(settle_s=60)
    key = ("m", "1")
    months = ["2024-01", "2024-04"]  # February and March have no record: February is judged (volume 0)
    assert u.final_months(key, months, [], "2024-04-20") == set()  # January is old, February just closed
    u._changed_at[key] = {m: time.monotonic() - 120 for m in u._changed_at[key]}
    assert u.final_months(key, months, [], "2024-04-20") == {"2024-01", "2024-02"}
