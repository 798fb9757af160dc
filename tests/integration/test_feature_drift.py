"""Feature drift through the real pipeline: the drifted feature is flagged, the stable ones are not."""

from __future__ import annotations

import orjson
import pytest

from monitor.ops.reference import save_reference
from monitor.state import Store
from producers.synthetic import Scenario, reference_frame
from tests.integration.test_alert_engine import stream_month_by_month
from tests.integration.test_worker import consume_all

pytestmark = pytest.mark.integration

SPEC = Scenario(name="features", model="features", months=4, monthly_volume=1500, drift_start=2,
                population_shift=0.8, drifted_features=("utilization",))


async def test_a_drifted_feature_is_flagged_and_stable_ones_are_not(settings, worker_process):
    ref = reference_frame(SPEC, n=10_000)
    card = await save_reference(settings, SPEC.model, "1", ref["score"].to_numpy(), ref["TARGET"].to_numpy(),
                                source="test", features=ref.drop(columns=["score", "TARGET"]))
    assert "utilization" in card["features"]
    worker = worker_process()
    await stream_month_by_month(settings, [SPEC], worker)

    store = Store.connect(settings)
    try:
        metrics = await store.metrics(SPEC.model, "1")
    finally:
        await store.close()
    before, after = metrics["2024-02"]["features"]["month"], metrics["2024-04"]["features"]["month"]
    assert after["utilization"]["psi"] > 0.25 and after["utilization"]["ks_pvalue"] < 1e-6
    for stable in ("age", "months_employed", "home_ownership", "purpose"):
        assert after[stable]["psi"] < 0.05, (stable, after[stable])
    assert all(d["psi"] < 0.05 for d in before.values()), before
    assert after["purpose"]["chi2_pvalue"] is not None and after["age"]["ks_d"] is not None
    assert after["utilization"]["n"] == 1500

    events = [orjson.loads(m.value) for m in await consume_all(settings, settings.alerts_topic, 10_000, timeout_s=6)]
    flagged = {e["rule"] for e in events if e["status"] == "firing" and e["rule"].startswith("feature_psi:")}
    assert "feature_psi:utilization" in flagged
    assert not flagged & {f"feature_psi:{f}" for f in ("age", "months_employed", "home_ownership", "purpose")}
