"""The worker's event-loop lag: how late a task that sleeps ``interval`` seconds wakes up.

Everything in the worker (folding records, the metrics pass, the consumer's fetches) shares one
event loop; any piece of code that holds it for long delays all the others. A probe task sleeps
``LAG_PROBE_INTERVAL_S`` and records the overshoot of each sleep in a cumulative histogram (the
Prometheus buckets ``LAG_BUCKETS_S``), with the maximum and the percentiles of the recent samples.
The worker writes a :meth:`LoopLagProbe.snapshot` to Redis (``<prefix>:worker:loop_lag``, one field
per worker process) and ``GET /metrics`` exports it as ``credit_monitor_worker_loop_lag_seconds``, with the
garbage collector's longest pause (:class:`GcPauses`), which stops the loop too; :class:`SurvivorFreezer`
keeps what the worker holds out of the collector's full walks.

>>> probe = LoopLagProbe()
>>> for lag in (0.001, 0.002, 0.07):
...     probe.record(lag)
>>> snap = probe.snapshot()
>>> snap["count"], snap["max"], snap["buckets"][:3]
(3, 0.07, [1, 2, 2])
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import gc
import sys
import time

LAG_PROBE_INTERVAL_S = 0.05
"""How long the probe sleeps; what it measures is how much later than that it wakes up."""
LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds of the histogram's buckets (seconds), ``+Inf`` implied; 0.05 is the target."""
RECENT_SAMPLES = 1200
"""Samples kept for the percentiles: the last minute at one sample per 50 ms."""
LOOP_SWITCH_INTERVAL_S = 0.001
"""The worker's GIL switch interval. The metrics windows are computed in a thread
(monitor.worker.engine); when the event loop's thread wants the GIL back it waits for the computing thread
to drop it, at most Python's switch interval (5 ms by default) per wait, and a loop iteration waits
several times. 1 ms: at 300 months, loop lag p99 47 -> 10 ms, max 53 -> 29 ms, pass time unchanged
(docs/benchmarks.md)."""


def favour_the_loop() -> float:
    """Make a thread computing beside the event loop hand the GIL back sooner (``LOOP_SWITCH_INTERVAL_S``);
    returns the interval it replaces."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(LOOP_SWITCH_INTERVAL_S)
    return previous


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0-100) of ``values`` (0.0 when empty).

    >>> percentile([0.01, 0.02, 0.03, 0.04], 50), percentile([0.01, 0.02, 0.03, 0.04], 99), percentile([], 99)
    (0.02, 0.04, 0.0)
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


class GcPauses:
    """The pauses of Python's cyclic garbage collector, which stops every thread, the event loop's too:
    the longest, and how many full (oldest generation) collections there were. Installed in
    ``gc.callbacks`` by :meth:`install` (the worker does: a loop lag whose max is a full collection's
    pause says what to change, the objects the process keeps, not the code that ran then).

    >>> pauses = GcPauses(); pauses.install(); _ = gc.collect(); pauses.uninstall()
    >>> pauses.full_collections >= 1 and pauses.max > 0
    True
    """

    def __init__(self) -> None:
        self.max = 0.0
        self.full_max = 0.0
        self.full_collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.max = max(self.max, pause)
        if info.get("generation") == 2:
            self.full_collections += 1
            self.full_max = max(self.full_max, pause)

    def install(self) -> None:
        gc.callbacks.append(self)

    def uninstall(self) -> None:
        gc.callbacks.remove(self)


GC_FREEZE_EVERY_S = 10.0
"""How often the worker freezes what survived (:class:`SurvivorFreezer`)."""
GC_UNFREEZE_S = 3600.0
"""How long objects stay frozen before a full collection may see them again."""


class SurvivorFreezer:
    """Keeps what the worker holds for long out of the garbage collector's full collections.

    A full collection walks every object the process holds, and stops the event loop meanwhile: with
    1,000 models' months cached (histograms, each window's metrics) that was 150-350 ms several times a
    minute, most of the loop lag (docs/benchmarks.md, "Scale"). Every ``GC_FREEZE_EVERY_S`` the young
    generations are collected (a few ms) and what survived is frozen (``gc.freeze``: the collections
    skip it; an object still goes the moment nothing refers to it). A reference cycle that dies while
    frozen is only reclaimed when unfrozen: every ``unfreeze_s`` the frozen objects are handed back
    (``gc.unfreeze``) and a full collection, one long pause an hour, reclaims those cycles.

    >>> clock = iter([0.0, 10.0, 4000.0]).__next__
    >>> freezer = SurvivorFreezer(unfreeze_s=3600, clock=clock)
    >>> freezer.tick(), gc.get_freeze_count() > 0, freezer.tick(), freezer.tick()
    ('frozen', True, 'frozen', 'unfrozen')
    >>> gc.get_freeze_count()
    0
    """

    def __init__(self, unfreeze_s: float = GC_UNFREEZE_S, clock=time.monotonic):
        self.unfreeze_s = unfreeze_s
        self.clock = clock
        self.since: float | None = None

    def tick(self) -> str:
        now = self.clock()
        if self.since is None:
            self.since = now
        if now - self.since >= self.unfreeze_s:
            gc.unfreeze()
            gc.collect()  # the planned pause of the hour: the dead cycles go now, not maybe later
            self.since = now
            return "unfrozen"
        gc.collect(1)  # the young garbage first: a cycle frozen dead would wait for the unfreeze
        gc.freeze()
        return "frozen"


class LoopLagProbe:
    """Measures the lag of the running event loop (:meth:`run`) and keeps its distribution, with the
    garbage collector's pauses (:class:`GcPauses`) when given them."""

    def __init__(self, interval_s: float = LAG_PROBE_INTERVAL_S, gc_pauses: GcPauses | None = None):
        self.gc_pauses = gc_pauses
        self.interval_s = interval_s
        self.bucket_counts = [0] * len(LAG_BUCKETS_S)  # per bucket, not cumulative (snapshot() sums them)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.recent: collections.deque[float] = collections.deque(maxlen=RECENT_SAMPLES)

    def record(self, lag: float) -> None:
        """Count one measured lag (seconds, clipped at 0)."""
        lag = max(0.0, lag)
        index = bisect.bisect_left(LAG_BUCKETS_S, lag)
        if index < len(self.bucket_counts):
            self.bucket_counts[index] += 1
        self.count += 1
        self.total += lag
        self.max = max(self.max, lag)
        self.recent.append(lag)

    async def run(self) -> None:
        """Sleep ``interval_s`` again and again, recording how late each wake-up is; runs until cancelled."""
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            self.record(time.perf_counter() - started - self.interval_s)

    def snapshot(self) -> dict:
        """The distribution so far, JSON-ready: cumulative bucket counts (``le`` = ``LAG_BUCKETS_S``),
        count, sum, max since start, p50/p99/max of the recent samples."""
        cumulative, running = [], 0
        for n in self.bucket_counts:
            running += n
            cumulative.append(running)
        recent = list(self.recent)
        return {"buckets": cumulative, "le": list(LAG_BUCKETS_S), "count": self.count, "sum": self.total,
                "max": self.max, "p50": percentile(recent, 50), "p99": percentile(recent, 99),
                "recent_max": max(recent, default=0.0), "at": time.time(),
                **({"gc_max": self.gc_pauses.max, "gc_full_max": self.gc_pauses.full_max,
                    "gc_full_collections": self.gc_pauses.full_collections} if self.gc_pauses else {})}
