"""`monitor rules export --prometheus`: Prometheus alerting rules over the gauges of ``GET /metrics``.

For teams that alert from Prometheus rather than from the alert events (`monitor notify`): the rules
file in force (``MONITOR_ALERT_RULES_FILE`` over the environment's thresholds, monitor/alerts/rules.py)
becomes one rule group per scope: the defaults, each model entry and each ``model:version`` entry,
every scope leaving out the models a narrower entry covers (``unless on(model, version)``).

What the gauges allow: KS adherence (D above the level and p-value below alpha), PSI, and the AUC
floor, per configured window, once the window has ``min_records`` records (all records, labelled or
not: the labelled count is not exported). The AUC drop from the reference, feature PSI and the volume
rule need figures the exporter does not carry, and Prometheus has no provisional/final phase: those
stay with the worker's alert events. Alert names equal `monitor notify`'s (``CreditMonitorPsi``...),
with the label ``source="prometheus"``: route one path or the other to people, not both.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from monitor.alerts.notify import alertname
from monitor.alerts.rules import AlertConfig, RuleSet
from monitor.schema import model_key, split_model_key

JOIN = "on(model, version, month, window)"
# The per-window gauges of `GET /metrics` (monitor/api/metrics.py exports them): name -> (field, help).
WINDOW_METRICS = {
    "credit_monitor_window_records": ("n", "Records in the window (month, rolling or cumulative)."),
    "credit_monitor_bad_rate": ("bad_rate", "Share of bads among labelled records in the window."),
    "credit_monitor_auc": ("auc", "ROC AUC of the window (exact on quantized scores)."),
    "credit_monitor_auc_bound": ("auc_bound", "Bound on |AUC(raw scores) - AUC|."),
    "credit_monitor_gini": ("gini", "Gini = 2 AUC - 1."),
    "credit_monitor_ks_good_bad": ("ks_good_bad", "KS separation of bads and goods."),
    "credit_monitor_ks_adherence_d": ("ks_d", "KS adherence D of the window's scores against the reference."),
    "credit_monitor_ks_adherence_pvalue": ("ks_pvalue", "p-value of the KS adherence test."),
    "credit_monitor_ks_adherence_critical": ("ks_critical", "Critical D of the KS adherence test at alpha 0.05."),
    "credit_monitor_psi": ("psi", "PSI of the window's scores against the reference's deciles."),
}

METRIC = {field: name for name, (field, _) in WINDOW_METRICS.items()}
RECORDS = METRIC["n"]


@dataclass(frozen=True)
class Scope:
    """Which (model, version) series a rule group judges."""

    name: str
    matchers: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...] = ()


def scopes(config: AlertConfig) -> list[tuple[Scope, RuleSet]]:
    """The defaults' scope and one per rules-file entry, each with the rules in force there.

    >>> cfg = AlertConfig.model_validate({"models": {"a": {"psi": {"warning": 0.2}}, "a:2": {}, "b:1": {}}})
    >>> [(s.name, s.matchers, s.excluded) for s, _ in scopes(cfg)]  # doctest: +NORMALIZE_WHITESPACE
    [('defaults', ('model!="a"',), (('b', '1'),)), ('a', ('model="a"',), (('a', '2'),)),
     ('a:2', ('model="a"', 'version="2"'), ()), ('b:1', ('model="b"', 'version="1"'), ())]
    >>> [rules.psi.warning for _, rules in scopes(cfg)]
    [0.1, 0.2, 0.2, 0.1]
    """
    bare = sorted(k for k in config.models if ":" not in k)
    pairs = sorted(split_model_key(k) for k in config.models if ":" in k)
    out = [(Scope("defaults", tuple(f'model!="{m}"' for m in bare),
                  tuple(p for p in pairs if p[0] not in bare)), config.defaults)]
    for model in bare:
        out.append((Scope(model, (f'model="{model}"',), tuple(p for p in pairs if p[0] == model)),
                    config.rules_for(model, "\0any other version")))
    for model, version in pairs:
        out.append((Scope(model_key(model, version), (f'model="{model}"', f'version="{version}"')),
                    config.rules_for(model, version)))
    return out


def selector(metric: str, scope: Scope, windows: tuple[str, ...]) -> str:
    """
    >>> selector("credit_monitor_psi", Scope("a", ('model="a"',)), ("month", "rolling"))
    'credit_monitor_psi{model="a",window=~"month|rolling"}'
    """
    window = 'window=~"' + "|".join(windows) + '"'
    return metric + "{" + ",".join([*scope.matchers, window]) + "}"


def expression(condition: str, scope: Scope, rules: RuleSet) -> str:
    """``condition`` where the window holds ``min_records``, outside the narrower scopes."""
    expr = f"{condition}\nand {JOIN} {selector(RECORDS, scope, rules.windows)} >= {rules.min_records}"
    for model, version in scope.excluded:
        expr += f'\nunless on(model, version) {RECORDS}{{model="{model}",version="{version}"}}'
    return expr


def alert(rule: str, severity: str, expr: str, summary: str, dashboard_url: str) -> dict:
    return {"alert": alertname(rule), "expr": expr,
            "labels": {"severity": severity, "rule": rule, "source": "prometheus"},
            "annotations": {"summary": summary,
                            "message": f"{summary} on {{{{ $labels.model }}}}:{{{{ $labels.version }}}}, "
                                       f"{{{{ $labels.window }}}} window of {{{{ $labels.month }}}}: {{{{ $value }}}}",
                            "dashboard": dashboard_url.rstrip("/") + "/"}}


def scope_rules(scope: Scope, rules: RuleSet, dashboard_url: str) -> list[dict]:
    """The alerting rules of one scope (disabled rules left out)."""
    out = []

    def sel(field: str) -> str:
        return selector(METRIC[field], scope, rules.windows)

    ks = rules.ks_adherence
    if ks.enabled:
        for severity, level in (("warning", ks.warning), ("critical", ks.critical)):
            out.append(alert("ks_adherence", severity, expression(
                f"{sel('ks_d')} > {level}\nand {JOIN} {sel('ks_pvalue')} < {ks.alpha}", scope, rules),
                f"KS adherence D above {level} (p < {ks.alpha})", dashboard_url))
    if rules.psi.enabled:
        for severity, level in (("warning", rules.psi.warning), ("critical", rules.psi.critical)):
            out.append(alert("psi", severity, expression(f"{sel('psi')} >= {level}", scope, rules),
                             f"score PSI from {level}", dashboard_url))
    if rules.auc.enabled:
        out.append(alert("auc", "critical", expression(f"{sel('auc')} < {rules.auc.floor}", scope, rules),
                         f"AUC below the floor {rules.auc.floor}", dashboard_url))
    return out


def prometheus_rules(config: AlertConfig, dashboard_url: str) -> dict:
    """The rules file (``groups``) for Prometheus's ``rule_files``."""
    groups = []
    for scope, rules in scopes(config):
        found = scope_rules(scope, rules, dashboard_url)
        if found:
            groups.append({"name": f"credit-monitor {scope.name}", "rules": found})
    return {"groups": groups}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the expressions) as literal blocks, as people write them."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def prometheus_rules_yaml(config: AlertConfig, dashboard_url: str) -> str:
    header = ("# Generated by `monitor rules export --prometheus` from the alert rules in force (monitor/alerts/rules.py);\n"
              "# over the gauges of `monitor api` /metrics. Check: promtool check rules <this file>\n")
    return header + yaml.dump(prometheus_rules(config, dashboard_url), Dumper=_Dumper, sort_keys=False, width=1000)
