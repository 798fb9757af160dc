"""The metrics pass against real Redis: windows holding the same months are computed once and saved
alike, a timer pass lets records in between models, a checkpoint cuts its pauses short, and a batch
folded during a pass cannot make it judge a month's volume on a stale count.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from monitor.api.sample import load_scenario
from monitor.worker.engine import MetricsUpdater
from monitor.worker.pipeline import BatchProcessor, RawMessage
from monitor.state import Store, state_epoch
from monitor.stats import LabelledHistograms, compute_metrics
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


def test_a_reference_saved_again_is_the_one_the_next_pass_computes_against(servers):
    """The updater keeps the decoded reference while its card is unchanged; a reference saved again
    (a new card) is read at the next pass, and every window is computed against it."""
    import numpy as np

    from monitor.ops.reference import save_reference

    settings = unique_settings(servers)

    rng = np.random.default_rng(3)
    records = [{"record_id": f"r{i}", "model": "reref", "ref_date": f"2024-0{1 + i % 2}-15",
                "score": float(s), "target": int(s > 0.4)} for i, s in enumerate(rng.beta(2, 5, 1200))]

    async def go():
        await save_reference(settings, "reref", "1", rng.beta(2, 5, 3000))
        store = Store.connect(settings)
        try:
            processor = BatchProcessor(store, None, await asyncio.to_thread(state_epoch, settings))
            await processor.process([RawMessage(settings.records_topic, 0, i, orjson.dumps(r))
                                     for i, r in enumerate(records)])
            updater = MetricsUpdater(store, settings)
            await updater.run_once(None)
            before = await store.metrics("reref", "1")
            shifted = rng.beta(5, 2, 5000)  # far from the records' scores
            await save_reference(settings, "reref", "1", shifted)
            await updater.run_once(None)
            months = await store.months("reref", "1")
            hists = await store.histograms("reref", "1", months)
            reference, _ = await store.reference("reref", "1")
            return before, await store.metrics("reref", "1"), hists, reference
        finally:
            await store.close()

    before, after, hists, reference = asyncio.run(go())
    for month, hist in hists.items():
        expected = compute_metrics(hist, reference).to_dict()
        assert after[month]["windows"]["month"] == pytest.approx(expected), month
        assert after[month]["reference_n"] == 5000
        assert after[month]["windows"]["month"]["psi"] > before[month]["windows"]["month"]["psi"]


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
    passes = [line for line in lines[1:] if line.strip().startswith("pass,")]
    assert [line.split(",")[1].split()[:2] for line in passes] == [["first", "pass"], ["pauses", "off"],
                                                                    ["pauses", "on"]]
    assert all(float(line.split()[-5]) > 0 for line in passes)  # ms per pass
    lags = [line.split() for line in lines[1:] if line.strip().startswith("loop lag")]
    assert [lag[2] for lag in lags] == ["max", "p99"] and all(float(lag[3]) >= 0 for lag in lags)


def test_a_batch_folded_during_a_pass_cannot_close_a_month_on_a_stale_count(servers):
    """The agent folds batches while a pass awaits Redis. A batch that completes a month and moves
    the watermark past its end lands between the pass's count read and its volume judgement: the
    pass must not judge that month on the count it read before (it would fire: -80 % volume)."""
    settings = unique_settings(servers)
    day = {m: f"2024-{m:02d}-15" for m in range(1, 8)}

    def messages(month_counts: list[tuple[int, int]], first_offset: int) -> list[RawMessage]:
        out, offset = [], first_offset
        for month, n in month_counts:
            for i in range(n):
                record = {"record_id": f"r{offset}", "model": "race", "ref_date": day[month], "score": (i % 97) / 97,
                          "target": i % 2}
                out.append(RawMessage(settings.records_topic, 0, offset, orjson.dumps(record)))
                offset += 1
        return out

    async def go():
        store = Store.connect(settings)
        try:
            processor = BatchProcessor(store, None, await asyncio.to_thread(state_epoch, settings))
            # Four closed months of 1,000, the fifth begun (200 of its 1,000): closed up to 2024-04.
            first = messages([(1, 1000), (2, 1000), (3, 1000), (4, 1000), (5, 200)], 0)
            await processor.process(first)
            updater = MetricsUpdater(store, settings)
            await updater.run_once(None)
            # Next pass: once it has read the counts (2024-05 at 200), the rest of 2024-05 and
            # records of 2024-06 (past 2024-05's end + grace) arrive and close 2024-05.
            late = messages([(5, 800), (6, 1000)], len(first))
            await processor.process(late[:1])  # a change, so that the pass reads the counts again
            save_metrics = store.save_metrics

            async def fold_meanwhile(*args):
                await save_metrics(*args)
                if late:
                    await processor.process(late[1:])
                    late.clear()

            store.save_metrics = fold_meanwhile
            await updater.run_once(None)
            await updater.run_once(None)  # and the pass after it judges 2024-05 on its full count
            return [orjson.loads(x) for x in await store.redis.lrange(store.history_key(), 0, -1)], \
                await store.closing_watermark("race", "1")
        finally:
            await store.close()

    history, closing = asyncio.run(go())
    assert closing >= "2024-06-06"  # 2024-05 is closed by now...
    assert [e for e in history if e["rule"] == "volume"] == []  # ...and was judged on 1,000 records
