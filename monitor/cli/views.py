"""Show the state to people (rich tables): shared by the CLI and the demo; the rows come from
monitor.state.reads.collect_state (the one read layer)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from monitor.state import LABELS


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"
    return str(value)


def drifted_features(row: dict, window: str, threshold: float = 0.10) -> str:
    """Features whose PSI against the reference profile reaches the threshold, worst first."""
    drifts = ((row.get("features") or {}).get(window) or {}).items()
    hits = sorted(((d["psi"], f) for f, d in drifts if d.get("psi") is not None and d["psi"] >= threshold), reverse=True)
    return ", ".join(f"{f} {psi:.2f}" for psi, f in hits) or "-"


def state_table(rows: list[dict], window: str = "month") -> Table:
    table = Table(title=f"credit-monitor state ({window} window)", header_style="bold")
    for col in ("model", "ver", "month", "n", "labelled", "coverage", "bad rate", "AUC (±bound)", "Gini", "KS g/b",
                "KS adh. D", "p-value", "PSI", "drifted features", "firing alerts"):
        table.add_column(col, justify="left" if col in ("model", "ver", "month", "drifted features", "firing alerts") else "right")
    for row in rows:
        c = row["counts"]
        m = (row["metrics"] or {}).get(window) or {}
        auc = m.get("auc")
        auc_text = "-" if auc is None else f"{auc:.4f} ±{m['auc_bound']:.1e}"
        coverage = row["label_coverage"]
        table.add_row(row["model"], row["model_version"], row["month"], str(c["n"]), str(c[LABELS[0]] + c[LABELS[1]]),
                      "-" if coverage is None else f"{coverage:.0%}",
                      _fmt(m.get("bad_rate")), auc_text, _fmt(m.get("gini")), _fmt(m.get("ks_good_bad")),
                      _fmt(m.get("ks_d")), _fmt(m.get("ks_pvalue"), 2), _fmt(m.get("psi")),
                      drifted_features(row, window),
                      ", ".join(row["firing_alerts"]) or "-",
                      style="red" if row["firing_alerts"] else None)
    return table


def print_state(rows: list[dict], console: Console | None = None, window: str = "month") -> None:
    (console or Console()).print(state_table(rows, window))


def alert_line(event: dict) -> str:
    colour = "red" if event["status"] == "firing" and event["severity"] == "critical" else \
        "yellow" if event["status"] == "firing" else "green"
    value = "-" if event.get("value") is None else f"{event['value']:.4f}"
    return (f"[{colour}]{event['status'].upper():8}[/] {event.get('phase', 'final'):11} {event['severity']:8} "
            f"{event['model']}:{event['model_version']} "
            f"{event['month']} {event['window']:8} {event['rule']:12} value={value} threshold={event['threshold']} n={event['n']} "
            f"— {event['message']}")
