"""Recompute the metrics of the months that changed, judge the alert rules, publish transitions.

Runs on a timer (every changed model each ``MONITOR_METRICS_INTERVAL_S``) rather than per
record, and at once for a model one of whose months reached a checkpoint, a point where its
verdicts may change: its volume reached ``min_records`` (it can be judged from now on) or a
doubling of it, or (in a month so judged) a class reached ``min_class_records``. The writer of the batch marks the
model due in Redis (``<prefix>:due``) and wakes its own loop; other workers poll the mark every
``DUE_POLL_S``. Per model, one worker at a time holds a lease in Redis and does the work, so
with several workers nothing is computed or judged twice. A month's ``rev`` counter says
whether it changed since the last pass; month histograms are cached in memory between passes,
so a pass reads only the months that changed. A change to month m also changes the cumulative
windows of every later month, and the rolling windows that hold m, so those are recomputed too; the
windows are built from the previous ones (``monitor.stats.incremental``: add the entering month,
subtract the leaving one), the windows that did not change keep their metrics, and windows that hold
the same months (the first months of a model: month, rolling and cumulative alike) are computed once.
The computation runs in a thread of its own (numpy and scipy release the GIL for much of it), so the
event loop that folds records is never held by it (issue 18: a pass over a model of 1,000 months held
it for seconds).

A timer pass is a burst of CPU in the loop that also folds records: left alone, it would hold
the records back for its whole length. After each model the pass pauses as long as the model
took (``PASS_PAUSE_RATIO``), so records are folded between models; a checkpoint cuts the pause.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

from monitor.alerts.lifecycle import (
    SCORE_RULES,
    AlertEvaluator,
    has_evidence,
    judge_feature_psi,
    judge_volume,
    months_to_close,
    provisional_rules,
)
from monitor.alerts.rules import AlertConfig, load_alert_config
from monitor.schema import split_model_key
from monitor.settings import Settings
from monitor.state import MonthChange, Store
from monitor.stats import (
    FeatureCounter,
    FeatureProfile,
    LabelledHistograms,
    ScoreHistogram,
    compute_metrics,
    feature_drift,
)
from monitor.stats.incremental import MonthSums, window_spans
from monitor.stats.windows import previous_months, rolling

OUTBOX_CHUNK = 500
DUE_POLL_S = 0.1  # how often a worker looks for models another worker marked due
# Pause after each model of a timer pass, as a multiple of the time the model took: the pass takes
# about half of the loop at most while records flow, at the price of a pass twice as long
# (docs/benchmarks.md: p99 publish-to-alert 546 -> 218-354 ms at 5k records/s for 30 models).
PASS_PAUSE_RATIO = 1.0
# Changed months' histograms are read (and decoded) this many at a time, so that the first pass over a
# model of many months gives the loop back between reads instead of decoding them all at once.
HISTOGRAM_READ_CHUNK = 32
SAVE_CHUNK = 100  # months' metrics saved (encoded) per call
JUDGE_YIELD_EVERY = 50  # months judged between two turns of the event loop


def reaches_checkpoint(change: MonthChange, min_records: int, min_class_records: int) -> bool:
    """Whether a write brought its month to a point where verdicts may change at once.

    The month's volume reached ``min_records`` (judged from now on) or a doubling of it
    (``min_records * 2**k``: a few recomputations per month, each with twice the evidence),
    or, in a month of ``min_records`` or more, the bads or the goods reached ``min_class_records``
    (AUC judged from now on). Below ``min_records`` no verdict of the month can move (nothing is
    judged), so a class reaching its minimum there waits for the timer pass: with many models
    taking live traffic it would make them all due at once, ahead of those whose verdicts can change.

    >>> reaches_checkpoint(MonthChange("2024-02", 500, 0, 0, 1, 0, 0), 500, 30)
    True
    >>> [n for n in range(490, 4100) if reaches_checkpoint(MonthChange("m", n, 0, 0, 1, 0, 0), 500, 30)]
    [500, 1000, 2000, 4000]
    >>> reaches_checkpoint(MonthChange("m", 800, 30, 400, 0, 2, 0), 500, 30)
    True
    >>> reaches_checkpoint(MonthChange("m", 120, 4, 30, 1, 0, 1), 500, 30)
    False
    """
    def doublings(n: int) -> int:  # -1 below min_records, then k for n in [min * 2**k, min * 2**(k+1))
        return (n // min_records).bit_length() - 1

    if doublings(change.n - change.added_n) < doublings(change.n):
        return True
    return change.n >= min_records and any(before < min_class_records <= after for before, after in (
        (change.bad - change.added_bad, change.bad), (change.good - change.added_good, change.good)))


Sum = TypeVar("Sum")  # what a window sums to: histograms, feature counters


def per_window(spans: Mapping[str, tuple[str, ...]], sums: Mapping[str, Callable[[], Sum]],
               compute: Callable[[Sum], dict], kept: Mapping[str, dict] | None = None) -> dict[str, dict]:
    """``compute`` of each window's sum (``sums[name]()``), once per distinct span of months: a model's
    first months have the same month, rolling and cumulative windows. The windows in ``kept`` (their
    months did not change) keep the values given there.

    >>> calls = []
    >>> per_window({"month": ("a",), "rolling": ("a",)}, {"month": lambda: 5, "rolling": lambda: 5},
    ...            lambda x: calls.append(x) or {"v": x})
    {'month': {'v': 5}, 'rolling': {'v': 5}}
    >>> calls
    [5]
    >>> per_window({"month": ("b",), "rolling": ("a", "b")}, {"month": lambda: 1, "rolling": lambda: 3},
    ...            lambda x: {"v": x}, kept={"month": {"v": 1}})
    {'month': {'v': 1}, 'rolling': {'v': 3}}
    """
    computed: dict[tuple[str, ...], dict] = {}
    out = {}
    for name, span in spans.items():
        if kept is not None and name in kept:
            out[name] = kept[name]
            continue
        if span not in computed:
            computed[span] = compute(sums[name]())
        out[name] = computed[span]
    return out


class MetricsUpdater:
    def __init__(self, store: Store, settings: Settings, config: AlertConfig | None = None):
        self.store = store
        self.settings = settings
        self.config = config or load_alert_config(settings)
        self.alerts = AlertEvaluator(store)
        self.owner = uuid.uuid4().hex
        self.lease_ms = int(max(10.0, 5 * settings.metrics_interval_s) * 1000)
        self._revisions: dict[tuple[str, str], dict[str, int]] = {}
        self._histograms: dict[tuple[str, str], MonthSums[LabelledHistograms]] = {}
        self._features: dict[tuple[str, str], dict[str, FeatureCounter]] = {}
        # The last metrics of every window of every month, and the reference and feature profile they
        # were computed against: a window whose months did not change keeps them.
        self._window_values: dict[tuple[str, str], dict[str, dict]] = {}
        self._references: dict[tuple[str, str], tuple[ScoreHistogram | None, dict[str, str], FeatureProfile | None]] = {}
        self._window_basis: dict[tuple[str, str], tuple] = {}
        # The feature counts of the months before a month (the last pass's first changed one): the next
        # pass adds only the months from there to its own first changed one.
        self._features_prefix: dict[tuple[str, str], tuple[str, FeatureCounter]] = {}
        # One thread computes the windows (CPU) while the event loop goes on folding records.
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-windows")
        # Months judged final in this process (after a restart, or a lease taken over, the closed
        # months are judged again: the stored alert states make that emit nothing new), and when
        # each month last changed (a closed month is final once it settled).
        self._final: dict[tuple[str, str], set[str]] = {}
        self._changed_at: dict[tuple[str, str], dict[str, float]] = {}
        # Partitions of the records topic (the worker sets it from its consumer's metadata): until each
        # delivered some of a model's records, or partition_idle_s passed, none of its months closes.
        self.topic_partitions = 0
        self.wakeup = asyncio.Event()  # set when a model of this process was marked due
        self.pause_ratio = PASS_PAUSE_RATIO
        self._next_pass = 0.0  # time.monotonic() of the next full pass

    async def on_change(self, model: str, version: str, changes: list[MonthChange]) -> None:
        """Told of every write to a model's counts: a month at a checkpoint makes the model due now."""
        rules = self.config.rules_for(model, version)
        if any(reaches_checkpoint(c, rules.min_records, rules.auc.min_class_records) for c in changes):
            await self.store.mark_due(model, version)
            self.wakeup.set()

    async def step(self, send: Callable[[bytes], Awaitable[None]] | None = None) -> float:
        """A full pass when one is due, else the models marked due; returns the seconds to wait
        (for :meth:`wait`) before the next step."""
        if time.monotonic() >= self._next_pass:
            self._next_pass = time.monotonic() + self.settings.metrics_interval_s
            await self.run_once(send)
        else:
            await self.run_due(send)
        return max(0.0, min(DUE_POLL_S, self._next_pass - time.monotonic()))

    async def wait(self, timeout: float) -> None:
        """Sleep ``timeout`` seconds, or less when a model of this process is marked due."""
        await self._pause(timeout)
        self.wakeup.clear()

    async def run_once(self, send: Callable[[bytes], Awaitable[None]] | None = None) -> int:
        """One pass over every model whose lease we hold; returns the alert events published."""
        published = 0
        for model, version in await self.store.models():
            if self.wakeup.is_set():  # a model reached a checkpoint meanwhile: it goes first
                published += await self.run_due(send)
            started = time.perf_counter()
            published += await self._update_leased(model, version, send)
            await self._pause((time.perf_counter() - started) * self.pause_ratio)
        return published

    async def _pause(self, seconds: float) -> None:
        """Let the records in for ``seconds``; a model marked due (the wakeup) ends the pause at once."""
        if seconds <= 0 or self.wakeup.is_set():
            return
        try:
            await asyncio.wait_for(self.wakeup.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def run_due(self, send: Callable[[bytes], Awaitable[None]] | None = None) -> int:
        """Update the models marked due whose lease we hold or can take; the others are left to
        their holder. Returns the alert events published."""
        self.wakeup.clear()
        published = 0
        for member in await self.store.due_models():
            model, version = split_model_key(member)
            published += await self._update_leased(model, version, send, due=member)
        return published

    async def _update_leased(self, model: str, version: str, send, due: bytes | None = None) -> int:
        if not await self.store.take_lease(model, version, self.owner, self.lease_ms):
            self._forget(model, version)  # another worker computes it: our cache will go stale
            return 0
        if due is not None:  # unmarked before the work: a mark made during it is not lost
            await self.store.unmark_due(due)
        await self.update_model(model, version)
        return await self.publish_outbox(model, version, send) if send is not None else 0

    def _forget(self, model: str, version: str) -> None:
        self._revisions.pop((model, version), None)
        self._histograms.pop((model, version), None)
        self._features.pop((model, version), None)
        self._window_values.pop((model, version), None)
        self._references.pop((model, version), None)
        self._window_basis.pop((model, version), None)
        self._features_prefix.pop((model, version), None)
        self._final.pop((model, version), None)
        self._changed_at.pop((model, version), None)

    async def update_model(self, model: str, version: str) -> None:
        """Recompute the windows of the months that changed, and judge them and the months that
        closed since the last pass."""
        key = (model, version)
        # Read before the months and their counts, so that the counts are at least as recent as the
        # watermark: a batch folded in between could close a month whose count we read before it.
        closing = await self.store.closing_watermark(model, version, self.topic_partitions)
        months = await self.store.months(model, version)
        if not months:
            return
        revisions = await self.store.month_revisions(model, version, months)
        known = self._revisions.setdefault(key, {})
        changed = [m for m in months if revisions[m] != known.get(m)]
        cache = self._histograms.setdefault(key, MonthSums(LabelledHistograms.empty(self.settings.resolution)))
        before = {m: cache[m].n for m in changed if m in cache}
        for first in range(0, len(changed), HISTOGRAM_READ_CHUNK):
            cache.update(await self.store.histograms(model, version, changed[first:first + HISTOGRAM_READ_CHUNK]))
        cache.retain(months)  # months gone from Redis (a wiped model) leave the windows too
        # A month settles when its records stop coming; labels (outcomes) arriving for months do not
        # hold it open (they change its AUC, judged again, finally, when it is final).
        arrived = [m for m in changed if cache[m].n != before.get(m)]
        final = self.final_months(key, months, arrived, closing)
        newly_closed = final - self._final[key]
        if not changed and not newly_closed:
            return
        reference, ref_meta, profile = await self.reference(model, version)
        reference_n = reference.n if reference is not None else None
        reference_auc = float(ref_meta["auc"]) if ref_meta.get("auc") else None
        results = await self.compute_windows(model, version, months, changed, reference, reference_n,
                                              reference_auc, profile) if changed else {}
        computed = list(results.items())
        for first in range(0, len(computed), SAVE_CHUNK):  # a few ms of encoding per call, not all months' at once
            await self.store.save_metrics(model, version, dict(computed[first:first + SAVE_CHUNK]))
        # Months that closed without changing are judged (final) on their saved metrics.
        settled = sorted(m for m in newly_closed if m not in results and m in revisions)
        results.update(await self.store.metrics_of(model, version, settled))
        await self.judge(model, version, results, sorted(set(results) | newly_closed), final,
                         {m: cache[m].n for m in months}, reference_n)
        known.update({m: revisions[m] for m in changed})
        self._final[key] |= newly_closed

    def final_months(self, key: tuple[str, str], months: list[str], arrived: list[str], closing: str | None) -> set[str]:
        """The months whose verdicts are final: closed by the event-time watermark (``closing``) and
        settled, none of their records having arrived for ``month_settle_s``, as every month before
        them (so a month's rolling and cumulative windows are final only when all their months are);
        a month once final stays final (a late record judges it again, finally)."""
        now = time.monotonic()
        changed_at = self._changed_at.setdefault(key, {})
        changed_at.update(dict.fromkeys(arrived, now))
        final = self._final.setdefault(key, set())
        if closing is None:
            return set(final)
        rules = self.config.rules_for(*key)
        closed = sorted(months_to_close(months, closing, rules.grace_days))
        for month in closed:  # one not seen changing in this process (a gap with no record) settles from now
            changed_at.setdefault(month, now)
        settle = self.settings.month_settle_s
        settled = set()
        for month in closed:
            if month not in final and now - changed_at[month] < settle:
                break
            settled.add(month)
        return final | settled

    async def reference(self, model: str, version: str) -> tuple[ScoreHistogram | None, dict[str, str], FeatureProfile | None]:
        """The model's reference histogram, card and feature profile: decoded again only when the card
        changed (a reference saved again), else the last ones (~80 KiB read and decoded per update saved)."""
        meta = await self.store.reference_meta(model, version)
        cached = self._references.get((model, version))
        if cached is not None and cached[1] == meta:
            return cached
        reference, meta = await self.store.reference(model, version)
        fresh = (reference, meta, await self.store.feature_profile(model, version))
        self._references[(model, version)] = fresh
        return fresh

    async def compute_windows(self, model: str, version: str, months: list[str], changed: list[str], reference,
                              reference_n: int | None, reference_auc: float | None,
                              profile: FeatureProfile | None) -> dict[str, dict]:
        """The metrics of every window of the months from the earliest changed one on (a change to
        month m changes the cumulative windows of the months after it, and the rolling ones that hold
        it), computed in the updater's thread, off the event loop."""
        key = (model, version)
        features = self._features.setdefault(key, {})
        if profile is not None:
            features.update(await self.store.feature_counts(model, version, changed, profile))
        compute = functools.partial(self._compute_windows, model, version, months, changed, reference, reference_n,
                                    reference_auc, profile)
        return await asyncio.get_running_loop().run_in_executor(self._compute, compute)

    def _compute_windows(self, model: str, version: str, months: list[str], changed: list[str], reference,
                         reference_n: int | None, reference_auc: float | None, profile) -> dict[str, dict]:
        """:meth:`compute_windows`' CPU part (in a thread: it touches only this model's caches, which
        nothing else uses meanwhile). Windows are walked incrementally (``MonthSums.windows``); a window
        none of whose months changed keeps its last metrics, unless the reference or profile changed."""
        key = (model, version)
        sums = self._histograms[key]
        features = self._features.get(key, {})
        if self._window_basis.get(key) != (reference, profile):  # new reference: every window again
            self._window_values[key] = {}
            self._features_prefix.pop(key, None)
            self._window_basis[key] = (reference, profile)
        kept_values = self._window_values.setdefault(key, {})
        resolution, n_rolling = self.settings.resolution, self.settings.rolling_months
        cumulative_features = self._features_before(key, months, min(changed), profile) if profile is not None else None
        results: dict[str, dict] = {}
        for window_set in sums.windows(months, changed, n_rolling):
            month = window_set.month
            previous = kept_values.get(month, {})
            kept_windows = {w: v for w, v in previous.get("windows", {}).items() if w not in window_set.changed}
            scores = {name: (lambda h=h: h) for name, h in window_set.sums.items()}
            results[month] = {
                "model": model, "model_version": version, "month": month,
                "computed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "rolling_months": previous_months(month, n_rolling),
                "reference_n": reference_n, "reference_auc": reference_auc,
                "resolution": resolution,
                "windows": per_window(window_set.spans, scores, lambda h: compute_metrics(h, reference).to_dict(),
                                      kept_windows),
            }
            if cumulative_features is not None:
                cumulative_features += features[month]
                kept_features = {w: v for w, v in (previous.get("features") or {}).items()
                                 if w not in window_set.changed}
                counters = {"month": lambda month=month: features[month],
                            "cumulative": lambda counter=cumulative_features: counter,
                            "rolling": lambda month=month: rolling(features, month, n_rolling,
                                                                   FeatureCounter(profile))}
                results[month]["features"] = per_window(window_set.spans, counters, lambda counter: {
                    f: d.to_dict() for f, d in feature_drift(counter, profile).items()}, kept_features)
            kept_values[month] = {"windows": results[month]["windows"], "features": results[month].get("features")}
        return results

    def _features_before(self, key: tuple[str, str], months: list[str], first_changed: str, profile) -> FeatureCounter:
        """The feature counts of the months before ``first_changed``: from the last pass's sum before
        its own first changed month when that is not later (no month before it changed since: it would
        be the first changed one), plus the months in between, in the same order as summed afresh
        (a counter folds unseen categories as they come, so the order of additions is kept)."""
        features = self._features[key]
        since, counter = self._features_prefix.get(key, (None, None))
        if since is None or counter is None or since > first_changed:
            since, counter = None, FeatureCounter(profile)
        else:
            counter = counter.copy()
        for month in months[bisect.bisect_left(months, since) if since else 0:bisect.bisect_left(months, first_changed)]:
            counter += features[month]
        self._features_prefix[key] = (first_changed, counter.copy())
        return counter

    async def judge(self, model: str, version: str, results: dict[str, dict], months: list[str], closed: set[str],
                    counts: dict[str, int], reference_n: int | None) -> None:
        """The rules on each of ``months``: final on a closed month, provisional on an open one once it
        holds enough evidence (:func:`monitor.alerts.lifecycle.has_evidence`). The score rules judge the month's
        windows (``results``), the volume rule closed months' ``counts`` (read after the watermark
        that closed them)."""
        final_rules = self.config.rules_for(model, version)
        open_rules = provisional_rules(final_rules)
        watermark = await self.store.watermark(model, version)
        states = await self.store.alert_states_raw(model, version)
        apply = self.alerts.apply
        for done, month in enumerate(months, 1):
            if done % JUDGE_YIELD_EVERY == 0:  # a first pass judges every month: let the records in meanwhile
                await asyncio.sleep(0)
            phase: Literal["provisional", "final"] = "final" if month in closed else "provisional"
            rules = final_rules if phase == "final" else open_rules
            result = results.get(month)
            if result is not None and (phase == "final" or has_evidence(counts, month, rules)):
                reference_auc = result.get("reference_auc")
                for window in rules.windows:
                    metrics = result["windows"][window]
                    for rule, judge in SCORE_RULES.items():
                        verdict = judge(metrics, rules, reference_auc)
                        if verdict is not None:
                            await apply(model, version, rule, window, month, verdict, phase, reference_n, watermark,
                                        states)
                    for feature, drift in (result.get("features") or {}).get(window, {}).items():
                        verdict = judge_feature_psi(feature, drift, rules)
                        if verdict is not None:
                            await apply(model, version, f"feature_psi:{feature}", window, month, verdict, phase,
                                        drift["reference_n"], watermark, states)
            if phase == "final":
                verdict = judge_volume(counts, month, rules)
                if verdict is not None:
                    await apply(model, version, "volume", "month", month, verdict, phase, reference_n, watermark,
                                states)

    def window_months(self, month: str, months: list[str]) -> dict[str, tuple[str, str]]:
        """The first and last month of each window of ``month``, among the model's (sorted) ``months``
        (which hold it); the window holds every one of ``months`` between the two.

        >>> updater = MetricsUpdater.__new__(MetricsUpdater)
        >>> updater.settings = Settings(rolling_months=2)
        >>> updater.window_months("2024-03", ["2024-01", "2024-02", "2024-03", "2024-04"])
        {'month': ('2024-03', '2024-03'), 'rolling': ('2024-02', '2024-03'), 'cumulative': ('2024-01', '2024-03')}
        """
        return window_spans(months, bisect.bisect_left(months, month), self.settings.rolling_months)

    async def publish_outbox(self, model: str, version: str, send: Callable[[bytes], Awaitable[None]]) -> int:
        """Send the model's pending alert events in order, then drop them from the outbox.

        A crash between the send and the trim sends those events again (same event_id): the
        outbox makes delivery at-least-once, never lossy.
        """
        sent = 0
        while events := await self.store.outbox_head(model, version, OUTBOX_CHUNK):
            for raw in events:
                await send(raw)
            await self.store.outbox_drop(model, version, len(events))
            sent += len(events)
        return sent
