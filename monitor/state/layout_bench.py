"""Benchmark: time to compute every metric of one (model, month) read from Redis.

``python -m monitor.state.layout_bench [--redis-url URL]`` writes one month of histograms
(pos / neg / unlabeled, about 10,000 distinct bins in total) and a reference in the store's
layout (one dense big-endian int64 string per histogram, see monitor/state/store.py), then times
the read (one pipelined round trip of GETs, redis-py + hiredis) + parsing +
``compute_metrics``; for comparison the same data as Redis hashes (HGETALL), and a raw-array
baseline (sklearn roc_auc_score + scipy ks_2samp) in the same run. Without ``--redis-url`` it starts a throwaway ``redis-server`` on a
free local port and stops it at the end. Keys carry a uuid prefix and are deleted.
The figures are printed only; no test asserts a timing.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence

import numpy as np

from monitor.bench.redis_server import redis_url_or_server
from monitor.stats.histogram import ScoreHistogram
from monitor.stats.summary import LabelledHistograms, compute_metrics

TARGET_MS = 5.0
PARTS = ("pos", "neg", "unlabeled")


def _histogram(rng, distinct: int, n: int, a: float, b: float, resolution: float) -> ScoreHistogram:
    """``n`` records over exactly ``distinct`` bins drawn from a Beta(a, b) score shape."""
    max_bin = int(round(1 / resolution))
    centres = np.arange(max_bin + 1) / max_bin
    density = centres ** (a - 1) * (1 - centres) ** (b - 1) + 1e-6  # > 0: any bin can be drawn
    bins = np.sort(rng.choice(max_bin + 1, size=distinct, replace=False, p=density / density.sum()))
    share = density[bins] / density[bins].sum()
    counts = 1 + rng.multinomial(n - distinct, share)
    h = ScoreHistogram(resolution)
    h.add_bins(bins, counts)
    return h


def make_month(rng, scale: str, resolution: float) -> tuple[LabelledHistograms, ScoreHistogram]:
    """A month and a reference; 'large' = 10,000 fields / 230k records, 'exact' = n, m <= 10,000.

    Synthetic (Beta-shaped scores, bads above goods), deterministic for a given rng.

    >>> month, ref = make_month(np.random.default_rng(0), "large", 1e-4)
    >>> len(month.pos) + len(month.neg) + len(month.unlabeled), month.n, ref.n
    (10000, 230000, 230000)
    """
    if scale == "large":
        month = LabelledHistograms(
            _histogram(rng, 2_000, 20_000, 5, 3, resolution),
            _histogram(rng, 5_000, 150_000, 2, 5, resolution),
            _histogram(rng, 3_000, 60_000, 2.2, 4.6, resolution),
        )
        reference = _histogram(rng, 8_000, 230_000, 2, 5, resolution)
    else:
        month = LabelledHistograms(
            _histogram(rng, 900, 1_000, 5, 3, resolution),
            _histogram(rng, 4_000, 6_000, 2, 5, resolution),
            _histogram(rng, 1_500, 2_000, 2.2, 4.6, resolution),
        )
        reference = _histogram(rng, 6_000, 10_000, 2, 5, resolution)
    return month, reference


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 95))


def _time_dense_reads(client, keys: list[str], month, reference, repetitions: int) -> tuple:
    """The store's layout: one pipelined GET of the dense histograms, parse, ``compute_metrics``; the
    first run checks the round trip is exact. Returns the metrics and per run (read, parse, metrics, total) s."""
    resolution = reference.resolution

    def read_and_compute():
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        t0 = time.perf_counter()
        raw = pipe.execute()
        t1 = time.perf_counter()
        parsed = [ScoreHistogram.from_dense_bytes(blob, resolution) for blob in raw]
        window = LabelledHistograms(*parsed[:3])
        t2 = time.perf_counter()
        metrics = compute_metrics(window, parsed[3])
        t3 = time.perf_counter()
        return metrics, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)

    expected = compute_metrics(month, reference)
    got, _ = read_and_compute()  # warm-up, and check the round trip is exact
    if got != expected:
        raise RuntimeError("metrics read back from Redis differ from the in-memory ones")
    return expected, [read_and_compute()[1] for _ in range(repetitions)]


def _time_hash_reads(client, keys: list[str], hists: list, expected, repetitions: int) -> tuple[list[float], dict]:
    """For comparison only: the same histograms as Redis hashes (field = bin, value = count), HGETALL +
    metrics. Returns the seconds per run and the Redis memory of the month's 3 histograms both ways."""
    resolution = hists[-1].resolution
    for key, h in zip(keys, hists, strict=True):
        client.hset(f"{key}:hash", mapping=h.to_redis_fields())

    def read_hashes_and_compute():
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(f"{key}:hash")
        t0 = time.perf_counter()
        parsed = [ScoreHistogram.from_redis_fields(fields, resolution) for fields in pipe.execute()]
        metrics = compute_metrics(LabelledHistograms(*parsed[:3]), parsed[3])
        return metrics, time.perf_counter() - t0

    if read_hashes_and_compute()[0] != expected:
        raise RuntimeError("metrics read back from the hashes differ")
    hashes = [read_hashes_and_compute()[1] for _ in range(repetitions)]
    memory = {"dense": sum(client.memory_usage(k) for k in keys[:3]),
              "hash": sum(client.memory_usage(f"{k}:hash") for k in keys[:3])}
    return hashes, memory


def _time_raw_baseline(month, reference, repetitions: int) -> list[float]:
    """Baseline: the same metrics from raw (quantized) score arrays, as without histograms (sklearn's
    roc_auc_score, scipy's ks_2samp twice); seconds per run."""
    from scipy.stats import ks_2samp
    from sklearn.metrics import roc_auc_score

    bads, goods = (np.repeat(h.values(), h.counts) for h in (month.pos, month.neg))
    everything = np.repeat(month.all().values(), month.all().counts)
    ref_scores = np.repeat(reference.values(), reference.counts)
    labels = np.r_[np.ones(bads.size), np.zeros(goods.size)]
    scores = np.r_[bads, goods]
    baseline = []
    for _ in range(repetitions):
        t0 = time.perf_counter()
        roc_auc_score(labels, scores)
        ks_2samp(bads, goods)
        ks_2samp(everything, ref_scores, method="auto")
        baseline.append(time.perf_counter() - t0)
    return baseline


def _run_scenario(client, name: str, month, reference, repetitions: int, baseline_reps: int) -> dict:
    """Write the histograms, time read + parse + metrics (dense, then as hashes), time the raw baseline;
    the keys are deleted."""
    prefix = f"bench:{uuid.uuid4().hex}:model-a:2024-03"
    keys = [f"{prefix}:{part}" for part in PARTS] + [f"{prefix}:reference"]
    hists = [month.pos, month.neg, month.unlabeled, reference]
    try:
        for key, h in zip(keys, hists, strict=True):
            client.set(key, h.to_dense_bytes())
        expected, timings = _time_dense_reads(client, keys, month, reference, repetitions)
        hashes, memory = _time_hash_reads(client, keys, hists, expected, repetitions)
    finally:
        client.delete(*keys, *(f"{key}:hash" for key in keys))
    baseline = _time_raw_baseline(month, reference, baseline_reps)
    columns = list(zip(*timings, strict=True))
    return {
        "name": name,
        "fields": [len(h) for h in hists],
        "records": [h.n for h in hists],
        "redis": _percentiles(columns[0]),
        "parse": _percentiles(columns[1]),
        "metrics": _percentiles(columns[2]),
        "total": _percentiles(columns[3]),
        "hashes": _percentiles(hashes),
        "memory": memory,
        "baseline": _percentiles(baseline),
        "ks_pvalue": expected.ks_pvalue,
    }


def _report(r: dict) -> None:
    median, p95 = r["total"]
    print(f"\n[{r['name']}] fields pos/neg/unlabeled/reference = {r['fields']} "
          f"(month total {sum(r['fields'][:3])}), records = {r['records']}")
    for part in ("redis", "parse", "metrics"):
        print(f"  {part:<8} median {r[part][0]:7.3f} ms   p95 {r[part][1]:7.3f} ms")
    print(f"  TOTAL    median {median:7.3f} ms   p95 {p95:7.3f} ms   "
          f"target <= {TARGET_MS} ms: {'MET' if median <= TARGET_MS else 'NOT MET'} (median), "
          f"{'MET' if p95 <= TARGET_MS else 'NOT MET'} (p95)")
    print(f"  (comparison, not the store's layout: same data as 4 Redis hashes, HGETALL + metrics: "
          f"median {r['hashes'][0]:.3f} ms, p95 {r['hashes'][1]:.3f} ms)")
    print(f"  Redis memory of the month's 3 histograms: dense {r['memory']['dense'] / 1024:.0f} KiB, "
          f"as hashes {r['memory']['hash'] / 1024:.0f} KiB")
    base = r["baseline"][0]
    print(f"  baseline sklearn roc_auc_score + 2x scipy ks_2samp on raw arrays: median {base:.3f} ms "
          f"(x{base / median:.1f} the histogram path, which also reads Redis)")


def main(argv=None) -> int:
    """Run the benchmark and print its figures; returns 0. Timings are medians/p95 of real runs.

    It needs redis-server, so the example only asks for the options:

    >>> main(["--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    SystemExit: 0
    """
    parser = argparse.ArgumentParser(prog="python -m monitor.state.layout_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=None, help="Redis to use; default: start a throwaway redis-server")
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--baseline-repetitions", type=int, default=20)
    parser.add_argument("--resolution", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=20240301)
    args = parser.parse_args(argv)

    from redis.utils import HIREDIS_AVAILABLE

    rng = np.random.default_rng(args.seed)
    scenarios = [("month, asymptotic p-value (max(n, m) > 10000)", "large"),
                 ("small month, exact p-value (n, m <= 10000)", "exact")]
    from monitor.connect import redact_url, redis_client
    from monitor.settings import Settings

    with redis_url_or_server(args.redis_url) as url:
        client = redis_client(Settings(redis_url=url))
        print(f"redis {client.info('server')['redis_version']} at {redact_url(url)}; hiredis parser: {HIREDIS_AVAILABLE}; "
              f"{args.repetitions} repetitions; resolution {args.resolution}")
        try:
            for name, scale in scenarios:
                month, reference = make_month(rng, scale, args.resolution)
                _report(_run_scenario(client, name, month, reference, args.repetitions,
                                     args.baseline_repetitions))
        finally:
            client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
