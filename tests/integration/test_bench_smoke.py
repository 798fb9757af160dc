"""`monitor bench` end to end at a tiny size: every section measured, every figure positive.

No timing is asserted (the machine is shared): only that the harness ran each measurement on its
own servers and wrote a complete JSON document.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from monitor.bench import report

pytestmark = pytest.mark.integration


def test_bench_runs_every_measurement_at_a_tiny_size(tmp_path):
    out = tmp_path / "bench.json"
    # Arrays of 2 records: 3,000 messages, more than one worker batch, so the batched rate is measured
    # between two counts rather than including the worker's start-up.
    cmd = [sys.executable, "-m", "monitor", "bench", "--records", "6000", "--batch-size", "2",
           "--naive-records", "3000", "--latency-seconds", "4", "--latency-models", "4",
           "--latency-intervals", "2.0", "--memory-records", "20000", "--json", str(out),
           "--work-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())

    assert report.validate_report(doc) == []
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["redis_server"]
    tp = doc["throughput"]
    for key in report.THROUGHPUT_KEYS:
        assert tp[key]["records_per_s"] > 0, key
        assert len(tp[key]["runs"]) == 1
    assert tp["worker_single"]["runs"][0]["records"] == 6000
    assert tp["naive_faust_redis"]["runs"][0]["records"] == 3000
    assert all(v > 0 for v in doc["ratios"].values())

    (lat,) = doc["latency"]
    assert lat["metrics_interval_s"] == 2.0 and lat["default_interval"] is True
    assert lat["alert_ms"]["n"] == lat["models"] == 4 and lat["missing_alerts"] == []
    assert lat["state_ms"]["n"] == 4 and lat["alert_ms"]["p99"] >= lat["alert_ms"]["p50"] > 0

    mem = doc["memory"]
    assert mem["curve"][-1]["records"] == 20000
    assert all(p["bytes"] > 0 for p in mem["curve"])
    assert mem["extrapolated_10m"]["linear_bytes"] > 0
    # Monitor state and label-join buffer apart: 20 % of the records wait for their outcome.
    last = mem["curve"][-1]
    assert last["state_bytes"] + last["join_buffer_bytes"] == last["bytes"]
    assert 0 < last["waiting_records"] < last["records"]
    assert mem["max_bytes_per_model_month"] <= mem["max_total_bytes_per_model_month"]
    assert mem["join_buffer"]["waiting_records"] == last["waiting_records"]
    assert mem["join_buffer"]["extrapolated_10m"]["bytes"] >= mem["join_buffer"]["bytes"]
    assert set(doc["rss"]["phases"]) == {"worker_single", "worker_batched", "memory", "latency_2s"}
    assert {t["name"] for t in doc["targets"]} == {
        "single-record >= 0.8x no-op faust", "batched >= 0.5x raw ceiling",
        "publish-to-alert p99 <= 500 ms at 5k rec/s", "Redis monitor state <= 1 MB per (model, month)",
        "worker RSS flat"}
    assert "ratio worker_single/faust_noop" in proc.stdout
    assert "label-join buffer at 20,000 records" in proc.stdout


def test_scale_bench_runs_at_a_tiny_size(tmp_path):
    """`monitor bench --scale` end to end: history folded, first pass, live traffic with drift episodes,
    the workers' loop lag read back, Redis memory per model-month. Figures positive, nothing lost."""
    out = tmp_path / "scale.json"
    cmd = [sys.executable, "-m", "monitor", "bench", "--scale", "--models", "12", "--months", "3", "--history", "20",
           "--rate", "600", "--seconds", "5", "--per-message", "10", "--sentinels", "3", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    print(proc.stdout[-4000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["history_records"] == 12 * 3 * 20
    assert doc["bytes_per_model_month"] > 0 and doc["redis_bytes_references"] > 0
    assert doc["first_pass_s"] >= 0 and doc["workers_start_s"] > 0
    live = doc["live"]
    assert live["folded"] == live["records"] == 600 * 5  # every live record counted, none twice
    assert live["alert_ms"]["n"] == 3 and live["missing_alerts"] == []
    assert live["state_ms"]["n"] == 3
    lag = doc["loop_lag"]
    assert lag["workers"] == 1 and lag["samples"] > 0 and lag["max_ms"] >= lag["p99_ms"] >= 0
    assert "publish-to-alert p50/p99" in proc.stdout and "worker loop lag p99 / max" in proc.stdout


def test_mixed_fold_bench_runs_and_prints_its_figures(servers, capsys):
    from monitor.bench.mixed import main

    assert main(["--models", "20", "--batches", "1", "--per-message", "5", "--redis", servers.redis_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "20 models mixed, 1 batches of 500 messages x 5 records"
    assert lines[1].split()[1:4] == ["2,500", "records", "in"]  # every record of the timed batch folded
    assert float(lines[1].split()[-2].replace(",", "")) > 0 and lines[2].split()[:2] == ["loop", "lag"]
