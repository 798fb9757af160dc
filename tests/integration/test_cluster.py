"""The worker, the CLI and the API on a real Redis Cluster (3 masters with a replica each, the
session's ``redis_cluster`` fixture, tests/cluster.py): models spread over the masters' slots,
counts, histograms and metrics exact, alerts and their history, a worker killed with -9, a master
failing over to its replica in the middle of a replay (CLUSTER FAILOVER, and kill -9 of the master),
the state layer's store and source-reset cases again, the benchmarks' probe. The cluster fault runs
(`monitor faults --scenario failover`, `--redis-cluster`) are in test_faults.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from monitor.ops import infra
from monitor.api.app import create_api, running
from monitor.ops.processes import settings_env, wait_until_caught_up
from monitor.ops.reference import save_reference
from monitor.state import Store
from monitor.state.reads import alert_history
from monitor.stats import LabelledHistograms, ScoreHistogram, compute_metrics
from producers.publish import publish
from producers.synthetic import SCENARIOS, generate, monthly_counts, reference_frame
from tests.conftest import api_headers, unique_settings

pytestmark = pytest.mark.integration

DRIFT = replace(SCENARIOS["demo"], months=3, monthly_volume=1000, drift_start=1, name="cluster-drift",
                model="cluster-drift")
PLAIN = [replace(SCENARIOS["baseline"], months=2, monthly_volume=500, name=f"cluster-{i}", model=f"cluster-{i}",
                 seed=20 + i) for i in range(4)]


@pytest.fixture
def cluster_settings(servers, redis_cluster):
    """Fresh topics and key prefix, with Redis the session's cluster (redis+cluster://...)."""
    s = unique_settings(servers, redis_url=redis_cluster.url)
    asyncio.run(infra.create_topics(s))
    return s


def state_layer_cases() -> list:
    """The state layer's integration tests that need only ``settings`` (test_store.py,
    test_source_reset.py): the batch, offsets, transitions and their history, outcome joins, epoch
    adoption, source resets; run again here on the cluster."""
    import inspect

    from tests.integration import test_source_reset, test_store

    return [f for module in (test_store, test_source_reset) for name, f in sorted(vars(module).items())
            if name.startswith("test_") and inspect.iscoroutinefunction(f)
            and list(inspect.signature(f).parameters) == ["settings"]]


@pytest.mark.parametrize("case", state_layer_cases(), ids=lambda f: f.__name__.removeprefix("test_"))
async def test_state_layer_case_on_a_cluster(case, cluster_settings):
    await case(cluster_settings)


def run_cli(settings, *args: str) -> subprocess.CompletedProcess:
    """``python -m monitor ARGS`` with the test's settings (this checkout's CLI, whatever the console
    script points at)."""
    done = subprocess.run([sys.executable, "-m", "monitor", *args], env=settings_env(settings), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def expected_histograms(records: list[dict], month: str) -> LabelledHistograms:
    mine = [r for r in records if r["ref_date"].startswith(month)]
    return LabelledHistograms(ScoreHistogram.from_scores([r["score"] for r in mine if r["target"] == 1]),
                              ScoreHistogram.from_scores([r["score"] for r in mine if r["target"] == 0]),
                              ScoreHistogram.from_scores([r["score"] for r in mine if r["target"] is None]))


async def assert_exact(store: Store, spec, records: list[dict]) -> None:
    """Counts equal the published records; histograms are exactly their binned scores; metrics are the
    engine's on those histograms (what a single Redis gives, the computation being the same)."""
    months = sorted(monthly_counts(spec))
    stored = await store.histograms(spec.model, spec.model_version, months)
    reference, _ = await store.reference(spec.model, spec.model_version)
    metrics = await store.metrics(spec.model, spec.model_version)
    for month in months:
        want = expected_histograms(records, month)
        got = stored[month]
        assert (got.pos, got.neg, got.unlabeled) == (want.pos, want.neg, want.unlabeled)
        assert metrics[month]["windows"]["month"] == compute_metrics(got, reference).to_dict()


async def test_worker_cli_and_api_on_a_cluster(cluster_settings, worker_process, redis_cluster):
    s = cluster_settings
    ref = reference_frame(DRIFT, n=4000)
    await save_reference(s, DRIFT.model, DRIFT.model_version, ref["score"].to_numpy(), ref["TARGET"].to_numpy(),
                         source="test")
    streams = {spec.model: (spec, list(generate(spec))) for spec in (DRIFT, *PLAIN)}
    worker = worker_process(s)
    first = {m: recs[: len(recs) // 2] for m, (_, recs) in streams.items()}
    rest = {m: recs[len(recs) // 2:] for m, (_, recs) in streams.items()}
    await publish([r for recs in first.values() for r in recs], s, per_message=20)
    store = Store.connect(s)
    try:
        # The models' keys live on more than one master: the worker's scripts ran on several nodes.
        await store.redis.initialize()  # the slot map
        nodes = {store.redis.get_node_from_key(store.count_key(m, "1", "2024-01")).name for m in streams}
        print(f"\n{len(streams)} models on {len(nodes)} masters: {sorted(nodes)}")
        assert len(nodes) >= 2
        half = sum(len(r) for r in first.values())
        deadline = time.monotonic() + 90
        while await store.worker_counter("records") < half // 2:
            assert time.monotonic() < deadline and worker.poll() is None
            await asyncio.sleep(0.2)
        worker.kill()  # -9 mid-stream: no commit; the offsets in Redis make the redelivery a no-op
        worker.wait()
        worker = worker_process(s)
        await publish([r for recs in rest.values() for r in recs], s, per_message=20)
        for spec, records in streams.values():
            assert await wait_until_caught_up(store, monthly_counts(spec), spec.model, spec.model_version, 120, worker)
            await assert_exact(store, spec, records)
        # (cm:worker's "records" is a progress counter, not exactly-once: a kill -9 between a batch
        # and its counter increment loses the increment, on one Redis as on a cluster.)

        # Alerts fire on the drifted months; the history reads work (one key, its own slot).
        deadline = time.monotonic() + 30
        while not (history := await alert_history(store, status="firing", model=DRIFT.model)):
            assert time.monotonic() < deadline, "no firing alert in the history"
            await asyncio.sleep(0.5)
        assert {e["month"] for e in history} <= set(sorted(monthly_counts(DRIFT))[DRIFT.drift_start:])
    finally:
        await store.close()

    # The CLI reads the cluster.
    cli = run_cli(s, "state", "--json")
    rows = json.loads(cli.stdout)
    assert {r["model"] for r in rows} == set(streams)
    shown = run_cli(s, "alerts", "--history", "--json", "--limit", "5").stdout.splitlines()
    assert shown and all(json.loads(line)["model"] == DRIFT.model for line in shown)

    # The API reads the cluster.
    app = create_api(s, measure_lag=False, cache_ttl_s=0)
    async with running(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api",
                                     headers=api_headers()) as c:
            assert (await c.get("/health")).status_code == 200
            assert {m["model"] for m in (await c.get("/models")).json()} == set(streams)
            months = (await c.get(f"/models/{DRIFT.model}/versions/1/months")).json()
            assert [row["counts"]["n"] for row in months] == list(monthly_counts(DRIFT).values())
            assert (await c.get("/alerts", params={"status": "firing"})).json()


async def replay_a_quarter(s, worker_process, name: str, months: int, models: int, seed: int):
    """Publish ``models`` models' months, start a worker and wait until a quarter is counted: the streams,
    the worker, an open Store, the master port of the first model's slot and the records counted."""
    specs = [replace(SCENARIOS["baseline"], months=months, monthly_volume=3000, name=f"{name}-{i}",
                     model=f"{name}-{i}", seed=seed + i) for i in range(models)]
    streams = [(spec, list(generate(spec))) for spec in specs]
    total = sum(len(r) for _, r in streams)
    await publish([r for _, recs in streams for r in recs], s, per_message=10)
    worker = worker_process(s)
    store = Store.connect(s)
    deadline = time.monotonic() + 90
    while await store.worker_counter("records") < total // 4:
        assert time.monotonic() < deadline and worker.poll() is None
        await asyncio.sleep(0.1)
    await store.redis.initialize()
    master = store.redis.get_node_from_key(store.count_key(specs[0].model, "1", "2024-01")).port
    return streams, worker, store, master, await store.worker_counter("records"), total


async def test_master_failover_during_a_replay_loses_and_doubles_nothing(cluster_settings, worker_process,
                                                                         redis_cluster):
    streams, worker, store, master, at, total = await replay_a_quarter(cluster_settings, worker_process, "fo",
                                                                       months=3, models=3, seed=40)
    try:
        # The master holding the first model's slot hands over to its replica mid-replay.
        new_master = redis_cluster.failover(master)
        print(f"\nfailover of master {master} to {new_master} at {at:,} of {total:,} records")
        for spec, records in streams:
            assert await wait_until_caught_up(store, monthly_counts(spec), spec.model, spec.model_version, 120, worker)
            await assert_exact(store, spec, records)
    finally:
        await store.close()


async def test_probe_sums_the_masters_and_wipe_scans_every_master(cluster_settings, redis_cluster):
    """The benchmarks' INFO is the cluster's (the masters' used_memory summed); SCAN-based wipe and
    footprint see the keys of every master."""
    from monitor.state.probe import Probe

    probe = Probe(cluster_settings)
    try:
        store = probe.store(cluster_settings)
        for i in range(30):  # 30 models: keys on every master
            await store.save_metrics(f"wipe-{i}", "1", {"2024-01": {"n": i}})
        per_node = await store.redis.info("memory", target_nodes=store.redis.PRIMARIES)
        assert len(per_node) == 3
        total = (await probe.info("memory"))["used_memory"]
        assert total == pytest.approx(sum(i["used_memory"] for i in per_node.values()), rel=0.05)
        size, _ = await store.footprint()
        assert size > 0
        await store.wipe()
        assert (await store.footprint())[0] == 0
    finally:
        await probe.close()


async def test_master_killed_during_a_replay_loses_and_doubles_nothing(cluster_settings, worker_process,
                                                                      redis_cluster):
    """kill -9 of the master holding a model's slot mid-replay: its replica is promoted (automatic
    failover). Writes it had not received are lost, which the worker sees as offsets behind what it
    wrote and rebuilds from the topic (a new epoch); either way every record is counted once."""
    streams, worker, store, master, at, total = await replay_a_quarter(cluster_settings, worker_process, "kill",
                                                                       months=2, models=2, seed=60)
    try:
        started = time.monotonic()
        new_master = redis_cluster.kill(master)
        print(f"\nmaster {master} killed at {at:,} of {total:,} records; replica {new_master} took over in "
              f"{time.monotonic() - started:.1f} s")
        for spec, records in streams:
            assert await wait_until_caught_up(store, monthly_counts(spec), spec.model, spec.model_version, 120)
            await assert_exact(store, spec, records)
    finally:
        await store.close()
        redis_cluster.restart(master)  # back as a replica: the cluster has its 3 x 2 nodes again


async def test_one_thousand_models_spread_over_the_masters(cluster_settings):
    """Where the cluster itself puts 1,000 models (its slot map): every master holds about a third."""
    from collections import Counter

    store = Store.connect(cluster_settings)
    try:
        await store.redis.initialize()
        nodes = Counter(store.redis.get_node_from_key(store.base(f"model-{i}", "1")).name for i in range(1000))
    finally:
        await store.close()
    print(f"\n1,000 models over the cluster's masters: {sorted(nodes.values())}")
    assert len(nodes) == 3 and min(nodes.values()) >= 280
