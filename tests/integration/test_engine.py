"""The metrics pass against real Redis: windows holding the same months are computed once and saved
alike, a timer pass lets records in between models, and a checkpoint cuts its pauses short.
"""

from __future__ import annotations

import asyncio

import pytest

from monitor.api.sample import load_scenario
from monitor.engine import MetricsUpdater
from monitor.stats import LabelledHistograms, compute_metrics
from monitor.store import Store
from producers.synthetic import Scenario
from tests.conftest import unique_settings

pytestmark = pytest.mark.integration


def scenario(model: str, months: int) -> Scenario:
    return Scenario(name=model, model=model, model_version="1", months=months, monthly_volume=300, seed=5)


def test_each_window_equals_the_metrics_of_its_months(servers):
    """Month, rolling (3 months) and cumulative windows over five months: in the first months the
    three hold the same months (computed once), later they differ; each equals compute_metrics of
    the sum of its months' histograms in Redis."""
    settings = unique_settings(servers)

    async def go():
        await load_scenario(settings, scenario("windows", 5))
        store = Store.connect(settings)
        try:
            months = await store.months("windows", "1")
            hists = await store.histograms("windows", "1", months)
            reference, _ = await store.reference("windows", "1")
            return months, hists, reference, await store.metrics("windows", "1")
        finally:
            await store.close()

    months, hists, reference, saved = asyncio.run(go())
    assert len(months) == 5
    for i, month in enumerate(months):
        spans = {"month": months[i:i + 1], "rolling": months[max(0, i - 2):i + 1], "cumulative": months[:i + 1]}
        for window, span in spans.items():
            total = LabelledHistograms.empty(settings.resolution)
            for m in span:
                total += hists[m]
            expected = compute_metrics(total, reference).to_dict()
            assert saved[month]["windows"][window] == pytest.approx(expected), (month, window)
    first = saved[months[0]]["windows"]
    assert first["month"] == first["rolling"] == first["cumulative"]
    last = saved[months[-1]]["windows"]
    assert last["month"]["n"] < last["rolling"]["n"] < last["cumulative"]["n"]


def test_a_timer_pass_pauses_after_each_model_as_long_as_the_model_took(servers, monkeypatch):
    settings = unique_settings(servers)
    pauses: list[float] = []

    async def go():
        for model in ("p-a", "p-b", "p-c"):
            await load_scenario(settings, scenario(model, 1))
        store = Store.connect(settings)
        try:
            updater = MetricsUpdater(store, settings)

            async def record_pause(seconds: float) -> None:
                pauses.append(seconds)

            monkeypatch.setattr(updater, "_pause", record_pause)
            await updater.run_once(None)
        finally:
            await store.close()

    asyncio.run(go())
    assert len(pauses) == 3 and all(p > 0 for p in pauses)  # every model computed afresh, then a pause


def test_a_checkpoint_ends_the_pause_at_once(servers):
    """A pause of a minute ends as soon as a model is marked due (the wakeup)."""
    settings = unique_settings(servers)

    async def go() -> bool:
        store = Store.connect(settings)
        try:
            updater = MetricsUpdater(store, settings)
            pause = asyncio.create_task(updater._pause(60.0))
            await asyncio.sleep(0.05)
            assert not pause.done()
            updater.wakeup.set()
            await asyncio.wait_for(pause, 5.0)
            return updater.wakeup.is_set()  # left set: the pass handles the due model next
        finally:
            await store.close()

    assert asyncio.run(go())


def test_the_pass_benchmark_runs_and_prints_its_figures(servers, capsys):
    from monitor.bench.passes import main

    assert main(["--models", "2", "--months", "1", "--records", "100", "--rounds", "1",
                 "--redis", servers.redis_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 models x 1 months")
    assert [line.split(",")[1].split()[:2] for line in lines[1:]] == [["pauses", "off"], ["pauses", "on"]]
    assert all(float(line.split()[-5]) > 0 for line in lines[1:])  # ms per pass
