"""The web dashboard at ``/``: per model, monthly volumetry bars, AUC and KS / PSI lines with their
threshold bands, and the alert table. Charts are drawn by plotly.js served from the copy bundled in
the plotly wheel (``/static/plotly.min.js``): the page needs no network.

The page embeds the data it was rendered with (so it draws at once, even in a headless browser)
and refreshes from ``/dashboard/data`` every 15 s. After drawing, it writes what plotly rendered
(traces, points, SVG count per chart) into ``#render-report``, which the browser test reads.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from functools import lru_cache

import orjson
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from monitor.alerts.lifecycle import parse_alert_field
from monitor.api.cache import cache_key
from monitor.api.responses import JSONBytes, dumps
from monitor.state import reads

router = APIRouter(tags=["dashboard"])
ALERTS_PER_MODEL = 50
HISTORY_READ = 2000
CHART_WINDOWS = ("month", "rolling")


@lru_cache(maxsize=1)
def plotly_js() -> tuple[bytes, bytes, str]:
    """plotly.min.js from the installed plotly package (offline), its gzip and an ETag."""
    from plotly.offline import get_plotlyjs

    raw = get_plotlyjs().encode()
    return raw, gzip.compress(raw, 6), hashlib.sha256(raw).hexdigest()[:16]


def _series(rows: list[dict], window: str, field: str) -> list:
    return [((row.get("windows") or {}).get(window) or {}).get(field) for row in rows]


async def dashboard_data(request: Request) -> dict:
    """Everything the page draws, per model (months in order), plus the worker counters."""
    app = request.app
    store = app.state.store
    config = app.state.alert_config
    state = await reads.full_state(store)
    history = await reads.alert_history(store, limit=HISTORY_READ)
    counters = await reads.worker_counters(store)
    models = []
    for entry in state:
        model, version = entry["model"], entry["model_version"]
        rules = config.rules_for(model, version)
        rows = entry["months"]
        reference_auc = (entry.get("reference") or {}).get("auc")
        models.append({
            "model": model, "model_version": version, "reference": entry.get("reference"),
            "months": [r["month"] for r in rows],
            "counts": {label: [r["counts"][label] for r in rows] for label in ("n", "bad", "good", "unlabeled")},
            "series": {w: {f: _series(rows, w, f) for f in ("n", "auc", "gini", "ks_d", "ks_pvalue", "psi")}
                       for w in CHART_WINDOWS},
            "thresholds": {
                "auc_floor": rules.auc.floor, "auc_reference": reference_auc,
                "auc_warning": None if reference_auc is None else reference_auc - rules.auc.max_drop,
                "ks_warning": rules.ks_adherence.warning, "ks_critical": rules.ks_adherence.critical,
                "psi_warning": rules.psi.warning, "psi_critical": rules.psi.critical,
                "min_records": rules.min_records},
            "firing": [{**s, **dict(zip(("rule", "window", "month"), parse_alert_field(k, s), strict=True)),
                        "phase": s.get("phase", "final")}
                       for k, s in sorted(entry["alert_states"].items()) if s.get("status") == "firing"],
            "alerts": [e for e in history if e.get("model") == model and e.get("model_version") == version
                       ][:ALERTS_PER_MODEL],
        })
    return {"generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "key_prefix": app.state.settings.key_prefix, "worker": counters, "models": models}


@router.get("/dashboard/data", summary="The dashboard's data (JSON)")
async def data(request: Request) -> JSONBytes:
    """Per model: months, counts by label, AUC / KS D / PSI per window, thresholds, firing alerts, alert history."""
    async def produce() -> bytes:
        return dumps(await dashboard_data(request))

    return JSONBytes(await request.app.state.response_cache.get(cache_key(request.scope), produce))


@router.get("/static/plotly.min.js", include_in_schema=False)
async def plotly(request: Request) -> Response:
    raw, gz, etag = plotly_js()
    headers = {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=86400", "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(gz, media_type="application/javascript", headers={**headers, "Content-Encoding": "gzip"})
    return Response(raw, media_type="application/javascript", headers=headers)


def embed_json(data: dict) -> str:
    """JSON safe inside a <script> element (no ``<`` at all).

    >>> embed_json({"m": "</script>"})
    '{"m":"\\\\u003c/script>"}'
    """
    return orjson.dumps(data).decode().replace("<", "\\u003c")


@router.get("/", response_class=HTMLResponse, summary="Web dashboard")
async def page(request: Request) -> HTMLResponse:
    """The dashboard page (HTML; charts drawn in the browser by the bundled plotly.js)."""
    return HTMLResponse(PAGE.replace("__DATA__", embed_json(await dashboard_data(request))))


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>credit-monitor</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; background: #f4f6f8; color: #1d2733; }
  header { background: #1d2733; color: #fff; padding: 14px 24px; display: flex; align-items: baseline; gap: 24px; }
  header h1 { font-size: 20px; margin: 0; }
  header .meta { font-size: 13px; color: #b8c4d0; }
  main { padding: 16px 24px; }
  section.model { background: #fff; border-radius: 8px; box-shadow: 0 1px 3px rgba(0,0,0,.12); margin-bottom: 24px; padding: 12px 16px; }
  section.model h2 { font-size: 18px; margin: 4px 0 8px; }
  .badge { display: inline-block; border-radius: 10px; padding: 1px 9px; font-size: 12px; margin-left: 8px; color: #fff; }
  .badge.ok { background: #2e7d32; } .badge.warning { background: #ef8f00; } .badge.critical { background: #c62828; }
  .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
  .chart { height: 300px; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; margin-top: 8px; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e7eb; vertical-align: top; white-space: nowrap; }
  td:last-child { white-space: normal; }
  th { background: #eef1f4; }
  tr.firing.critical td { background: #fdecea; } tr.firing.warning td { background: #fff4e0; }
  tr.resolved td { color: #55606b; }
  .empty { color: #6b7785; font-style: italic; padding: 24px; }
  #render-report { display: none; }
</style>
</head>
<body>
<header><h1>credit-monitor</h1><span class="meta" id="meta"></span></header>
<main id="models"></main>
<pre id="render-report"></pre>
<script id="dashboard-data" type="application/json">__DATA__</script>
<script src="/static/plotly.min.js"></script>
<script>
"use strict";
const COLORS = {bad: "#c62828", good: "#2e7d32", unlabeled: "#90a4ae", month: "#1565c0", rolling: "#8e24aa"};
const CONFIG = {displaylogo: false, responsive: true};

function band(y0, y1, color) {
  return {type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: y0, y1: y1, fillcolor: color,
          opacity: 0.13, line: {width: 0}, layer: "below"};
}
function hline(y, color, dash) {
  return {type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: y, y1: y, line: {color: color, width: 1.5, dash: dash}};
}
function layout(title, ytitle, extra) {
  return Object.assign({title: {text: title, font: {size: 14}, x: 0.01, xanchor: "left"}, margin: {l: 55, r: 15, t: 40, b: 40},
    xaxis: {type: "category", title: {text: "month"}}, yaxis: {title: {text: ytitle}},
    legend: {orientation: "h", y: -0.22}, hovermode: "x unified"}, extra || {});
}
function maxOf(values, floor) {
  return values.reduce((m, v) => (v === null || v === undefined) ? m : Math.max(m, v), floor);
}
function lines(m, field, label) {
  return ["month", "rolling"].map(w => ({type: "scatter", mode: "lines+markers", name: label + " (" + w + ")",
    x: m.months, y: m.series[w][field], line: {color: COLORS[w], width: w === "month" ? 2.5 : 1.5,
    dash: w === "month" ? "solid" : "dot"}, connectgaps: false}));
}
function charts(m) {
  const t = m.thresholds;
  const volume = {
    data: ["bad", "good", "unlabeled"].map(label => ({type: "bar", name: label, x: m.months, y: m.counts[label],
      marker: {color: COLORS[label]}})),
    layout: layout("Records per month", "records", {barmode: "stack"})};
  const aucShapes = [band(0, t.auc_floor, "#c62828"), hline(t.auc_floor, "#c62828", "dash")];
  if (t.auc_warning !== null) aucShapes.push(band(t.auc_floor, t.auc_warning, "#ef8f00"), hline(t.auc_reference, "#2e7d32", "dot"));
  const aucValues = m.series.month.auc.concat(m.series.rolling.auc).filter(v => v !== null);
  const aucLow = Math.min(0.4, aucValues.length ? Math.min.apply(null, aucValues) - 0.05 : 0.4);
  const auc = {data: lines(m, "auc", "AUC"),
    layout: layout("ROC AUC (floor " + t.auc_floor + (t.auc_reference !== null ? ", ref. " + t.auc_reference.toFixed(3) : "") + ")",
                   "AUC", {yaxis: {title: {text: "AUC"}, range: [Math.max(0, aucLow), 1]}, shapes: aucShapes})};
  const ksTop = Math.max(t.ks_critical * 1.6, maxOf(m.series.month.ks_d.concat(m.series.rolling.ks_d), 0) * 1.15);
  const ks = {data: lines(m, "ks_d", "KS D"),
    layout: layout("KS adherence D (warning " + t.ks_warning + ", critical " + t.ks_critical + ")", "D",
      {yaxis: {title: {text: "D"}, range: [0, ksTop]},
       shapes: [band(t.ks_warning, t.ks_critical, "#ef8f00"), band(t.ks_critical, ksTop, "#c62828")]})};
  const psiTop = Math.max(t.psi_critical * 1.6, maxOf(m.series.month.psi.concat(m.series.rolling.psi), 0) * 1.15);
  const psi = {data: lines(m, "psi", "PSI"),
    layout: layout("PSI (warning " + t.psi_warning + ", critical " + t.psi_critical + ")", "PSI",
      {yaxis: {title: {text: "PSI"}, range: [0, psiTop]},
       shapes: [band(t.psi_warning, t.psi_critical, "#ef8f00"), band(t.psi_critical, psiTop, "#c62828")]})};
  return {volume: volume, auc: auc, ks: ks, psi: psi};
}
function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); }
function fmt(v) { return (v === null || v === undefined) ? "-" : (typeof v === "number" ? v.toFixed(4) : String(v)); }
function alertTable(m) {
  const table = document.createElement("table");
  table.className = "alerts";
  const head = table.createTHead().insertRow();
  ["emitted", "status", "phase", "severity", "window", "month", "rule", "value", "threshold", "n", "message"].forEach(h => {
    const th = document.createElement("th"); th.textContent = h; head.appendChild(th); });
  const body = table.createTBody();
  if (!m.alerts.length) {
    const row = body.insertRow(); const td = row.insertCell(); td.colSpan = 11; td.className = "empty";
    td.textContent = "no alert events";
  }
  m.alerts.forEach(e => {
    const row = body.insertRow();
    row.className = e.status + " " + e.severity;
    [String(e.emitted_at).replace("T", " ").slice(0, 19), e.status, e.phase || "final", e.severity, e.window, e.month, e.rule,
     fmt(e.value), fmt(e.threshold), String(e.n), e.message].forEach(v => cell(row, v));
  });
  return table;
}
function slug(m) { return (m.model + "-" + m.model_version).replace(/[^A-Za-z0-9_-]/g, "_"); }
function render(data) {
  document.getElementById("meta").textContent = "prefix " + data.key_prefix + " \\u00b7 " + data.models.length +
    " model(s) \\u00b7 worker: " + (data.worker.records || 0) + " records, " + (data.worker.dead_lettered || 0) +
    " dead-lettered \\u00b7 updated " + data.generated_at;
  const root = document.getElementById("models");
  if (!data.models.length) {
    root.innerHTML = "";
    const p = document.createElement("p"); p.className = "empty";
    p.textContent = "No model is monitored yet: publish records (monitor produce) and run a worker.";
    root.appendChild(p);
  }
  const drawn = [];
  data.models.forEach(m => {
    const id = slug(m);
    let section = document.getElementById("model-" + id);
    if (!section) {
      section = document.createElement("section"); section.className = "model"; section.id = "model-" + id;
      const h2 = document.createElement("h2"); section.appendChild(h2);
      const grid = document.createElement("div"); grid.className = "grid"; section.appendChild(grid);
      ["volume", "auc", "ks", "psi"].forEach(kind => {
        const div = document.createElement("div"); div.className = "chart"; div.id = kind + "-" + id; grid.appendChild(div); });
      const h3 = document.createElement("h3"); h3.textContent = "Alerts"; section.appendChild(h3);
      const holder = document.createElement("div"); holder.className = "alert-table"; section.appendChild(holder);
      root.appendChild(section);
    }
    const worst = m.firing.some(f => f.severity === "critical") ? "critical" : (m.firing.length ? "warning" : "ok");
    const h2 = section.querySelector("h2");
    h2.textContent = m.model + " : " + m.model_version;
    const badge = document.createElement("span"); badge.className = "badge " + worst;
    badge.textContent = m.firing.length ? m.firing.length + " firing" : "ok"; h2.appendChild(badge);
    const grid = section.querySelector(".grid");
    let note = section.querySelector(".no-records");
    if (!m.months.length) {
      grid.style.display = "none";
      if (!note) { note = document.createElement("p"); note.className = "empty no-records"; section.insertBefore(note, grid); }
      note.textContent = "No records yet" + (m.reference ? " (reference loaded: " + m.reference.n + " scores)" : "") + ".";
    } else {
      grid.style.display = "";
      if (note) note.remove();
      const c = charts(m);
      Object.keys(c).forEach(kind => {
        const div = document.getElementById(kind + "-" + id);
        drawn.push(Plotly.react(div, c[kind].data, c[kind].layout, CONFIG).then(() => div));
      });
    }
    const holder = section.querySelector(".alert-table"); holder.innerHTML = ""; holder.appendChild(alertTable(m));
  });
  return Promise.all(drawn).then(divs => {
    const report = {models: data.models.length, charts: {}};
    divs.forEach(div => {
      report.charts[div.id] = {
        svg: div.querySelectorAll(".main-svg").length,
        bars: div.querySelectorAll(".barlayer .point").length,
        markers: div.querySelectorAll(".scatterlayer .point").length,
        traces: div._fullData.map(t => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || [])}))};
    });
    document.getElementById("render-report").textContent = JSON.stringify(report);
    document.body.setAttribute("data-rendered", String(divs.length));
  });
}
render(JSON.parse(document.getElementById("dashboard-data").textContent));
setInterval(() => fetch("/dashboard/data").then(r => r.json()).then(render).catch(() => {}), 15000);
</script>
</body>
</html>
"""
