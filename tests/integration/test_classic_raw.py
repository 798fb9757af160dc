"""The classic endpoints give the numbers a batch user computes (issue 19): on the bundled LendingClub
data, through the real API (real Redis, the real registry and its ledger), POST /v1/performance and
POST /v1/aderencia/ equal scikit-learn's roc_auc_score and scipy's ks_2samp on the RAW scores (1e-12),
not on the scores binned at MONITOR_RESOLUTION; a card registered before raw reference scores were kept
answers from its histogram and says so.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytest_asyncio
from scipy.stats import ks_2samp
from sklearn.metrics import roc_auc_score

from datasets import load
from models.registry import CARD_FILE, Registry, reference_histogram
from models.train import score_frame, train
from monitor.stats import ScoreHistogram, quantize
from monitor.stats.ks import ks_adherence
from producers.files import read_frame
from tests.conftest import api_client

pytestmark = pytest.mark.integration

NAME = "lendingclub_default"
LIVE_FILE = "lendingclub_2018-03.csv"  # the out-of-time month, without its labels


@pytest.fixture(scope="module")
def lendingclub():
    frame, dcard = load("lendingclub")
    return frame, dcard


@pytest.fixture(scope="module")
def registry(api_settings, data_dir, lendingclub) -> Registry:
    """`monitor models train --dataset lendingclub --kind default` (same call), trusted sha256 in Redis;
    the March records as a file of the data directory."""
    reg = Registry(api_settings.models_dir, settings=api_settings)
    train("lendingclub", "default", NAME, registry=reg)
    frame, _ = lendingclub
    frame[frame.REF_DATE >= "2018-03"].drop(columns=["TARGET"]).to_csv(data_dir / LIVE_FILE, index=False)
    return reg


@pytest_asyncio.fixture(scope="module")
async def client(api_settings, registry):
    async with api_client(api_settings, cache_ttl_s=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def model_scores(registry, lendingclub) -> np.ndarray:
    """The registered model's raw scores of every LendingClub record (what a notebook computes)."""
    frame, _ = lendingclub
    scores, _ = score_frame(registry.load(NAME), frame)
    return scores


def _records(frame, scores) -> list[dict]:
    return [{"REF_DATE": d, "TARGET": int(t), "score": float(s)}
            for d, t, s in zip(frame["REF_DATE"], frame["TARGET"], scores)]


async def test_performance_equals_sklearn_and_scipy_on_the_raw_scores(client, lendingclub, model_scores):
    frame, dcard = lendingclub
    resp = await client.post(f"/v1/performance/{NAME}", json=_records(frame, model_scores))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    y = frame["TARGET"].to_numpy(dtype=int)
    months = frame["REF_DATE"].str.slice(0, 7).to_numpy()
    assert body["scores"] == "raw" and body["volumetry"] == dcard.months
    assert body["auc"] == pytest.approx(roc_auc_score(y, model_scores), abs=1e-12)
    assert body["gini"] == pytest.approx(2 * roc_auc_score(y, model_scores) - 1, abs=1e-12)
    assert body["ks_good_bad"] == pytest.approx(ks_2samp(model_scores[y == 1], model_scores[y == 0]).statistic,
                                                abs=1e-12)
    assert body["auc_bound"] == 0.0
    for row in body["months"]:
        mask = months == row["month"]
        s, t = model_scores[mask], y[mask]
        assert row["auc"] == pytest.approx(roc_auc_score(t, s), abs=1e-12), row["month"]
        assert row["ks_good_bad"] == pytest.approx(ks_2samp(s[t == 1], s[t == 0]).statistic, abs=1e-12), row["month"]
        assert row["gini"] == pytest.approx(2 * row["auc"] - 1, abs=1e-12) and row["auc_bound"] == 0.0
        assert (row["n"], row["n_pos"], row["n_neg"]) == (int(mask.sum()), int(t.sum()), int((t == 0).sum()))
    # The figures: February's 2,988 scores, AUC 0.637582 raw (0.637514 on their 1e-4 bins).
    feb = next(r for r in body["months"] if r["month"] == "2018-02")
    mask = months == "2018-02"
    print(f"\nFebruary AUC raw {feb['auc']:.6f}, binned at 1e-4 "
          f"{roc_auc_score(y[mask], quantize(model_scores[mask], 1e-4)):.6f}")
    assert feb["n"] == 2988 and feb["auc"] != roc_auc_score(y[mask], quantize(model_scores[mask], 1e-4))


async def test_performance_scored_by_the_model_equals_sklearn_on_its_raw_scores(client, lendingclub, model_scores):
    frame, _ = lendingclub
    feb = frame[frame.REF_DATE.str.startswith("2018-02")]
    records = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
               for r in feb.drop(columns=["record_id"]).to_dict("records")]
    body = (await client.post(f"/v1/performance/{NAME}", json=records)).json()
    s, t = model_scores[feb.index.to_numpy()], feb["TARGET"].to_numpy(dtype=int)
    assert body["scored_by_model"] == 2988 and body["scores"] == "raw"
    assert body["auc"] == pytest.approx(roc_auc_score(t, s), abs=1e-12)
    assert body["ks_good_bad"] == pytest.approx(ks_2samp(s[t == 1], s[t == 0]).statistic, abs=1e-12)


async def test_aderencia_equals_scipy_ks_2samp_on_the_raw_scores(client, registry, lendingclub, model_scores,
                                                                  data_dir):
    frame, _ = lendingclub
    card = registry.card(NAME)
    test_rows = frame.REF_DATE.str.startswith("2018-02").to_numpy()
    reference = np.asarray(card.get("reference")["scores"], dtype=float)
    # The card keeps the test split's raw scores, as training scored them (one batch: a score of the
    # whole-dataset batch may differ in its last bit, 7e-18 here).
    test_scores, _ = score_frame(registry.load(NAME), frame[test_rows])
    assert np.array_equal(reference, test_scores)
    assert reference == pytest.approx(model_scores[test_rows], abs=1e-15)
    resp = await client.post("/v1/aderencia/", json={"path": LIVE_FILE, "model": NAME})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    live, _ = score_frame(registry.load(NAME), read_frame(data_dir / LIVE_FILE))
    expected = ks_2samp(live, reference)
    assert body["scores"] == "raw" and body["records"] == 3617 and body["reference_n"] == 2988
    assert body["ks_d"] == pytest.approx(expected.statistic, abs=1e-12)
    assert body["ks_pvalue"] == pytest.approx(expected.pvalue, abs=1e-12)
    assert body["ks_location"] == pytest.approx(expected.statistic_location, abs=1e-12)
    assert body["ks_bound"] == 0.0
    assert (await client.get("/v1/aderencia/")).json()["scores"] == "raw"


async def test_an_older_card_without_raw_scores_answers_from_its_histogram(client, registry, data_dir):
    """A card registered before issue 19 (no raw reference scores): the histogram path, said in the reply."""
    card = registry.card(NAME)
    old = "lendingclub_old"
    fields = {k: v for k, v in card.model_dump().items()
              if k not in ("name", "version", "created", "artifact", "libraries")}
    fields["reference"] = {k: v for k, v in fields["reference"].items() if k != "scores"}
    registered = registry.register(old, registry.load(NAME), fields)
    assert "scores" not in json.loads((registry.path(old, registered.version) / CARD_FILE).read_text())["reference"]
    resp = await client.post("/v1/aderencia/", json={"path": LIVE_FILE, "model": old})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    live, _ = score_frame(registry.load(old), read_frame(data_dir / LIVE_FILE))
    reference = reference_histogram(registry.card(old))
    ks = ks_adherence(ScoreHistogram.from_scores(live, reference.resolution), reference)
    assert body["scores"] == "histogram"
    assert (body["ks_d"], body["ks_pvalue"], body["ks_location"], body["ks_bound"]) == (ks.d, ks.pvalue,
                                                                                        ks.location, ks.bound)
