"""A registered model scores a real dataset; its replay's monthly volumetry in `monitor state` is the
dataset's; a credit-challenge file is scored too, with its outcomes published separately."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from datasets import load
from models.registry import Registry
from models.train import score_frame
from tests.conftest import monitor_cli

pytestmark = pytest.mark.integration


def test_produce_dataset_with_registered_model_volumetry_equals_the_card(settings, worker_process, tmp_path):
    settings = settings.model_copy(update={"models_dir": tmp_path / "models"})
    name = f"lc-{uuid.uuid4().hex[:6]}"
    out = monitor_cli(settings, "models", "train", "--dataset", "lendingclub", "--kind", "default",
                      "--name", name, "--no-redis")
    assert f"trained {name} version 1" in out.stdout
    assert f"monitor models load-reference {name} --version 1" in out.stdout
    card = json.loads(monitor_cli(settings, "models", "show", name, "--json").stdout)
    assert card["metrics"]["test"]["auc"] > 0.5
    out = monitor_cli(settings, "models", "load-reference", name)
    assert f"{card['reference']['n']} test-split scores loaded" in out.stdout

    frame, dcard = load("lendingclub")
    expected = dcard.months
    bads = frame.groupby(frame["REF_DATE"].str.slice(0, 7))["TARGET"].sum().to_dict()
    worker_process()
    out = monitor_cli(settings, "produce", "--dataset", "lendingclub", "--model", name, "--batch", "200")
    assert f"published {dcard.rows} records" in out.stdout
    # January (train) has no loan of sub-grade G4, March has one: reported, not fatal.
    _, report = score_frame(Registry(tmp_path / "models", settings=settings).load(name), frame)
    assert report.unseen == {"sub_grade": {"G4": 1}}
    assert f"scored with {name}:1: {report.summary()}" in out.stdout

    deadline = time.monotonic() + 45
    while True:
        rows = json.loads(monitor_cli(settings, "state", "--json", "--model", name).stdout)
        counts = {r["month"]: r["counts"]["n"] for r in rows}
        computed = {r["month"]: ((r["metrics"] or {}).get("month") or {}).get("n") for r in rows}
        if (counts == expected and computed == expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert counts == expected == {"2018-01": 3395, "2018-02": 2988, "2018-03": 3617}
    assert computed == expected
    assert {r["month"]: r["counts"]["bad"] for r in rows} == bads
    assert all(r["model_version"] == "1" and r["reference_n"] == card["reference"]["n"] for r in rows)


async def consume(settings, topic: str, expected: int, timeout_s: float = 20.0) -> list[dict]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=f"reader-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=3000, heartbeat_interval_ms=300)
    await consumer.start()
    out: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while sum(len(v) if isinstance(v, list) else 1 for v in out) < expected and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out += [orjson.loads(m.value) for m in msgs]
    finally:
        await consumer.stop()
    return [r for v in out for r in (v if isinstance(v, list) else [v])]


def test_challenge_file_scored_and_outcomes_published_separately(settings, tmp_path):
    models = tmp_path / "models"
    settings = settings.model_copy(update={"models_dir": models})
    name = f"cd-{uuid.uuid4().hex[:6]}"
    out = monitor_cli(settings, "models", "train", "--dataset", "credit_data", "--name", name)  # Redis is up
    card = Registry(models, settings=settings).card(name)
    assert f"reference: {card.get('reference')['n']} test-split scores loaded into Redis for {name}:1" in out.stdout
    frame = load("credit_data")[0].head(300).drop(columns=["record_id"])
    frame.loc[frame.index[0], "Home"] = "castle"
    path = tmp_path / "challenge.json"
    path.write_text(frame.to_json(orient="records"))

    out = monitor_cli(settings, "produce", "--file", str(path), "--model", name, "--labels", "separate",
                      "--batch", "50")
    assert "published 300 records" in out.stdout
    assert "unseen categories: Home: 1 (castle: 1)" in out.stdout
    assert f"published 300 outcomes to {settings.outcomes_topic}" in out.stdout

    records = asyncio.run(consume(settings, settings.records_topic, 300))
    outcomes = asyncio.run(consume(settings, settings.outcomes_topic, 300))
    assert len(records) == 300 and all(r["target"] is None and r["model"] == name for r in records)
    assert sorted(o["record_id"] for o in outcomes) == sorted(r["record_id"] for r in records)
    by_id = {o["record_id"]: o["target"] for o in outcomes}
    assert [by_id[f"challenge-{i}"] for i in range(300)] == frame["TARGET"].tolist()
    assert all(o["model_version"] == "1" and o["observed_at"] for o in outcomes)
