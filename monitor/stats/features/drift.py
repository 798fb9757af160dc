"""Drift of each feature, live counts against the reference profile: PSI, KS, chi-square (see
:mod:`monitor.stats.features`)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np
from scipy import special

from monitor.errors import StatsError
from monitor.stats._kstwo import kstwo_sf
from monitor.stats.features.counter import FeatureCounter
from monitor.stats.features.profile import (
    CategoricalReference,
    FeatureProfile,
    NumericReference,
)
from monitor.stats.features.values import CATEGORICAL, MAX_UNSEEN_LISTED, NUMERIC
from monitor.stats.psi import DEFAULT_EPSILON


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature, live against reference; a statistic that does not apply or is undefined is None.

    ``n`` / ``reference_n`` count records with the feature missing included; PSI, KS and
    chi-square use the non-missing ones. ``ks_bound``: KS D on the raw values lies in
    [ks_d, ks_d + ks_bound] (exact bound). Plain JSON via :meth:`to_dict`.

    >>> FeatureDrift("x", "numeric", 0, 10, None).to_dict()["psi"] is None
    True
    """

    feature: str
    kind: str
    n: int
    reference_n: int
    psi: float | None
    ks_d: float | None = None
    ks_pvalue: float | None = None
    ks_bound: float | None = None
    chi2: float | None = None
    chi2_pvalue: float | None = None
    unseen: int | None = None
    unseen_categories: tuple[str, ...] | None = None
    missing_share: float | None = None
    reference_missing_share: float | None = None

    def to_dict(self) -> dict:
        """Plain JSON types (``unseen_categories`` as a list); exact copy of the fields.

        >>> FeatureDrift("c", "categorical", 1, 1, 0.0, unseen=0, unseen_categories=()).to_dict()["unseen_categories"]
        []
        """
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if out["unseen_categories"] is not None:
            out["unseen_categories"] = list(out["unseen_categories"])
        return out


def _psi_of_counts(live: list[int], ref: list[int], epsilon: float) -> float | None:
    """PSI as :func:`monitor.stats.psi.psi` computes it: shares, empty buckets at ``epsilon``."""
    n_live, n_ref = sum(live), sum(ref)
    if n_live == 0 or n_ref == 0:
        return None
    p = np.asarray(live, dtype=np.float64) / n_live
    q = np.asarray(ref, dtype=np.float64) / n_ref
    p = np.where(p > 0, p, epsilon)
    q = np.where(q > 0, q, epsilon)
    return float(np.sum((p - q) * np.log(p / q)))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _numeric_drift(name, live: list[int], live_missing: int, ref: NumericReference, epsilon) -> FeatureDrift:
    n, m = sum(live), sum(ref.counts)
    ks_d = ks_pvalue = ks_bound = None
    if n and m:
        # n*m * (F_live - F_ref) at each bucket's upper edge, exact Python integers.
        cum_l = cum_r = 0
        d_scaled = upper = 0
        for a, b in zip(live, ref.counts, strict=True):
            # Raw x inside this bucket: F_live(x) <= cum_l + a, F_ref(x) >= cum_r (and mirror).
            upper = max(upper, (cum_l + a) * m - cum_r * n, (cum_r + b) * n - cum_l * m)
            cum_l, cum_r = cum_l + a, cum_r + b
            d_scaled = max(d_scaled, abs(cum_l * m - cum_r * n))
        ks_d = d_scaled / (n * m)
        ks_bound = (upper - d_scaled) / (n * m)
        effective = max(1, int(np.round(n * m / (n + m))))
        ks_pvalue = float(np.clip(kstwo_sf(ks_d, effective), 0.0, 1.0))
    return FeatureDrift(
        feature=name,
        kind=NUMERIC,
        n=n + live_missing,
        reference_n=ref.n,
        psi=_psi_of_counts(live, list(ref.counts), epsilon),
        ks_d=ks_d,
        ks_pvalue=ks_pvalue,
        ks_bound=ks_bound,
        missing_share=_share(live_missing, n + live_missing),
        reference_missing_share=_share(ref.missing, ref.n),
    )


def _chi2_contingency(table: np.ndarray) -> tuple[float, float]:
    """``scipy.stats.chi2_contingency(table)`` (statistic, p-value) for a table without empty columns.

    The same arithmetic, Yates' correction included when one degree of freedom is left, without
    scipy's input checks and result object (a tenth of its cost: it runs for every categorical
    feature of every window of every pass).

    >>> t = np.array([[10, 20, 30], [15, 15, 40]])
    >>> from scipy.stats import chi2_contingency
    >>> np.allclose(_chi2_contingency(t), tuple(chi2_contingency(t))[:2], rtol=1e-12)
    True
    """
    observed = table.astype(np.float64)
    dof = observed.shape[1] - 1
    if dof == 0:
        return 0.0, 1.0
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    if dof == 1:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    return statistic, float(special.chdtrc(dof, statistic))


def _categorical_drift(name, live: dict[str, int], live_missing: int, ref: CategoricalReference, epsilon) -> FeatureDrift:
    reference = ref.as_mapping()
    n, m = sum(live.values()), sum(reference.values())
    unseen_names = sorted((k for k, c in live.items() if c and k not in reference), key=lambda k: (-live[k], k))
    unseen = sum(live[k] for k in unseen_names)
    categories = sorted(reference)
    psi_value = _psi_of_counts(
        [live.get(k, 0) for k in categories] + [unseen], [reference[k] for k in categories] + [0], epsilon
    )
    chi2 = chi2_pvalue = None
    if n and m:
        union = sorted(set(reference) | set(live))
        table = np.array([[reference.get(k, 0) for k in union], [live.get(k, 0) for k in union]], dtype=np.int64)
        table = table[:, table.sum(axis=0) > 0]  # a category empty in both samples carries no information
        chi2, chi2_pvalue = _chi2_contingency(table)
    return FeatureDrift(
        feature=name,
        kind=CATEGORICAL,
        n=n + live_missing,
        reference_n=ref.n,
        psi=psi_value,
        chi2=chi2,
        chi2_pvalue=chi2_pvalue,
        unseen=unseen,
        unseen_categories=tuple(unseen_names[:MAX_UNSEEN_LISTED]),
        missing_share=_share(live_missing, n + live_missing),
        reference_missing_share=_share(ref.missing, ref.n),
    )


def feature_drift(
    live: FeatureCounter, profile: FeatureProfile, epsilon: float = DEFAULT_EPSILON
) -> dict[str, FeatureDrift]:
    """Drift of every profile feature: PSI, KS (numeric), chi-square and unseen categories (categorical).

    * PSI = sum (l - r) ln(l / r) over the reference buckets (numeric) or the reference
      categories plus one bucket for all unseen ones (categorical), on non-missing
      shares; a share of 0 counts as ``epsilon`` (default 1e-4), the convention of
      :func:`monitor.stats.psi.psi`. Exact on the bucket counts up to float rounding;
      0.0 exactly when the live counts are the reference's.
    * ``ks_d``: max over bucket edges of |F_live - F_ref|, exact (integers), equal to
      ``ks_2samp`` on the bucketed data and a lower bound of D on the raw values (the
      bucketed CDFs are the raw ones read at the edges); the raw D is at most
      ``ks_d + ks_bound``. ``ks_pvalue`` = ``kstwo.sf(ks_d, round(n*m/(n+m)))`` as
      ks_2samp's asymptotic method (scipy's value, via :func:`monitor.stats._kstwo.kstwo_sf`).
    * ``chi2``/``chi2_pvalue``: ``scipy.stats.chi2_contingency`` with its defaults (Yates'
      correction only when 2 categories remain) on the 2 x K table reference vs live over
      the union of categories, unseen and ``"__other__"`` included; categories empty in
      both rows are dropped (their expected count would be 0), and a single remaining
      category gives chi2 = 0, p = 1.
    * ``unseen``: live records in categories absent from the reference;
      ``unseen_categories``: their names, most frequent first, at most 20.

    Every statistic is None (never NaN) when undefined, i.e. without live or reference
    records; empty input never raises.

    >>> import pandas as pd
    >>> p = FeatureProfile.from_frame(pd.DataFrame({"x": np.arange(100.0), "c": ["a", "b"] * 50}))
    >>> live = FeatureCounter(p)
    >>> live.update_many({"x": np.arange(50.0, 150.0), "c": ["a", "zz"] * 50})
    >>> d = feature_drift(live, p)
    >>> round(d["x"].psi, 4), d["x"].ks_d, d["c"].unseen, d["c"].unseen_categories
    (4.3463, 0.5, 50, ('zz',))
    >>> feature_drift(FeatureCounter(p), p)["x"].psi is None
    True
    """
    if not isinstance(live, FeatureCounter) or not isinstance(profile, FeatureProfile):
        raise StatsError("feature_drift takes a FeatureCounter and a FeatureProfile")
    if live.profile != profile:
        raise StatsError("the live counter was built on a different profile")
    if not (isinstance(epsilon, numbers.Real) and math.isfinite(epsilon) and epsilon > 0):
        raise StatsError(f"epsilon must be a positive number, got {epsilon!r}")
    out = {}
    for name, ref in profile.references:
        counts, missing = live._counts[name], live._missing[name]
        if ref.kind == NUMERIC:
            out[name] = _numeric_drift(name, counts, missing, ref, epsilon)
        else:
            out[name] = _categorical_drift(name, counts, missing, ref, epsilon)
    return out
