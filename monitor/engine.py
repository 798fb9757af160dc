"""Recompute the metrics of the months that changed, for every window, then judge the alerts.

Runs on a short timer rather than per record: a month's ``rev`` counter in Redis says whether
it changed since the last pass. Month histograms are cached in memory between passes, so a
pass reads only the months that changed. A change to month m also changes the rolling and
cumulative windows of every later month, so those are recomputed too.
"""

from __future__ import annotations

import datetime as dt

from monitor.alerts import AlertEvaluator, AlertEvent
from monitor.settings import Settings
from monitor.stats import LabelledHistograms, compute_metrics
from monitor.stats.windows import previous_months
from monitor.store import Store

WINDOWS = ("month", "rolling", "cumulative")


class MetricsUpdater:
    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings
        self.alerts = AlertEvaluator(store, settings)
        self._revisions: dict[tuple[str, str], dict[str, int]] = {}
        self._histograms: dict[tuple[str, str], dict[str, LabelledHistograms]] = {}

    async def run_once(self) -> list[AlertEvent]:
        """One pass over every model; returns the alert transitions to publish."""
        events: list[AlertEvent] = []
        for model, version in await self.store.models():
            events += await self.update_model(model, version)
        return events

    async def update_model(self, model: str, version: str) -> list[AlertEvent]:
        key = (model, version)
        months = await self.store.months(model, version)
        if not months:
            return []
        revisions = await self.store.month_revisions(model, version, months)
        known = self._revisions.setdefault(key, {})
        changed = [m for m in months if revisions[m] != known.get(m)]
        if not changed:
            return []
        cache = self._histograms.setdefault(key, {})
        cache.update(await self.store.histograms(model, version, changed))
        reference, ref_meta = await self.store.reference(model, version)
        first_changed = min(changed)
        results: dict[str, dict] = {}
        events: list[AlertEvent] = []
        cumulative = self._empty()
        for month in months:
            cumulative += cache[month]
            if month < first_changed:
                continue
            windows = self.windows_of(month, cache, cumulative)
            metrics = {name: compute_metrics(h, reference).to_dict() for name, h in windows.items()}
            results[month] = {
                "model": model, "model_version": version, "month": month,
                "computed_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "rolling_months": previous_months(month, self.settings.rolling_months),
                "reference_n": reference.n if reference is not None else None,
                "reference_auc": float(ref_meta["auc"]) if ref_meta.get("auc") else None,
                "resolution": self.settings.resolution,
                "windows": metrics,
            }
            events += await self.alerts.evaluate(model, version, month, "month", metrics["month"],
                                                 reference.n if reference is not None else None)
        await self.store.save_metrics(model, version, results)
        known.update({m: revisions[m] for m in changed})
        return events

    def windows_of(self, month: str, cache: dict[str, LabelledHistograms],
                   cumulative: LabelledHistograms) -> dict[str, LabelledHistograms]:
        rolling = self._empty()
        for m in previous_months(month, self.settings.rolling_months):
            if m in cache:
                rolling += cache[m]
        return {"month": cache[month], "rolling": rolling, "cumulative": cumulative.copy()}

    def _empty(self) -> LabelledHistograms:
        return LabelledHistograms.empty(self.settings.resolution)
