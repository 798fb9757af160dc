"""Feature drift against a reference profile: bucket counts, PSI, KS and chi-square per feature.

A :class:`FeatureProfile` describes the model's reference sample (its test set, from the
model registry) feature by feature, as plain integer counts; a :class:`FeatureCounter`
counts live records into the same buckets (river style, mergeable, Redis-ready); and
:func:`feature_drift` compares the two.

The package's rooms: :mod:`.values` (constants, reading a live value), :mod:`.profile` (the
reference), :mod:`.counter` (live counts), :mod:`.encoding` (their Redis hash form), :mod:`.drift`.

Conventions (all exact, integer counts):

* **Numeric** features are cut at the reference's quantiles: ``edges`` are the interior
  cut points ``np.quantile(values, k / buckets, method="inverted_cdf")`` for
  k = 1 .. buckets - 1, duplicates collapsed and an edge at the reference's maximum
  dropped, so every bucket holds reference mass (heavy ties give fewer buckets). Bucket
  ``i`` holds the values in ``(edges[i-1], edges[i]]`` (with edges[-1] = -inf and
  edges[len] = +inf), i.e. ``np.searchsorted(edges, x, side="left")``; ``counts`` has
  ``len(edges) + 1`` entries. +-inf are values (end buckets); None, NaN, pd.NA, a
  string that is not a number and any non-scalar (list, dict, array...) are *missing*.
* **Categorical** features (object, string, category and bool columns) count each
  category by its text (``str(value)``; a bool is ``"True"``/``"False"``); None, NaN,
  pd.NA and non-scalars are missing. The reference keeps its ``max_categories`` most
  frequent categories (ties by name) and lumps the rest as ``"__other__"``. Live
  categories absent from the reference are *unseen* and keep their own name, at most
  ``max_categories`` distinct unseen names per feature: the alphabetically first ones
  (a rule that does not depend on arrival order, so merging stays exact); the others
  count under ``"__other__"``, also unseen. If the reference itself has ``"__other__"``,
  every live category absent from it counts there, as the reference did (not unseen).
  In Redis, where batches merge, the batch script keeps the first ``MONITOR_MAX_UNSEEN_CATEGORIES``
  unseen names of a feature and month to arrive and counts later new ones under ``"__other__"``
  (see :meth:`FeatureCounter.split_redis_fields`): the names kept then depend on arrival order,
  the counts (total, unseen, missing, reference categories) do not.
* A profile feature absent from a live record counts as missing; a record's feature that
  is not in the profile is ignored. Missing values are left out of PSI, KS and chi-square
  and reported as ``missing_share``.
"""

from monitor.stats.features.counter import FeatureCounter
from monitor.stats.features.drift import FeatureDrift, feature_drift
from monitor.stats.features.encoding import UNSEEN_NAMES_PART
from monitor.stats.features.profile import (
    CategoricalReference,
    FeatureProfile,
    NumericReference,
    Reference,
)
from monitor.stats.features.values import (
    CATEGORICAL,
    DEFAULT_BUCKETS,
    DEFAULT_MAX_CATEGORIES,
    MAX_UNSEEN_LISTED,
    MISSING_FIELD,
    NON_FEATURE_COLUMNS,
    NUMERIC,
    OTHER,
)

__all__ = [
    "CATEGORICAL",
    "DEFAULT_BUCKETS",
    "DEFAULT_MAX_CATEGORIES",
    "MAX_UNSEEN_LISTED",
    "MISSING_FIELD",
    "NON_FEATURE_COLUMNS",
    "NUMERIC",
    "OTHER",
    "UNSEEN_NAMES_PART",
    "CategoricalReference",
    "FeatureCounter",
    "FeatureDrift",
    "FeatureProfile",
    "NumericReference",
    "Reference",
    "feature_drift",
]
