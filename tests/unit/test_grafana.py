"""The Grafana provisioning and dashboard: they parse, docker-compose mounts them where Grafana reads
them, every query uses the provisioned datasource and only metric names the exporter really exposes.
(tests/integration/test_prometheus.py also runs every query against a real Prometheus.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from monitor.api.metrics import EXPOSED_NAMES

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
DASHBOARD = GRAFANA / "dashboards" / "credit-monitor.json"
METRIC = re.compile(r"\bcredit_monitor_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def datasource() -> dict:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return source


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target and every query variable."""
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            out.append((f"${var['name']}", query))
    return out


def test_datasource_is_the_compose_prometheus(datasource):
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["uid"] and datasource["isDefault"] is True
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "prometheus" in compose["services"]
    assert any(str(p).split(":")[-1] == "9090" for p in compose["services"]["prometheus"]["ports"])


def test_compose_mounts_the_provisioning_where_grafana_reads_it():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {m.split(":")[0]: m.split(":")[1] for m in compose["services"]["grafana"]["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    for local in mounts:
        if local.startswith("./"):
            assert (ROOT / local).is_dir(), local


def test_dashboard_parses_and_has_the_panels(dashboard):
    assert dashboard["uid"] == "credit-monitor" and dashboard["title"]
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for words in ("Records per month", "AUC", "KS adherence", "PSI", "Alert", "lag"):
        assert words in titles, words
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel.get("targets"), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_every_query_uses_the_provisioned_datasource(dashboard, datasource):
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}, panel["title"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == datasource["uid"]


def test_every_metric_name_is_one_the_exporter_exposes(dashboard):
    used = set()
    for title, expr in panel_queries(dashboard):
        names = set(METRIC.findall(expr))
        assert names, f"{title}: no credit_monitor metric in {expr!r}"
        unknown = names - EXPOSED_NAMES
        assert not unknown, f"{title}: {sorted(unknown)} are not exposed by monitor.api.metrics"
        used |= names
    # the headline metrics are on the dashboard
    assert {"credit_monitor_records", "credit_monitor_auc", "credit_monitor_ks_adherence_d", "credit_monitor_psi",
            "credit_monitor_alerts_firing", "credit_monitor_consumer_lag",
            "credit_monitor_worker_records_total"} <= used


def test_threshold_panels_match_the_default_alert_thresholds(dashboard):
    from monitor.alerts.rules import RuleSet

    rules = RuleSet()
    steps = {}
    for panel in dashboard["panels"]:
        values = [s["value"] for s in panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])]
        steps[panel["title"].split(" per month")[0]] = values
    assert steps["KS adherence D"] == [None, rules.ks_adherence.warning, rules.ks_adherence.critical]
    assert steps["PSI"] == [None, rules.psi.warning, rules.psi.critical]
    assert rules.auc.floor in steps["ROC AUC"]
