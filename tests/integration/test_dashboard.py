"""The web dashboard in a real headless Chromium (Debian package `chromium`, installed by scripts/setup):
plotly (the bundled copy, no network) draws every chart with the API's data, the alert table is
filled, and a screenshot is saved as the test artifact artifacts/dashboard.png."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from monitor.ops import infra
from monitor.api.bench import start_api_process, wait_http
from monitor.api.sample import load_scenario
from monitor.ops.processes import stop_process
from monitor.ops.reference import save_reference
from producers.synthetic import SCENARIOS, Scenario
from tests.conftest import API_READ_TOKEN, api_headers

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="no headless browser: apt-get install chromium "
                                                          "(scripts/setup installs it)")]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "artifacts" / "dashboard.png"
DRIFTING = replace(SCENARIOS["demo"], model="application-scorecard", monthly_volume=1500)
STABLE = Scenario(name="stable", model="behaviour-scorecard", model_version="2", months=6, monthly_volume=800,
                  label_fraction=0.7)
WINDOW = (1400, 2000)


def chromium(url: str, profile: Path, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--virtual-time-budget=5000", *extra, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=profile)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


async def test_dashboard_renders_the_charts_with_data(settings, tmp_path):
    await load_scenario(settings, DRIFTING, reference_n=10_000)
    await load_scenario(settings, STABLE, reference_n=5_000)
    await save_reference(settings, "challenger", "1", [0.1, 0.2, 0.3], None, source="test")  # no records yet
    port = infra.free_port()
    api = start_api_process(settings, port, tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_http(base + "/health", 60, api)
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "/dashboard/data", headers=api_headers(API_READ_TOKEN)) as resp:
                data = await resp.json()
        profile = tmp_path / "chromium"
        profile.mkdir()
        # the token in the address once: the API answers with an HttpOnly cookie and a redirect to /
        dom = chromium(base + f"/?token={API_READ_TOKEN}", profile, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        page = dom.stdout
        ARTIFACT.parent.mkdir(exist_ok=True)
        ARTIFACT.unlink(missing_ok=True)
        # a session cookie: the next browser run starts without it
        shot = chromium(base + f"/?token={API_READ_TOKEN}", profile, f"--screenshot={ARTIFACT}")
        assert shot.returncode == 0, shot.stderr[-2000:]
    finally:
        stop_process(api)

    # plotly drew SVG charts (so its bundled script loaded and ran, offline)
    assert 'class="main-svg"' in page
    assert 'data-rendered="8"' in page  # 4 charts for each of the 2 models with records
    found = re.search(r'<pre id="render-report">(.*?)</pre>', page, re.S)
    assert found, "the page did not write its render report"
    report = json.loads(html.unescape(found.group(1)))
    by_model = {m["model"]: m for m in data["models"]}
    assert report["models"] == 3 and set(by_model) == {DRIFTING.model, STABLE.model, "challenger"}
    assert "No records yet (reference loaded: 3 scores)." in page

    for spec in (DRIFTING, STABLE):
        m = by_model[spec.model]
        slug = f"{spec.model}-{spec.model_version}"
        months = m["months"]
        assert len(months) == 6
        volume = report["charts"][f"volume-{slug}"]
        assert volume["svg"] >= 1
        traces = {t["name"]: t for t in volume["traces"]}
        for label in ("bad", "good", "unlabeled"):
            assert traces[label]["x"] == months and traces[label]["y"] == m["counts"][label]
        assert volume["bars"] == 3 * len(months)  # one bar element per month and label
        for chart, field, name in (("auc", "auc", "AUC"), ("ks", "ks_d", "KS D"), ("psi", "psi", "PSI")):
            drawn = report["charts"][f"{chart}-{slug}"]
            assert drawn["svg"] >= 1 and drawn["markers"] == 2 * len(months)
            lines = {t["name"]: t["y"] for t in drawn["traces"]}
            for window in ("month", "rolling"):
                assert lines[f"{name} ({window})"] == pytest.approx(m["series"][window][field], rel=1e-12)
        assert f"{spec.model} : {spec.model_version}" in page
    # the drifting model is alerting and its alert table lists its events
    drifting = by_model[DRIFTING.model]
    assert drifting["firing"] and drifting["alerts"]
    assert f'{len(drifting["firing"])} firing' in page
    assert page.count('<tr class="firing ') + page.count('<tr class="resolved ') >= len(drifting["alerts"])
    assert max(drifting["series"]["month"]["ks_d"]) > drifting["thresholds"]["ks_critical"]
    # nothing was fetched from the network: the only script is the bundled plotly
    assert re.findall(r'<script src="([^"]+)"', page) == ["/static/plotly.min.js"]

    # the screenshot is the artifact: a full-size PNG with content
    assert png_size(ARTIFACT) == WINDOW
    assert ARTIFACT.stat().st_size > 100_000
