"""`monitor rules export --prometheus`: the file passes `promtool check rules`, and `promtool test rules`
shows its alerts fire where the monitor's rules (with per-model overrides) say they should."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from monitor.ops.processes import settings_env
from monitor.settings import Settings

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool is missing: apt-get install prometheus "
                                                         "(scripts/setup installs it)")
RULES = """
defaults:
  windows: [month]
models:
  lenient: {psi: {warning: 0.2}}
  "lenient:2": {psi: {warning: 0.1}}
  quiet: {ks_adherence: {enabled: false}, psi: {enabled: false}, auc: {enabled: false}}
"""


@pytest.fixture
def exported(tmp_path):
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(RULES)
    settings = Settings(alert_rules_file=rules_file, data_dir=tmp_path, dashboard_url="http://dash:8000")
    out = tmp_path / "credit-monitor.alerts.rules.yml"
    subprocess.run([sys.executable, "-m", "monitor", "rules", "export", "--prometheus", "--output", str(out)],
                   env=settings_env(settings), check=True, capture_output=True, text=True, cwd=tmp_path)
    return out


def test_promtool_checks_the_exported_rules(exported):
    result = subprocess.run([PROMTOOL, "check", "rules", str(exported)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(exported.read_text())["groups"]}
    # the quiet model's entry disables every rule: no group, and the defaults leave it out
    assert set(groups) == {"credit-monitor defaults", "credit-monitor lenient", "credit-monitor lenient:2"}
    assert all('model!="quiet"' in r["expr"] for r in groups["credit-monitor defaults"])


def series(metric: str, model: str, version: str, month: str, value: str) -> dict:
    return {"series": f'{metric}{{model="{model}",version="{version}",month="{month}",window="month"}}',
            "values": value}


def psi_alert(model: str, version: str, month: str, level: float, value: str) -> dict:
    return {"exp_labels": {"severity": "warning", "rule": "psi", "source": "prometheus", "model": model,
                           "version": version, "month": month, "window": "month"},
            "exp_annotations": {"summary": f"score PSI from {level}", "dashboard": "http://dash:8000/",
                                "message": f"score PSI from {level} on {model}:{version}, month window of "
                                           f"{month}: {value}"}}


def test_the_exported_alerts_fire_as_the_rules_say(exported, tmp_path):
    psi, records = "credit_monitor_psi", "credit_monitor_window_records"
    inputs = []
    for model, version, month, value, n in [("plain", "1", "2024-03", "0.15", "900"),  # default 0.10: fires
                                            ("plain", "1", "2024-04", "0.30", "100"),  # too few records
                                            ("lenient", "1", "2024-03", "0.15", "900"),  # its 0.20: quiet
                                            ("lenient", "2", "2024-03", "0.15", "900"),  # lenient:2 0.10: fires
                                            ("quiet", "1", "2024-03", "0.90", "900")]:  # disabled
        inputs += [series(psi, model, version, month, f"{value}x5"), series(records, model, version, month, f"{n}x5")]
    tests = {"rule_files": [str(exported)], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": inputs,
                        "alert_rule_test": [{"eval_time": "2m", "alertname": "CreditMonitorPsi", "exp_alerts": [
                            psi_alert("plain", "1", "2024-03", 0.1, "0.15"),
                            psi_alert("lenient", "2", "2024-03", 0.1, "0.15")]}]}]}
    test_file = tmp_path / "rules_test.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
