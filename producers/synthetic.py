"""A seeded, reproducible synthetic multi-month credit stream with drift scenarios.

Every month draws a population of applicants with a few credit-like features, a true
default probability that is a fixed logistic function of the standardised features, a
label drawn from it, and the score of a model that knows the feature part of that
function up to a little noise (AUC about 0.78 at baseline). A :class:`Scenario` then
bends the months from ``drift_start`` on:

* ``score_shift`` adds to the model's logit only: the score distribution moves (KS
  adherence and PSI fire) while the ranking, hence AUC, is unchanged;
* ``population_shift`` moves the means of ``drifted_features`` by that many standard
  deviations in the risky direction (income and age down, utilisation up...): those
  features and the scores drift, the other features do not;
* ``performance_decay`` blends the label's logit toward an independent random logit, so
  the score predicts the label less and AUC falls;
* ``volume_factor`` multiplies the monthly volume (0 = no records at all);
* ``label_fraction`` (every month) is the share of records that carry ``target`` inline.

Month ``k`` is drawn from its own sub-seed, so it is the same whatever ``months`` is, and
the months before ``drift_start`` are the same as the baseline's with the same seed.

>>> s = SCENARIOS["demo"]
>>> s.months, s.monthly_volume, s.drift_start
(6, 3000, 3)
>>> first = next(generate(s))
>>> first["record_id"], first["ref_date"]
('synthetic-2024-01-0000000', '2024-01-01')
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Iterator

import numpy as np
import pandas as pd

from monitor.errors import MonitorError
from monitor.months import is_month, month_range

__all__ = [
    "FEATURES",
    "CATEGORIES",
    "InvalidScenario",
    "Scenario",
    "SCENARIOS",
    "generate",
    "reference_scores",
    "reference_frame",
    "monthly_counts",
]


class InvalidScenario(MonitorError, ValueError):
    """A scenario whose parameters cannot describe a stream (the message says which)."""


# --------------------------------------------------------------------------------------
# The population. Every feature is a monotone transform of one latent standard normal
# column; the latent columns are correlated through a fixed correlation matrix. The
# latent value *is* the standardised feature, so "a shift of s std units" is "+s" there.
# --------------------------------------------------------------------------------------

FEATURES: tuple[str, ...] = (
    "income",
    "debt_to_income",
    "utilization",
    "age",
    "months_employed",
    "home_ownership",
    "purpose",
)
"""Feature names, in the order of the latent columns and of :func:`reference_frame`."""

# Categories in increasing order of the latent value, i.e. of risk for purpose and of
# safety for home ownership (see _RISK_DIRECTION).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "home_ownership": ("RENT", "MORTGAGE", "OWN"),
    "purpose": ("car", "home_improvement", "major_purchase", "credit_card", "debt_consolidation"),
}
"""The values of the categorical features."""

# Latent thresholds = standard normal quantiles of the cumulative category shares
# home 0.38 / 0.42 / 0.20, purpose 0.15 / 0.12 / 0.13 / 0.20 / 0.40.
_THRESHOLDS = {
    "home_ownership": np.array([-0.3054808, 0.8416212]),  # Phi^-1(0.38), Phi^-1(0.80)
    "purpose": np.array([-1.0364334, -0.6128130, -0.2533471, 0.2533471]),  # 0.15 .27 .40 .60
}

# +1: a higher latent value means a riskier applicant; population_shift moves by +s * this.
_RISK_DIRECTION = np.array([-1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0])

# Weights of the true default logit on the standardised numeric features ...
_NUMERIC_WEIGHTS = np.array([-0.45, 0.36, 0.62, -0.20, -0.23])
# ... and effects of the categories (same order as CATEGORIES).
_CATEGORY_EFFECTS = {
    "home_ownership": np.array([0.23, 0.0, -0.20]),
    "purpose": np.array([-0.16, -0.07, 0.0, 0.10, 0.20]),
}

_CORRELATION = np.array(
    [
        # inc   dti   util  age   emp   home  purp
        [1.00, -0.20, -0.15, 0.30, 0.35, 0.35, -0.05],  # income
        [-0.20, 1.00, 0.30, 0.00, -0.05, -0.05, 0.15],  # debt_to_income
        [-0.15, 0.30, 1.00, -0.15, -0.10, -0.10, 0.20],  # utilization
        [0.30, 0.00, -0.15, 1.00, 0.55, 0.40, -0.05],  # age
        [0.35, -0.05, -0.10, 0.55, 1.00, 0.25, -0.05],  # months_employed
        [0.35, -0.05, -0.10, 0.40, 0.25, 1.00, -0.05],  # home_ownership
        [-0.05, 0.15, 0.20, -0.05, -0.05, -0.05, 1.00],  # purpose
    ]
)
_CHOLESKY_T = np.linalg.cholesky(_CORRELATION).T

_MODEL_NOISE = 0.30  # std of the model's logit error
_CALIBRATION_SEED = 20240101  # the intercept depends on bad_rate only, never on the scenario
_CALIBRATION_N = 200_000
_MONTH_STREAM = 0  # SeedSequence spawn keys: (0, k) month k, (1,) the reference sample
_REFERENCE_STREAM = 1


@dataclass(frozen=True)
class Scenario:
    """How to draw a synthetic stream; see the module docstring for what each knob does.

    >>> Scenario().months, Scenario(months=2).start_month
    (12, '2024-01')
    >>> Scenario(bad_rate=1.5)
    Traceback (most recent call last):
    ...
    producers.synthetic.InvalidScenario: bad_rate must be strictly between 0 and 1, got 1.5
    """

    name: str = "baseline"
    model: str = "synthetic"
    model_version: str = "1"
    start_month: str = "2024-01"  # YYYY-MM
    months: int = 12
    monthly_volume: int = 5000
    bad_rate: float = 0.08  # approximate, at month 0
    seed: int = 7
    drift_start: int | None = None  # month index from which drift applies (None = no drift)
    drift_end: int | None = None  # first month index back to normal (None = drift to the end)
    score_shift: float = 0.0  # added to the model's logit only
    population_shift: float = 0.0  # std units, in the risky direction, of drifted_features
    drifted_features: tuple[str, ...] = ("utilization",)
    performance_decay: float = 0.0  # 0..1: how much the label's logit forgets the score
    volume_factor: float = 1.0  # monthly volume multiplier from drift_start
    label_fraction: float = 1.0  # share of records that carry `target` inline

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise InvalidScenario(msg)

        if not is_month(self.start_month):
            bad(f"start_month must be 'YYYY-MM', got {self.start_month!r}")
        if int(self.months) != self.months or self.months < 0:
            bad(f"months must be a non-negative integer, got {self.months!r}")
        if int(self.monthly_volume) != self.monthly_volume or self.monthly_volume < 0:
            bad(f"monthly_volume must be a non-negative integer, got {self.monthly_volume!r}")
        if not 0.0 < self.bad_rate < 1.0:
            bad(f"bad_rate must be strictly between 0 and 1, got {self.bad_rate!r}")
        if int(self.seed) != self.seed or self.seed < 0:
            bad(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.drift_start is not None and (
            int(self.drift_start) != self.drift_start or self.drift_start < 0
        ):
            bad(f"drift_start must be None or a non-negative month index, got {self.drift_start!r}")
        if self.drift_end is not None and (self.drift_start is None or self.drift_end <= self.drift_start):
            bad(f"drift_end must come after drift_start, got {self.drift_end!r} <= {self.drift_start!r}")
        for name in ("score_shift", "population_shift"):
            if not math.isfinite(getattr(self, name)):
                bad(f"{name} must be finite, got {getattr(self, name)!r}")
        if isinstance(self.drifted_features, str):
            bad("drifted_features must be a tuple of feature names, not one string")
        unknown = [f for f in self.drifted_features if f not in FEATURES]
        if unknown:
            bad(f"unknown drifted_features {unknown}; choose among {list(FEATURES)}")
        if not 0.0 <= self.performance_decay <= 1.0:
            bad(f"performance_decay must be in [0, 1], got {self.performance_decay!r}")
        if not (math.isfinite(self.volume_factor) and self.volume_factor >= 0.0):
            bad(f"volume_factor must be >= 0, got {self.volume_factor!r}")
        if not 0.0 <= self.label_fraction <= 1.0:
            bad(f"label_fraction must be in [0, 1], got {self.label_fraction!r}")

    # -- derived ----------------------------------------------------------------------
    def month_labels(self) -> list[str]:
        """The ``YYYY-MM`` of each month, in order.

        >>> Scenario(start_month="2023-11", months=3).month_labels()
        ['2023-11', '2023-12', '2024-01']
        """
        return month_range(self.start_month, self.months)

    def drifted(self, k: int) -> bool:
        """Whether month index ``k`` is under drift.

        >>> Scenario(drift_start=2).drifted(1), Scenario(drift_start=2).drifted(2)
        (False, True)
        >>> [Scenario(drift_start=1, drift_end=3).drifted(k) for k in range(4)]
        [False, True, True, False]
        """
        return (self.drift_start is not None and k >= self.drift_start
                and (self.drift_end is None or k < self.drift_end))

    def volume(self, k: int) -> int:
        """Records drawn in month index ``k``.

        >>> s = Scenario(monthly_volume=1000, drift_start=1, volume_factor=0.3)
        >>> s.volume(0), s.volume(1)
        (1000, 300)
        """
        n = int(self.monthly_volume)
        return int(round(n * self.volume_factor)) if self.drifted(k) else n


SCENARIOS: dict[str, Scenario] = {
    "baseline": Scenario(name="baseline"),
    "score_shift": Scenario(name="score_shift", drift_start=6, score_shift=0.6),
    "population_shift": Scenario(
        name="population_shift",
        drift_start=6,
        population_shift=0.75,
        drifted_features=("income", "utilization"),
    ),
    "performance_decay": Scenario(name="performance_decay", drift_start=6, performance_decay=0.6),
    "volume_drop": Scenario(name="volume_drop", drift_start=6, volume_factor=0.3),
    "volume_spike": Scenario(name="volume_spike", drift_start=6, volume_factor=3.0),
    "demo": Scenario(
        name="demo",
        months=6,
        monthly_volume=3000,
        drift_start=3,
        population_shift=0.8,
        drifted_features=("income", "utilization"),
        performance_decay=0.85,
    ),
}
"""Named presets (``monitor produce --synthetic NAME``). ``demo``: 6 months of 3000 records,
from month 3 a population shift of income and utilisation plus a performance decay, so KS
adherence, PSI and AUC alerts fire."""


# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


def _feature_logit(latent: np.ndarray, cats: dict[str, np.ndarray]) -> np.ndarray:
    """The feature part of the true default logit (not centred)."""
    out = latent[:, :5] @ _NUMERIC_WEIGHTS
    for name, codes in cats.items():
        out += _CATEGORY_EFFECTS[name][codes]
    return out


def _categories(latent: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "home_ownership": np.searchsorted(_THRESHOLDS["home_ownership"], latent[:, 5]),
        "purpose": np.searchsorted(_THRESHOLDS["purpose"], latent[:, 6]),
    }


@lru_cache(maxsize=64)
def _calibration(bad_rate: float) -> tuple[float, float, float]:
    """(centre, std, intercept) of the baseline feature logit for this bad rate.

    Drawn from a fixed sample, so it depends on nothing but ``bad_rate``.
    """
    rng = np.random.Generator(np.random.PCG64(_CALIBRATION_SEED))
    latent = rng.standard_normal((_CALIBRATION_N, len(FEATURES))) @ _CHOLESKY_T
    f = _feature_logit(latent, _categories(latent))
    centre, std = float(f.mean()), float(f.std())
    f = f - centre
    # Solve mean(sigmoid(b + f)) = bad_rate by Newton's method (monotone, convex enough).
    b = math.log(bad_rate / (1.0 - bad_rate))
    for _ in range(50):
        p = _sigmoid(b + f)
        err = float(p.mean()) - bad_rate
        if abs(err) < 1e-10:
            break
        b -= err / float((p * (1.0 - p)).mean())
    return centre, std, b


def _month_rng(seed: int, k: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_MONTH_STREAM, k))))


def _reference_rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_REFERENCE_STREAM,))))


def _draw(s: Scenario, rng: np.random.Generator, n: int, drifted: bool, days_in_month: int) -> dict:
    """Columnar draw of ``n`` records. The draw order never depends on the drift knobs, so
    a drifted month consumes the same random numbers as the same month without drift."""
    width = len(FEATURES)
    # Fixed draw order: latent, model noise, independent logit, label uniforms,
    # labelled-share uniforms, days.
    latent = rng.standard_normal((n, width)) @ _CHOLESKY_T
    noise = rng.standard_normal(n)
    indep = rng.standard_normal(n)
    u_label = rng.random(n)
    u_labelled = rng.random(n)
    days = np.sort(rng.integers(1, days_in_month + 1, size=n))

    if drifted and s.population_shift:
        mask = np.array([f in s.drifted_features for f in FEATURES])
        latent = latent + s.population_shift * _RISK_DIRECTION * mask

    cats = _categories(latent)
    centre, std, intercept = _calibration(float(s.bad_rate))
    f = _feature_logit(latent, cats) - centre

    model_logit = intercept + f + _MODEL_NOISE * noise
    if drifted:
        model_logit = model_logit + s.score_shift
    score = np.round(_sigmoid(model_logit), 6)

    label_f = f
    if drifted and s.performance_decay > 0.0:
        # Correlation with the feature logit falls to 1 - decay; the variance is kept.
        keep = 1.0 - s.performance_decay
        label_f = keep * f + math.sqrt(1.0 - keep * keep) * std * indep
    target = (u_label < _sigmoid(intercept + label_f)).astype(np.int64)

    # Exactly round(n * label_fraction) labelled records, chosen at random.
    n_labelled = int(round(n * s.label_fraction))
    labelled = np.zeros(n, dtype=bool)
    if n_labelled:
        labelled[np.argsort(u_labelled, kind="stable")[:n_labelled]] = True

    age = np.clip(np.rint(41.0 + 12.0 * latent[:, 3]), 18, 90).astype(np.int64)
    months_employed = np.minimum(
        np.rint(np.exp(3.7 + 0.9 * latent[:, 4])), (age - 18) * 12
    ).astype(np.int64)
    return {
        "score": score,
        "target": target,
        "labelled": labelled,
        "days": days,
        "income": np.round(np.exp(10.8 + 0.55 * latent[:, 0]), 2),
        "debt_to_income": np.round(np.minimum(np.exp(math.log(0.28) + 0.5 * latent[:, 1]), 5.0), 4),
        "utilization": np.round(_sigmoid(-0.5 + 1.4 * latent[:, 2]), 4),
        "age": age,
        "months_employed": months_employed,
        "home_ownership": cats["home_ownership"],
        "purpose": cats["purpose"],
    }


def _check(s: Scenario) -> None:
    if not isinstance(s, Scenario):
        raise InvalidScenario(f"expected a Scenario, got {type(s).__name__}")


def generate(scenario: Scenario) -> Iterator[dict]:
    """Yield the scenario's records, month after month, in ``ref_date`` order.

    Each record is a JSON-ready dict: ``record_id``, ``model``, ``model_version``,
    ``ref_date`` (ISO date), ``score`` (probability of bad, 6 decimals), ``target``
    (0, 1 or None) and ``features``.

    >>> recs = list(generate(Scenario(months=2, monthly_volume=3)))
    >>> [r["record_id"] for r in recs][:4]
    ['synthetic-2024-01-0000000', 'synthetic-2024-01-0000001', 'synthetic-2024-01-0000002', 'synthetic-2024-02-0000000']
    >>> sorted(recs[0]), sorted(recs[0]["features"])
    (['features', 'model', 'model_version', 'record_id', 'ref_date', 'score', 'target'], ['age', 'debt_to_income', 'home_ownership', 'income', 'months_employed', 'purpose', 'utilization'])
    >>> all(0.0 <= r["score"] <= 1.0 and r["target"] in (0, 1) for r in recs)
    True
    """
    _check(scenario)
    home_names = CATEGORIES["home_ownership"]
    purpose_names = CATEGORIES["purpose"]
    model, version = scenario.model, scenario.model_version
    for k, month in enumerate(scenario.month_labels()):
        n = scenario.volume(k)
        if n == 0:
            continue
        year, mon = int(month[:4]), int(month[5:])
        ndays = calendar.monthrange(year, mon)[1]
        cols = _draw(scenario, _month_rng(scenario.seed, k), n, scenario.drifted(k), ndays)
        dates = [f"{month}-{d:02d}" for d in range(ndays + 1)]
        prefix = f"{model}-{month}-"
        target = [t if lab else None for t, lab in zip(cols["target"].tolist(), cols["labelled"].tolist(), strict=True)]
        rows = zip(
            cols["days"].tolist(),
            cols["score"].tolist(),
            target,
            cols["income"].tolist(),
            cols["debt_to_income"].tolist(),
            cols["utilization"].tolist(),
            cols["age"].tolist(),
            cols["months_employed"].tolist(),
            cols["home_ownership"].tolist(),
            cols["purpose"].tolist(),
            strict=True,
        )
        for i, (day, score, tgt, inc, dti, util, age, emp, home, purp) in enumerate(rows):
            yield {
                "record_id": f"{prefix}{i:07d}",
                "model": model,
                "model_version": version,
                "ref_date": dates[day],
                "score": score,
                "target": tgt,
                "features": {
                    "income": inc,
                    "debt_to_income": dti,
                    "utilization": util,
                    "age": age,
                    "months_employed": emp,
                    "home_ownership": home_names[home],
                    "purpose": purpose_names[purp],
                },
            }


def _reference_columns(scenario: Scenario, n: int) -> dict:
    _check(scenario)
    if int(n) != n or n < 1:
        raise InvalidScenario(f"n must be a positive integer, got {n!r}")
    # Like month 0 without drift: the drift knobs are ignored, every record labelled.
    return _draw(
        replace(scenario, label_fraction=1.0),
        _reference_rng(scenario.seed),
        int(n),
        drifted=False,
        days_in_month=28,
    )


def reference_scores(scenario: Scenario, n: int = 20000) -> np.ndarray:
    """The model's test-set scores: ``n`` draws like month 0 without drift, own seed.

    The same draw as :func:`reference_frame`'s ``score`` column.

    >>> ref = reference_scores(SCENARIOS["baseline"], n=1000)
    >>> ref.shape, ref.dtype.name, bool(((ref >= 0) & (ref <= 1)).all())
    ((1000,), 'float64', True)
    >>> bool((ref == reference_scores(SCENARIOS["baseline"], n=1000)).all())
    True
    """
    return _reference_columns(scenario, n)["score"]


def reference_frame(scenario: Scenario, n: int = 20000) -> pd.DataFrame:
    """The model's test set: columns ``score``, ``TARGET`` (0/1) and the features.

    >>> df = reference_frame(SCENARIOS["baseline"], n=500)
    >>> list(df.columns)
    ['score', 'TARGET', 'income', 'debt_to_income', 'utilization', 'age', 'months_employed', 'home_ownership', 'purpose']
    >>> len(df), sorted(df["TARGET"].unique().tolist())
    (500, [0, 1])
    >>> bool((df["score"].to_numpy() == reference_scores(SCENARIOS["baseline"], n=500)).all())
    True
    """
    cols = _reference_columns(scenario, n)
    frame = {"score": cols["score"], "TARGET": cols["target"]}
    for name in FEATURES:
        values = cols[name]
        if name in CATEGORIES:
            values = np.asarray(CATEGORIES[name], dtype=object)[values]
        frame[name] = values
    return pd.DataFrame(frame)


def monthly_counts(scenario: Scenario) -> dict[str, int]:
    """Records per ``YYYY-MM``, exactly what :func:`generate` yields (in month order).

    Every month of the scenario is a key; a month whose volume is 0 maps to 0 (and
    :func:`generate` yields nothing for it).

    >>> monthly_counts(Scenario(months=3, monthly_volume=100, drift_start=1, volume_factor=0.0))
    {'2024-01': 100, '2024-02': 0, '2024-03': 0}
    >>> monthly_counts(SCENARIOS["volume_spike"])["2024-07"]
    15000
    """
    _check(scenario)
    return {month: scenario.volume(k) for k, month in enumerate(scenario.month_labels())}
