"""What a user does from a shell: kcat as a non-Python producer, the `monitor` commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from monitor.ops import infra
from monitor.settings import Settings
from tests.conftest import kcat_env, monitor_cli

pytestmark = pytest.mark.integration


def kcat_records() -> tuple[list[str], dict[str, int]]:
    """Lines for kcat: single records and JSON arrays, over three months, with and without labels."""
    lines, expected = [], {"2024-01": 0, "2024-02": 0, "2024-03": 0}
    for i in range(300):
        month = ("2024-01", "2024-02", "2024-03")[i % 3]
        rec = {"record_id": f"k{i}", "model": "kcat-model", "model_version": "7", "REF_DATE": f"{month}-1{i % 9}",
               "score": round((i * 37 % 1000) / 1000, 3), "TARGET": (0, 1, None)[i % 7 % 3]}
        lines.append(json.dumps(rec))
        expected[month] += 1
    batch = [{"record_id": f"kb{i}", "model": "kcat-model", "model_version": "7", "ref_date": "2024-03-02",
              "score": 0.5, "target": 1} for i in range(25)]
    lines.append(json.dumps(batch))
    expected["2024-03"] += 25
    return lines, expected


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by .ci/run (apt-get install kcat)")
def test_records_published_with_kcat_appear_in_state_json(settings, worker_process):
    lines, expected = kcat_records()
    worker_process()
    subprocess.run(["kcat", "-b", settings.kafka_bootstrap, "-P", "-t", settings.records_topic],
                   input="\n".join(lines) + "\n", text=True, env=kcat_env(), check=True, timeout=60,
                   capture_output=True)
    deadline = time.monotonic() + 90
    while True:
        rows = json.loads(monitor_cli(settings, "state", "--json", "--model", "kcat-model").stdout)
        counts = {r["month"]: r["counts"]["n"] for r in rows}
        computed = {r["month"]: (r["metrics"] or {}).get("month", {}).get("n") for r in rows}
        if (counts == expected and computed == expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert counts == expected
    assert computed == expected
    assert all(r["model_version"] == "7" for r in rows)
    march = next(r for r in rows if r["month"] == "2024-03")
    assert march["counts"]["bad"] >= 25


def test_produce_file_reference_load_and_state_table(settings, worker_process, tmp_path):
    ref = tmp_path / "test_base.csv"
    ref.write_text("score,TARGET\n" + "".join(f"{(i % 97) / 97:.4f},{int(i % 97 > 60)}\n" for i in range(2000)))
    out = monitor_cli(settings, "reference", "load", "--model", "default", "--file", str(ref))
    assert "2000 scores" in out.stdout and "AUC 1.0000" in out.stdout

    data = tmp_path / "march.json"
    data.write_text(json.dumps([{"REF_DATE": f"2024-0{1 + i % 2}-15", "score": (i % 89) / 89,
                                 "TARGET": None if i % 4 == 0 else int(i % 89 > 50), "income": i * 10.0,
                                 "segment": None} for i in range(700)]))
    worker_process()
    out = monitor_cli(settings, "produce", "--file", str(data), "--model", "default", "--batch", "20")
    assert "published 700 records" in out.stdout
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = json.loads(monitor_cli(settings, "state", "--json").stdout)
        if [r["counts"]["n"] for r in rows] == [350, 350] and all(r["metrics"] for r in rows):
            break
        time.sleep(0.5)
    assert [(r["month"], r["counts"]["n"], r["counts"]["unlabeled"]) for r in rows] == [
        ("2024-01", 350, 175), ("2024-02", 350, 0)]
    assert rows[0]["reference_n"] == 2000
    table = monitor_cli(settings, "state").stdout
    assert "default" in table and "2024-02" in table and "350" in table


def test_produce_rejects_a_file_without_the_score_column(settings, tmp_path):
    data = tmp_path / "x.csv"
    data.write_text("REF_DATE,prob\n2024-01-01,0.3\n")
    out = monitor_cli(settings, "produce", "--file", str(data), "--model", "m", check=False)
    assert out.returncode != 0 and "no score column 'score'" in out.stderr


def test_infra_up_is_idempotent_and_reports_a_taken_port(tmp_path):
    kafka_port, redis_port = infra.free_port(), infra.free_port()
    s = Settings(kafka_bootstrap=f"127.0.0.1:{kafka_port}", redis_url=f"redis://127.0.0.1:{redis_port}/0",
                 run_dir=tmp_path / "run", records_topic="idem-records")
    try:
        first = monitor_cli(s, "infra", "up").stdout
        assert "broker: started" in first and "redis: started" in first and "created" in first
        second = monitor_cli(s, "infra", "up").stdout
        assert "already running" in second and "topics: all present" in second
        status = json.loads(monitor_cli(s, "infra", "status", "--json").stdout)
        assert all(row["running"] and row["listening"] for row in status)

        # Another deployment pointed at a port that is taken gets the fix in the error.
        clash = s.model_copy(update={"run_dir": tmp_path / "other"})
        out = monitor_cli(clash, "infra", "up", check=False)
        assert out.returncode == 1 and "taken by another process" in out.stderr
        assert "MONITOR_KAFKA_BOOTSTRAP" in out.stderr
    finally:
        down = monitor_cli(s, "infra", "down").stdout
    assert "stopped" in down
    assert not any(row["running"] for row in json.loads(monitor_cli(s, "infra", "status", "--json").stdout))


def test_files_outside_the_data_directory_are_refused(settings, tmp_path):
    confined = settings.model_copy(update={"data_dir": tmp_path})
    out = monitor_cli(confined, "produce", "--file", "/etc/hostname", "--model", "m", check=False)
    assert out.returncode == 1 and "outside the data directory" in out.stderr and "MONITOR_DATA_DIR" in out.stderr
    (tmp_path / "link.csv").symlink_to("/etc/hostname")
    out = monitor_cli(confined, "reference", "load", "--model", "m", "--file", str(tmp_path / "link.csv"), check=False)
    assert out.returncode == 1 and "outside the data directory" in out.stderr
