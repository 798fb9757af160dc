"""Every metric of one window (model, month or rolling/cumulative window) in one call.

``compute_metrics`` never raises on empty data and never returns NaN: a metric that
is undefined (no labels, a single class, no reference) is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from monitor.errors import StatsError
from monitor.stats.histogram import DEFAULT_RESOLUTION, ScoreHistogram
from monitor.stats.ks import ks_adherence, ks_critical_value, ks_good_bad
from monitor.stats.psi import psi, psi_critical_value, psi_edges
from monitor.stats.roc import auc_quantization_bound, auc_standard_error, gini, roc_auc

PSI_BUCKETS = 10
ALPHA = 0.05


@dataclass
class LabelledHistograms:
    """The scores of a window split by label: bads (``pos``), goods (``neg``), not yet labelled.

    Exact counts; merging by ``+``/``+=`` and ``-`` (a late label moves a score from
    ``unlabeled`` to ``pos`` or ``neg``) loses nothing.

    >>> h = LabelledHistograms.empty(resolution=0.1)
    >>> h.pos.update(0.9); h.neg.update(0.2); h.unlabeled.update(0.5)
    >>> h.n, h.n_labelled, (h + h).n
    (3, 2, 6)
    """

    pos: ScoreHistogram = field(default_factory=ScoreHistogram)
    neg: ScoreHistogram = field(default_factory=ScoreHistogram)
    unlabeled: ScoreHistogram = field(default_factory=ScoreHistogram)

    def __post_init__(self):
        resolutions = {self.pos.resolution, self.neg.resolution, self.unlabeled.resolution}
        if len(resolutions) != 1:
            raise StatsError(f"pos, neg and unlabeled must share one resolution, got {sorted(resolutions)}")

    @classmethod
    def empty(cls, resolution: float = DEFAULT_RESOLUTION) -> LabelledHistograms:
        """Three empty histograms at one resolution (exact).

        >>> LabelledHistograms.empty(0.01).n
        0
        """
        return cls(ScoreHistogram(resolution), ScoreHistogram(resolution), ScoreHistogram(resolution))

    @property
    def resolution(self) -> float:
        """The shared bin width.

        >>> LabelledHistograms.empty(0.01).resolution
        0.01
        """
        return self.pos.resolution

    @property
    def n(self) -> int:
        """All records, labelled or not (exact).

        >>> LabelledHistograms.empty().n
        0
        """
        return self.pos.n + self.neg.n + self.unlabeled.n

    @property
    def n_labelled(self) -> int:
        """Records with a label (exact).

        >>> LabelledHistograms.empty().n_labelled
        0
        """
        return self.pos.n + self.neg.n

    def all(self) -> ScoreHistogram:
        """Every score of the window in one histogram, pos + neg + unlabeled (exact).

        >>> h = LabelledHistograms.empty(0.1); h.pos.update(0.3); h.unlabeled.update(0.3)
        >>> h.all().counts.tolist()
        [2]
        """
        return ScoreHistogram.merge([self.pos, self.neg, self.unlabeled])

    def copy(self) -> LabelledHistograms:
        """An independent copy (exact).

        >>> h = LabelledHistograms.empty(); c = h.copy(); c.pos.update(0.5); h.n, c.n
        (0, 1)
        """
        return LabelledHistograms(self.pos.copy(), self.neg.copy(), self.unlabeled.copy())

    def __iadd__(self, other: LabelledHistograms) -> LabelledHistograms:
        """Merge another window into this one, label by label (exact).

        >>> h = LabelledHistograms.empty(); o = LabelledHistograms.empty(); o.neg.update(0.1)
        >>> h += o; h.neg.n
        1
        """
        self.pos += other.pos
        self.neg += other.neg
        self.unlabeled += other.unlabeled
        return self

    def __add__(self, other: LabelledHistograms) -> LabelledHistograms:
        """The merge as a new object (exact).

        >>> (LabelledHistograms.empty() + LabelledHistograms.empty()).n
        0
        """
        result = self.copy()
        result += other
        return result

    def __isub__(self, other: LabelledHistograms) -> LabelledHistograms:
        """Remove another window's counts, label by label; StatsError if a count would go negative.

        >>> h = LabelledHistograms.empty(); h.pos.update(0.1); h -= h.copy(); h.n
        0
        """
        self.pos -= other.pos
        self.neg -= other.neg
        self.unlabeled -= other.unlabeled
        return self

    def __sub__(self, other: LabelledHistograms) -> LabelledHistograms:
        """The difference as a new object; StatsError if a count would go negative.

        >>> h = LabelledHistograms.empty(); h.pos.update(0.1); (h - h).n
        0
        """
        result = self.copy()
        result -= other
        return result

    def to_dict(self) -> dict:
        """Plain JSON-serialisable state; exact round trip with :meth:`from_dict`.

        >>> h = LabelledHistograms.empty(0.5); h.neg.update(1.0)
        >>> LabelledHistograms.from_dict(h.to_dict()) == h
        True
        """
        return {"pos": self.pos.to_dict(), "neg": self.neg.to_dict(), "unlabeled": self.unlabeled.to_dict()}

    @classmethod
    def from_dict(cls, state) -> LabelledHistograms:
        """Rebuild from :meth:`to_dict` output (exact).

        >>> LabelledHistograms.from_dict(LabelledHistograms.empty().to_dict()).n
        0
        """
        return cls(*(ScoreHistogram.from_dict(state[k]) for k in ("pos", "neg", "unlabeled")))


@dataclass(frozen=True)
class MetricSet:
    """All metrics of one window; None wherever a metric is undefined, never NaN.

    ``auc_bound`` and ``ks_bound`` are exact bounds on the distance between the value
    on quantized scores reported here and the value on the raw scores.

    >>> m = compute_metrics(LabelledHistograms.empty(), None)
    >>> m.n, m.auc, m.to_dict()["psi"]
    (0, None, None)
    """

    n: int
    n_labelled: int
    n_pos: int
    n_neg: int
    bad_rate: float | None
    auc: float | None
    auc_bound: float | None
    auc_se: float | None
    gini: float | None
    ks_good_bad: float | None
    ks_good_bad_location: float | None
    ks_d: float | None
    ks_location: float | None
    ks_pvalue: float | None
    ks_bound: float | None
    ks_critical: float | None
    psi: float | None
    psi_critical: float | None
    reference_n: int | None

    def to_dict(self) -> dict:
        """Plain JSON types (int, float, None); exact copy of the fields.

        >>> sorted(compute_metrics(LabelledHistograms.empty(), None).to_dict())[:3]
        ['auc', 'auc_bound', 'auc_se']
        """
        return {name: getattr(self, name) for name in _METRIC_FIELDS}  # flat fields: asdict's deep copy is not needed


_METRIC_FIELDS = tuple(f.name for f in fields(MetricSet))


def compute_metrics(h: LabelledHistograms, reference: ScoreHistogram | None) -> MetricSet:
    """AUC, Gini, KS good/bad on the labelled scores; KS adherence and PSI of all scores vs the reference.

    Exact on the quantized scores (integer counts, one division each), with the
    distance to raw-score AUC and KS bounded by ``auc_bound`` and ``ks_bound``.

    >>> h = LabelledHistograms.empty(resolution=0.1)
    >>> h.pos.update_many([0.9, 0.8, 0.6]); h.neg.update_many([0.1, 0.3, 0.6, 0.2])
    >>> ref = ScoreHistogram.from_scores([0.1, 0.2, 0.3, 0.5, 0.7, 0.9], resolution=0.1)
    >>> m = compute_metrics(h, ref)
    >>> m.n, round(m.bad_rate, 4), round(m.auc, 4), round(m.gini, 4), round(m.auc_bound, 4)
    (7, 0.4286, 0.9583, 0.9167, 0.0417)
    >>> round(m.ks_good_bad, 4), round(m.ks_d, 4), round(m.ks_pvalue, 4), m.reference_n
    (0.75, 0.2381, 0.9627, 6)
    """
    n_pos, n_neg = h.pos.n, h.neg.n
    n_labelled = n_pos + n_neg
    auc = roc_auc(h.pos, h.neg)
    good_bad = ks_good_bad(h.pos, h.neg)

    adherence = psi_value = psi_crit = ks_crit = reference_n = None
    live = h.all()
    if reference is not None:
        reference_n = reference.n
        adherence = ks_adherence(live, reference)
        psi_value = psi(live, reference, PSI_BUCKETS)
        if psi_value is not None:
            buckets_used = psi_edges(reference, PSI_BUCKETS).size + 1
            psi_crit = psi_critical_value(live.n, reference.n, buckets_used, ALPHA)
        ks_crit = ks_critical_value(live.n, reference.n, ALPHA)

    return MetricSet(
        n=h.n,
        n_labelled=n_labelled,
        n_pos=n_pos,
        n_neg=n_neg,
        bad_rate=n_pos / n_labelled if n_labelled else None,
        auc=auc,
        auc_bound=auc_quantization_bound(h.pos, h.neg),
        auc_se=auc_standard_error(auc, n_pos, n_neg),
        gini=gini(auc),
        ks_good_bad=good_bad.d if good_bad else None,
        ks_good_bad_location=good_bad.location if good_bad else None,
        ks_d=adherence.d if adherence else None,
        ks_location=adherence.location if adherence else None,
        ks_pvalue=adherence.pvalue if adherence else None,
        ks_bound=adherence.bound if adherence else None,
        ks_critical=ks_crit,
        psi=psi_value,
        psi_critical=psi_crit,
        reference_n=reference_n,
    )
