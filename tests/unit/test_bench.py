"""The benchmark's pure helpers: percentiles, ratios, targets, the table and the JSON schema."""

from __future__ import annotations

import math

import pytest

from monitor.bench import report
from monitor.bench.runner import Options, chunks, parse_args


def memory_point(records: int, hist: int, metrics: int, join: int, join_keys: int = 4096) -> dict:
    """A curve point as ``Bench.month_memory`` writes it: one month, 80 % labelled, bucketed join buffer."""
    groups = {"hist": {"keys": 3, "bytes": hist}, "count": {"keys": 1, "bytes": 168},
              "join": {"keys": join_keys, "bytes": join}}
    if metrics:
        groups["metrics"] = {"keys": 0, "bytes": metrics}
    total = sum(g["bytes"] for g in groups.values())
    return {"records": records, "bytes": total, "bytes_without_metrics": total - metrics,
            **report.split_groups(groups), "waiting_records": records // 5, "groups": groups}


def memory_section() -> dict:
    curve = [memory_point(10_000, 400_000, 0, 70_000, 3_000), memory_point(100_000, 460_000, 2_000, 700_000),
             memory_point(1_000_000, 460_000, 2_000, 7_000_000)]
    return {"curve": curve, **report.memory_summary(curve, listpack_entries=128)}


def complete_doc() -> dict:
    """A document with every section, as the runner writes it."""
    throughput = {key: {"records_per_s": rps, "runs": [{"records_per_s": rps}]} for key, rps in [
        ("raw_single", 320_000.0), ("raw_batched", 600_000.0), ("faust_noop", 15_000.0),
        ("naive_faust_redis", 3_000.0), ("worker_single", 12_500.0), ("worker_batched", 170_000.0)]}
    doc = {
        "schema": report.SCHEMA, "run_id": "abc",
        "machine": {"nproc": 2, "cpu_model": "AMD EPYC", "python": "3.11.7", "ram_gb": 23.5},
        "config": {"batch_size": 100},
        "throughput": throughput,
        "ratios": report.compute_ratios(throughput),
        "latency": [{"metrics_interval_s": 1.0, "default_interval": True, "rate": 5000.0,
                     "alert_ms": report.summarize([900.0, 1100.0, 1300.0]),
                     "state_ms": report.summarize([40.0, 60.0, 80.0]), "caught_up_after_s": 0.1}],
        "memory": memory_section(),
        "rss": {"phases": {"memory": {"start_kb": 150_000, "quarter_kb": 155_000, "max_kb": 158_000,
                                      "end_kb": 157_000, "growth": 0.013}},
                "max_growth": 0.013, "flat": True},
    }
    doc["targets"] = report.evaluate_targets(doc)
    return doc


# ---- numbers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("values, q, expected", [
    ([1, 2, 3, 4, 5], 50, 3.0),
    ([1, 2, 3, 4], 50, 2.5),
    ([5, 1, 4, 2, 3], 0, 1.0),
    ([5, 1, 4, 2, 3], 100, 5.0),
    (list(range(1, 101)), 99, 99.01),
    ([42], 99, 42.0),
])
def test_percentile_interpolates_like_numpy(values, q, expected):
    assert report.percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_numpy_on_random_data():
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(3)
    data = rng.exponential(100.0, size=137).tolist()
    for q in (0, 1, 25, 50, 90, 99, 100):
        assert report.percentile(data, q) == pytest.approx(float(np.percentile(data, q)))


def test_percentile_edge_cases():
    assert report.percentile([], 50) is None
    with pytest.raises(ValueError):
        report.percentile([1.0], 101)


def test_summarize_and_median():
    s = report.summarize([3.0, 1.0, 2.0, 10.0])
    assert s["n"] == 4 and s["min"] == 1.0 and s["max"] == 10.0 and s["mean"] == 4.0
    assert s["p50"] == 2.5 and s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert report.summarize([])["p99"] is None
    assert report.median([None, 4.0, 1.0, None, 2.0]) == 2.0
    assert report.median([None, None]) is None


def test_rate_and_ratio_refuse_unmeasurable_values():
    assert report.rate(200_000, 10.0) == 20_000.0
    assert report.rate(100, 0.0) is None and report.rate(0, 1.0) is None and report.rate(5, -1.0) is None
    assert report.ratio(1.0, 4.0) == 0.25
    assert report.ratio(None, 4.0) is None and report.ratio(1.0, 0.0) is None


def test_compute_ratios_names_every_ratio_and_skips_missing():
    ratios = report.compute_ratios({"worker_single": {"records_per_s": 8.0}, "faust_noop": {"records_per_s": 16.0}})
    assert set(ratios) == {name for name, *_ in report.RATIOS}
    assert ratios["worker_single/faust_noop"] == 0.5
    assert ratios["worker_batched/raw_single"] is None  # not measured: no number, no crash


def test_rss_growth():
    assert report.rss_growth(100, 110) == pytest.approx(0.10)
    assert report.rss_growth(100, 90) == pytest.approx(-0.10)
    assert report.rss_growth(None, 90) is None and report.rss_growth(0, 90) is None


def test_linear_fit_and_memory_extrapolation():
    assert report.linear_fit([(1, 5.0)]) is None
    slope, intercept = report.linear_fit([(0, 2.0), (1, 4.0), (2, 6.0)])
    assert (slope, intercept) == (pytest.approx(2.0), pytest.approx(2.0))
    flat = [{"records": n, "bytes": b} for n, b in [(10_000, 300_000), (100_000, 460_000), (1_000_000, 460_000)]]
    ext = report.extrapolate_memory(flat, 10_000_000)
    assert ext["linear_bytes"] == 460_000 and ext["slope_bytes_per_million_records"] == pytest.approx(0.0)
    growing = [{"records": n, "bytes": n} for n in (10_000, 100_000, 1_000_000)]  # 1 byte per record
    assert report.extrapolate_memory(growing, 10_000_000)["linear_bytes"] == 10_000_000
    assert report.extrapolate_memory([], 10) is None
    # Two snapshots at the same volume count once: the growth between distinct volumes still shows.
    repeated = [{"records": 14_000, "bytes": 700_000}, {"records": 50_000, "bytes": 1_660_000},
                {"records": 50_000, "bytes": 1_662_000}]
    ext = report.extrapolate_memory(repeated, 10_000_000)
    assert ext["slope_bytes_per_million_records"] > 20_000_000 and ext["linear_bytes"] > 200_000_000


# ---- targets and table --------------------------------------------------------------------------------
def test_targets_follow_the_issue():
    doc = complete_doc()
    targets = {t["name"]: t for t in doc["targets"]}
    assert len(targets) == 5
    assert targets["single-record >= 0.8x no-op faust"]["value"] == pytest.approx(12_500 / 15_000)
    assert targets["single-record >= 0.8x no-op faust"]["met"] is True
    assert targets["batched >= 0.5x raw ceiling"]["value"] == pytest.approx(170_000 / 320_000)
    assert targets["batched >= 0.5x raw ceiling"]["met"] is True
    assert targets["publish-to-alert p99 <= 500 ms at 5k rec/s"]["met"] is False  # 1296 ms
    assert targets["Redis monitor state <= 1 MB per (model, month)"]["met"] is True
    assert targets["Redis monitor state <= 1 MB per (model, month)"]["value"] == 462_168  # not the 7.5 MB total
    assert targets["worker RSS flat"]["met"] is True


def test_targets_unmeasured_are_none_not_false():
    targets = report.evaluate_targets({"ratios": {}, "latency": [], "memory": {"skipped": True}, "rss": {}})
    assert [t["met"] for t in targets] == [None] * 5


def test_latency_target_uses_the_default_interval_run_only():
    doc = complete_doc()
    doc["latency"].append({"metrics_interval_s": 0.2, "default_interval": False, "rate": 5000.0,
                           "alert_ms": report.summarize([100.0, 200.0])})
    lat = [t for t in report.evaluate_targets(doc) if t["name"].startswith("publish-to-alert")][0]
    assert lat["value"] == pytest.approx(report.percentile([900.0, 1100.0, 1300.0], 99))


def test_memory_target_uses_the_worst_of_curve_and_extrapolation():
    doc = complete_doc()
    doc["memory"]["extrapolated_10m"]["linear_bytes"] = 2_000_000
    mem = [t for t in report.evaluate_targets(doc) if t["name"].startswith("Redis")][0]
    assert mem["value"] == 2_000_000 and mem["met"] is False


def test_join_buffer_kinds_are_split_from_the_monitor_state():
    assert report.JOIN_BUFFER_KINDS == {"join", "pending", "score"}
    groups = {"hist": {"keys": 3, "bytes": 246_072}, "count": {"keys": 1, "bytes": 168},
              "features": {"keys": 1, "bytes": 1_200}, "metrics": {"keys": 0, "bytes": 2_100},
              "offsets": {"keys": 1, "bytes": 300}, "outcomes": {"keys": 1, "bytes": 100},
              "join": {"keys": 4096, "bytes": 7_000_000}, "pending": {"keys": 10, "bytes": 900}}
    assert report.split_groups(groups) == {"state_bytes": 246_072 + 168 + 1_200 + 2_100 + 300 + 100,
                                           "join_buffer_bytes": 7_000_900, "join_buffer_keys": 4106}
    # The old layout: one string key per unlabelled record, the same buffer.
    old = {"hist": {"keys": 3, "bytes": 246_072}, "score": {"keys": 200_000, "bytes": 27_200_000}}
    assert report.split_groups(old) == {"state_bytes": 246_072, "join_buffer_bytes": 27_200_000,
                                        "join_buffer_keys": 200_000}
    assert report.split_groups({}) == {"state_bytes": 0, "join_buffer_bytes": 0, "join_buffer_keys": 0}


def test_memory_summary_bounds_the_state_and_reports_the_buffer_apart():
    mem = memory_section()
    assert mem["max_bytes_per_model_month"] == 460_000 + 168 + 2_000
    assert mem["max_total_bytes_per_model_month"] == 460_000 + 168 + 2_000 + 7_000_000
    ext = mem["extrapolated_10m"]  # the state no longer grows: flat, plus the metrics field
    assert ext["linear_bytes"] == 460_000 + 168 + 2_000 and ext["slope_bytes_per_million_records"] == 0
    join = mem["join_buffer"]
    assert (join["records"], join["bytes"], join["waiting_records"]) == (1_000_000, 7_000_000, 200_000)
    assert join["bytes_per_waiting_record"] == 35.0 and join["keys"] == 4096
    jext = join["extrapolated_10m"]
    assert (jext["at_records"], jext["waiting_records"], jext["bytes"]) == (10_000_000, 2_000_000, 70_000_000)
    # 488 entries per bucket at 10M, above the 128 a listpack hash holds (49 measured): dearer entries.
    assert jext["encoding_change"] is True and "expect more" in jext["note"]


def test_memory_summary_extrapolates_a_growing_state():
    curve = [memory_point(n, 300_000 + n, 0, n // 5 * 136, n // 5) for n in (10_000, 100_000, 1_000_000)]
    mem = report.memory_summary(curve)
    assert mem["extrapolated_10m"]["linear_bytes"] == 300_168 + 10_000_000  # 1 byte per record
    join = mem["join_buffer"]  # one key per waiting record: per-key count stays 1, no encoding change
    assert join["bytes_per_waiting_record"] == 136.0 and join["extrapolated_10m"]["encoding_change"] is False
    assert join["extrapolated_10m"]["bytes"] == 272_000_000
    assert report.memory_summary([])["join_buffer"] is None


def test_join_buffer_encoding_change_when_the_fullest_buckets_would_change_encoding():
    # The --quick run: 20,000 waiting records in 4,072 buckets, Redis's compiled-in limit of 512.
    curve = [{"records": 100_000, "join_buffer_bytes": 1_080_144, "waiting_records": 20_000,
              "join_buffer_keys": 4072}]
    jext = report.join_buffer_summary(curve, listpack_entries=512)["extrapolated_10m"]
    assert round(jext["waiting_records_per_key"]) == 491  # below 512 on average, not in the fullest buckets
    assert jext["encoding_change"] is True and jext["bytes"] == 108_014_400
    assert report.join_buffer_summary(curve, at_records=1_000_000, listpack_entries=512)[
        "extrapolated_10m"]["encoding_change"] is False  # 49 per bucket: every one stays a listpack
    assert report.join_buffer_summary(curve)["extrapolated_10m"]["encoding_change"] is False  # limit unknown


def test_join_buffer_without_waiting_records():
    curve = [{"records": 50_000, "bytes": 300_000, "state_bytes": 300_000, "join_buffer_bytes": 0,
              "waiting_records": 0, "join_buffer_keys": 0}]
    join = report.join_buffer_summary(curve)
    assert join["bytes"] == 0 and join["bytes_per_waiting_record"] is None
    assert join["extrapolated_10m"]["bytes"] == 0 and join["extrapolated_10m"]["encoding_change"] is False


def test_memory_target_ignores_the_join_buffer():
    doc = complete_doc()
    assert doc["memory"]["max_total_bytes_per_model_month"] > report.MEMORY_TARGET_BYTES
    mem = [t for t in doc["targets"] if t["name"] == report.MEMORY_TARGET_NAME][0]
    assert mem["met"] is True and mem["value"] == doc["memory"]["max_bytes_per_model_month"]
    doc["memory"]["max_bytes_per_model_month"] = 1_000_001  # the state itself over 1 MB: not met
    mem = [t for t in report.evaluate_targets(doc) if t["name"] == report.MEMORY_TARGET_NAME][0]
    assert mem["met"] is False


def test_memory_table_rows_show_state_against_target_and_total_as_info():
    rows = report.table_rows(complete_doc())
    by_name = {r[0]: r for r in rows}
    state = by_name["Redis monitor state per (model, month) at 1,000,000 records"]
    assert state[1:] == ("462,168", "bytes", "<= 1,000,000", "yes")
    i = rows.index(state)
    assert rows[i + 1] == ("  with the label-join buffer (200,000 waiting records)", "7,462,168", "bytes", "", "")
    buffer = [r for r in rows if r[0].startswith("label-join buffer at 1,000,000")]
    assert buffer[0][1:] == ("7,000,000", "bytes", "", "")
    ext = [r for r in rows if r[0].startswith("label-join buffer at 10,000,000")][0]
    assert ext[1] == "70,000,000" and "more: fuller hashes change encoding" in ext[0] and ext[3:] == ("", "")
    names = [r[0] for r in rows]  # under the memory rows, before RSS
    assert names.index(ext[0]) > names.index("Redis monitor state per (model, month) at 10,000,000 (extrapolated)")
    assert names.index(ext[0]) < names.index("worker RSS memory: start / quarter / max / end")


def test_formatting():
    assert report.fmt_number(1234567.4) == "1,234,567"
    assert report.fmt_number(0.8349, 2) == "0.83"
    assert report.fmt_number(None) == "-"
    assert (report.fmt_met(True), report.fmt_met(False), report.fmt_met(None)) == ("yes", "NO", "-")


def test_table_rows_cover_every_section():
    rows = report.table_rows(complete_doc())
    assert all(len(r) == 5 and all(isinstance(c, str) for c in r) for r in rows)
    text = "\n".join(r[0] for r in rows)
    for needle in ("(a) raw aiokafka", "(b) no-op faust", "(c) naive faust", "(d) worker, single",
                   "(d) worker, arrays of 100", "ratio worker_single/faust_noop", "publish-to-alert p99",
                   "publish-to-state", "Redis monitor state per (model, month) at 1,000,000",
                   "monitor state per (model, month) at 10,000,000 (extrapolated)",
                   "of which hist keys (state) at 1,000,000 records (3 keys)",
                   "of which join keys (label-join buffer) at 1,000,000 records (4,096 keys)",
                   "label-join buffer at 1,000,000 records (200,000 waiting): 35 bytes per waiting record",
                   "label-join buffer at 10,000,000 records (2,000,000 waiting, extrapolated",
                   "worker RSS memory", "RSS growth"):
        assert needle in text, needle
    by_name = {r[0]: r for r in rows}
    assert by_name["ratio worker_single/faust_noop"][1:] == ("0.83", "x", ">= 0.8", "yes")
    assert by_name["(b) no-op faust agent"][1] == "15,000"
    md = report.render_table(rows)
    assert md.count("\n") == len(rows) + 1 and md.startswith("| measurement |")


def test_table_rows_survive_a_failed_measurement():
    doc = complete_doc()
    doc["throughput"]["worker_batched"] = {"records_per_s": None, "error": "PhaseError: boom", "runs": []}
    doc["ratios"] = report.compute_ratios(doc["throughput"])
    doc["targets"] = report.evaluate_targets(doc)
    rows = {r[0]: r for r in report.table_rows(doc)}
    assert rows["(d) worker, arrays of 100 (error)"][1] == "-"
    assert rows["ratio worker_batched/raw_single"][1:] == ("-", "x", ">= 0.5", "-")


# ---- JSON schema ----------------------------------------------------------------------------------------
def test_complete_document_validates():
    assert report.validate_report(complete_doc()) == []


def test_validation_reports_missing_sections_and_non_positive_figures():
    doc = complete_doc()
    del doc["memory"]
    assert report.validate_report(doc) == ["missing section memory"]
    doc = complete_doc()
    doc["throughput"]["faust_noop"]["records_per_s"] = 0.0
    doc["ratios"]["worker_single/faust_noop"] = math.nan
    doc["latency"][0]["state_ms"] = report.summarize([])
    doc["rss"]["phases"]["memory"]["end_kb"] = None
    problems = report.validate_report(doc)
    assert any("throughput.faust_noop" in p for p in problems)
    assert any("ratios.worker_single/faust_noop" in p for p in problems)
    assert any("latency[0].state_ms" in p for p in problems)
    assert any("rss.phases.memory.end_kb" in p for p in problems)
    assert report.validate_report(doc, require_positive=False) == []


def test_validation_requires_the_memory_split():
    doc = complete_doc()
    for key in ("state_bytes", "join_buffer_bytes", "waiting_records"):
        del doc["memory"]["curve"][1][key]
    del doc["memory"]["max_total_bytes_per_model_month"]
    del doc["memory"]["join_buffer"]
    problems = report.validate_report(doc)
    for needle in ("memory.curve[1].state_bytes", "memory.curve[1].join_buffer_bytes",
                   "memory.curve[1].waiting_records", "memory.max_total_bytes_per_model_month",
                   "memory.join_buffer is None"):
        assert any(needle in p for p in problems), (needle, problems)
    assert any("memory.curve[1]" in p for p in report.validate_report(doc, require_positive=False))
    doc = complete_doc()
    doc["memory"]["curve"][2]["join_buffer_bytes"] += 1
    assert report.validate_report(doc) == ["memory.curve[2]: state_bytes + join_buffer_bytes != bytes"]
    doc = complete_doc()
    doc["memory"]["join_buffer"]["bytes_per_waiting_record"] = None  # no record waits: allowed
    assert report.validate_report(doc) == []
    del doc["memory"]["join_buffer"]["extrapolated_10m"]
    assert report.validate_report(doc) == ["memory.join_buffer.extrapolated_10m is None"]


def test_skipped_sections_are_not_required_to_be_positive():
    doc = complete_doc()
    doc["memory"] = {"skipped": True}
    doc["latency"] = []
    doc["throughput"] = {key: {"skipped": True, "records_per_s": None} for key in report.THROUGHPUT_KEYS}
    doc["ratios"] = report.compute_ratios(doc["throughput"])
    doc["targets"] = report.evaluate_targets(doc)
    assert report.validate_report(doc) == []


# ---- options ------------------------------------------------------------------------------------------
def test_options_defaults_quick_and_overrides(tmp_path):
    opts = parse_args([])
    assert (opts.records, opts.batch_size, opts.latency_rate, opts.latency_intervals) == (200_000, 100, 5000.0, (2.0, 1.0))
    assert opts.naive_n == 100_000 and opts.memory_records == 1_000_000
    quick = parse_args(["--quick", "--records", "5000", "--json", str(tmp_path / "b.json"), "--skip-memory"])
    assert quick.records == 5000 and quick.naive_n == 5000 and quick.latency_intervals == (2.0,)
    assert quick.skip_memory and not quick.skip_latency and quick.json_path == tmp_path / "b.json"
    assert parse_args(["--latency-intervals", "1.0, 0.5,0.2"]).latency_intervals == (1.0, 0.5, 0.2)
    assert Options(records=50_000, naive_records=None).naive_n == 50_000
    with pytest.raises(SystemExit):
        parse_args(["--records", "1"])


def test_chunks():
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


def test_profile_summary_of_collapsed_stacks():
    site = "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages"
    stdlib = "/root/.pyenv/versions/3.11.7/lib/python3.11"
    text = "\n".join([
        f"<module> (w.py:1);BaseEventLoop._run_once ({stdlib}/asyncio/base_events.py:1);"
        f"EpollSelector.select ({stdlib}/selectors.py:468) 50",
        f"<module> (w.py:1);process (/work/main/monitor/worker/pipeline.py:90);decode_records (/work/main/monitor/schema.py:120);"
        f"validate_python ({site}/pydantic/type_adapter.py:400) 30",
        "<module> (w.py:1);run_once (/work/main/monitor/worker/engine.py:50);compute (/work/main/monitor/stats/summary.py:10) 15",
        f"<module> (w.py:1);process (/work/main/monitor/worker/pipeline.py:90);execute ({site}/redis/asyncio/client.py:600);"
        f"write ({stdlib}/asyncio/selector_events.py:1) 5",
        "garbage line",
    ])
    s = report.profile_summary(text, top=3)
    assert s["samples"] == 100 and s["idle_share"] == 0.5
    cats = s["categories"]
    assert cats["idle"] == 0.5 and cats["pydantic"] == 0.30
    assert cats["metrics engine (monitor.worker.engine, stats, alerts, rules)"] == 0.15
    assert cats["asyncio + stdlib"] == 0.05  # innermost frame with a category wins
    assert cats["redis client (redis-py)"] == 0.0 and cats["other"] == 0.0
    assert abs(sum(cats.values()) - 1.0) < 1e-9
    assert s["top_self"][:2] == [["EpollSelector.select (selectors.py)", 0.5],
                                 ["validate_python (pydantic/type_adapter.py)", 0.3]]
    assert report.profile_summary("") == {"samples": 0}


def test_cpu_rows_in_the_table():
    doc = complete_doc()
    doc["throughput"]["worker_single"]["runs"] = [{"records_per_s": 12_500.0,
                                                   "cpu_percent": {"process": 98.0, "redis": 12.0, "broker": 30.0,
                                                                   "bench": 5.0, "others": 40.0}}]
    rows = report.table_rows(doc)
    i = [r[0] for r in rows].index("(d) worker, single-record msgs")
    assert rows[i + 1][:3] == (report.CPU_LABEL, "98 / 12 / 30 / 5 / 40", "% of a core")


def test_window_cpu_shares():
    from monitor.bench.runner import window_cpu

    usage = [(0.0, 100.0, {"redis": 10.0, "bench": 5.0}), (1.0, 101.0, {"redis": 10.1, "bench": 5.1}),
             (3.0, 104.0, {"redis": 10.3, "bench": 5.3})]
    cpu = window_cpu(usage, 0.5, 2.5, own_cpu_s=1.0)  # samples at 0 and 3 bracket the window
    assert cpu["process"] == 50.0 and cpu["redis"] == 10.0 and cpu["bench"] == 10.0
    assert cpu["machine"] == 133.3 and cpu["others"] == 63.3
    assert window_cpu(usage, 3.5, 4.0, own_cpu_s=0.1) is None  # no sample after the window


def test_profile_summary_per_thread():
    text = "\n".join([
        "thread (1): MainThread;<module> (w.py:1);EpollSelector.select (/x/lib/python3.11/selectors.py:1) 2",
        "thread (1): MainThread;<module> (w.py:1);fold (/w/monitor/worker/pipeline.py:3) 8",
        "thread (2): Thread-1;run (/x/lib/python3.11/site-packages/mode/threads.py:62);"
        "EpollSelector.select (/x/lib/python3.11/selectors.py:1) 9",
        "thread (2): Thread-1;run (/x/lib/python3.11/site-packages/aiokafka/consumer/fetcher.py:9) 1",
    ])
    s = report.profile_summary(text)
    assert s["thread"] == "MainThread" and s["samples"] == 10 and s["samples_all_threads"] == 20
    assert s["idle_share"] == 0.2 and s["categories"]["fold + store (monitor.worker.pipeline, store, agents)"] == 0.8
    assert s["threads"]["Thread-1"]["idle_share"] == 0.9
    assert s["threads"]["Thread-1"]["categories"]["kafka client (aiokafka)"] == 0.1


# --- the latency phase's parts --------------------------------------------------------------------


def test_latency_messages_group_an_episode_and_mark_its_last_message_the_trigger():
    from monitor.bench.runner import latency_messages

    stream = [(-1, {"record_id": "a", "model": "m0"}), (0, {"record_id": "b", "model": "m0"}),
              (0, {"record_id": "c", "model": "m0"}), (0, {"record_id": "d", "model": "m0"}),
              (-1, {"record_id": "e", "model": "m1"})]
    out = latency_messages(stream, 2)
    assert [(i, key, k, trigger) for i, key, _, k, trigger in out] == [
        (0, b"a", -1, False), (1, b"m0", 0, False), (3, b"m0", 0, True), (4, b"e", -1, False)]
    assert [r["record_id"] for r in __import__("orjson").loads(out[1][2])] == ["b", "c"]
    assert __import__("orjson").loads(latency_messages(stream, 1)[0][2])["record_id"] == "a"  # one record: no array


def test_latency_streams_place_one_episode_per_model_among_background_records():
    from monitor.bench.runner import latency_streams

    models = ["lat-00", "lat-01"]
    warm, slots = latency_streams(models, warm_n=10, meas_n=40, episode=5, drift_month="2024-02")
    assert len(warm) == 10 and len(slots) == 40
    assert [i for i, (k, _) in enumerate(slots) if k >= 0] == [*range(5, 10), *range(25, 30)]
    assert all(r["model"] == models[k] and r["ref_date"].startswith("2024-02") for k, r in slots if k >= 0)
    assert all(r["ref_date"].startswith("2024-01") for k, r in slots if k < 0)


def test_episodes_record_sends_alerts_and_latencies():
    from monitor.bench.runner import Episodes

    ep = Episodes(["a", "b"], "2024-02")
    ep.on_sent(0, False, 10.0)
    ep.on_sent(0, True, 11.0)
    ep.on_sent(-1, False, 11.5)
    ep.on_alert({"model": "a", "status": "firing", "month": "2024-02", "window": "rolling"}, 11.9)  # not the month window
    ep.on_alert({"model": "a", "status": "firing", "month": "2024-02", "window": "month", "rule": "psi",
                 "severity": "critical", "emitted_at": "1970-01-01T00:00:11.500000+00:00"}, 12.0)
    ep.state_at[0] = 11.25
    assert ep.waiting_state() == [] and not ep.done()
    s = ep.summary()
    assert s["alert_ms"]["p50"] == 1000.0 and s["alert_from_first_drifted_ms"]["p50"] == 2000.0
    assert s["decision_ms"]["p50"] == 500.0 and s["state_ms"]["p50"] == 250.0
    assert s["missing_alerts"] == ["b"] and s["alert_events_seen"] == 2 and s["first_rules"] == ["psi/month/critical"]
