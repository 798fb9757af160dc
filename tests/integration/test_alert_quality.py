"""The alert-quality benchmark on the real worker at its smallest size.

Asserts the harness: every closed month judged in batch, the events read back from the alerts topic
(as many as the worker's history holds), the figures present. The quality targets of issue 15 are
asserted only when the engine sends phases (the provisional/final engine); before it, they are printed.
"""

from __future__ import annotations

import pytest

from monitor.bench import alerts as ab

pytestmark = pytest.mark.integration

# 1,000 records a month at 500/s: 2 s a month, longer than the bench month settle time (1.5 s)
TINY = ab.Scale(monthly_volume=1000, months=5, drift_start=4, many_models=2, many_volume=600, rate=500)
CHOSEN = ("quiet-ordered", "quiet-late-5pct", "score_shift-shuffled")
FIGURES = ("truth_judged", "truth_firing", "final_false_alarms", "final_misses", "agreement_pct",
           "quantization_disagreements", "provisional_false_alarms", "max_events_per_key", "events_per_key",
           "detection", "targets", "redis", "event_log")


@pytest.mark.parametrize("name", CHOSEN)
def test_alert_quality_scenario(servers, tmp_path, name):
    scenario = next(s for s in ab.build_scenarios(TINY) if s.name == name)
    base = servers.model_copy(update={k: v for k, v in ab.BENCH_SETTINGS.items() if k in type(servers).model_fields})
    report = ab.run_scenario(scenario, base, tmp_path, TINY.rate)
    print(ab.format_line(report))

    assert all(key in report for key in FIGURES)
    # 5 closed months x 2 windows x 3 score rules, + the volume rule of the 5 closed months
    assert report["truth_judged"] == 5 * 2 * 3 + 5
    assert report["records"] == 5 * 1000 + 4  # + one closing record per partition
    assert len(report["event_log"]) == report["events"] == report["history_events"]
    assert all(e["month"] and e["phase"] in ("provisional", "final") for e in report["event_log"])
    assert sum(int(k) * v for k, v in report["events_per_key"].items()) == report["events"]
    if scenario.quiet:
        assert report["truth_firing"] == 0 and report["detection"] is None
    else:
        assert report["truth_firing"] > 0
        assert report["detection"]["drift_month"] == "2024-05"
    if report["phase_seen"]:  # the provisional/final engine: the targets
        unmet = [t for t in report["targets"] if not t["met"]]
        assert unmet == [], unmet
