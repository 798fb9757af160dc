"""The Redis key schema: every key name of the monitor is built here (and nowhere else).

Every key of one (model, version) carries the hash tag ``{model:version}``, so a Redis Cluster
keeps them in one slot and the batch script may touch them together. With prefix ``cm``:

====================================================  ======  ==========================================
key                                                   type    holds
====================================================  ======  ==========================================
``cm:models``                                         set     ``model:version`` of every model seen
``cm:{m:v}:months``                                   set     ``YYYY-MM`` of every month seen
``cm:{m:v}:count:YYYY-MM``                            hash    ``n``, ``bad``, ``good``, ``unlabeled``,
                                                              ``rev`` (bumped by every change)
``cm:{m:v}:hist:YYYY-MM:bad|good|unlabeled``          string  one int64 per score bin, big-endian
                                                              (``BITFIELD key GET i64 #<bin>``,
                                                              bin = round(score / resolution))
``cm:{m:v}:offsets``                                  hash    ``topic:partition`` -> last offset applied
``cm:{m:v}:fingerprints``                             hash    ``topic:partition`` -> fingerprint of the message
                                                              at that offset (monitor.worker.sources.fingerprint)
``cm:{m:v}:watermark``                                string  latest ref_date seen (ISO date)
``cm:{m:v}:watermarks``                               hash    ``topic:partition`` -> its latest ref_date
                                                              and when it last delivered (``date|unix s``);
                                                              ``~first`` -> when the first records came
``cm:{m:v}:epoch``                                    string  the state epoch this model's counts belong to
``cm:{m:v}:ref`` / ``cm:{m:v}:ref:meta``              string  reference (test-set) histogram, same layout
                                                      / hash  / its card (n, resolution, source, AUC)
``cm:{m:v}:features:YYYY-MM``                         hash    ``feature|bucket`` -> count (buckets of the
                                                              reference feature profile; at most
                                                              max_unseen_categories unseen names per
                                                              feature, the rest in ``feature|__other__``,
                                                              their number in ``feature|~unseen``)
``cm:{m:v}:ref:features``                             string  reference feature profile (JSON)
``cm:{m:v}:metrics``                                  hash    ``YYYY-MM`` -> JSON of the month's metrics
``cm:{m:v}:alerts``                                   hash    ``rule|window|month`` -> JSON alert state
``cm:{m:v}:outbox``                                   list    alert events not yet on the alerts topic
``cm:{m:v}:lease``                                    string  the worker that computes this model now
``cm:{m:v}:join:<period>:<bucket>``                   hash    record_id -> month and score bin (one integer,
                                                              ``join_value``) of an unlabelled record written
                                                              in the period, awaiting its outcome; ``j`` once
                                                              joined (expires at the period's end + TTL)
``cm:{m:v}:pending:<period>:<bucket>``                hash    record_id -> target (0/1) of an outcome that
                                                              came before its record (same expiry)
``cm:{m:v}:pending:periods``                          hash    ``<period>`` -> outcomes still pending in it
``cm:{m:v}:outcomes``                                 hash    ``joined``, ``pending``, ``pending_joined``,
                                                              ``duplicates`` (outcome counters)
``cm:due``                                            set     ``model:version`` of models whose metrics
                                                              are due now (a month reached a checkpoint)
``cm:alerts:history``                                 list    latest alert events, newest first (capped;
                                                              appended after the transition script)
``cm:worker``                                         hash    worker counters (records, dead_lettered...)
``cm:worker:loop_lag``                                hash    worker process (host:pid) -> JSON of its event-loop
                                                              lag (monitor.worker.looplag snapshot; dropped when stale)
``cm:epoch``                                          string  id of this state's lifetime (in the group name)
====================================================  ======  ==========================================

The delayed-label join buffer is bucketed: ``<bucket> = join_bucket(record_id)`` (crc32 modulo
``JOIN_BUCKETS``), so the records waiting for their outcome share a few thousand small listpack-encoded
hashes (the record id plus ~10 bytes per record once the buckets hold dozens: 38 bytes with
25-character ids at 40,000 waiting records) instead of one key each (~120 bytes by ``MEMORY USAGE``,
~180 with the key and expiry dictionaries). The buckets rotate by *write* period, not by the record's
month: ``<period> = floor(Redis TIME / JOIN_PERIOD_S)`` (30 days; Redis's clock decides, the caller's
only guesses it), and each bucket expires at a fixed
time, its period's end plus ``MONITOR_LABEL_TTL_DAYS``, set when it is written (a steady trickle of
writes cannot keep it alive): an entry is kept at least the TTL and at most a period more. The record's
month travels in the value, so an outcome probes at most ``ceil(TTL / JOIN_PERIOD_S) + 1`` buckets (5 at
120 days) whatever the model's months. Capacity: ~500k records written in one period stay compact (128
per bucket); more convert the fuller buckets to Redis's hashtable encoding (dearer per entry), still
correct. A replay of history writes all its months in one period: that is when the limit is nearest.

Every script declares in KEYS every key it touches (Redis's rule for scripts; a cluster client routes
a call by them): the join and pending buckets and the months' keys of an outcome call are named here
(:meth:`Keys.buckets`) for the period, pending periods and months the caller
believes current, and the script refuses the call before any write when Redis says otherwise
(:mod:`monitor.state.joins`).

``<prefix>:notify:firing`` / ``<prefix>:notify:delivered:<sink>:<event_id>`` (monitor notify: the
alerts firing now, hash alert_id -> event; a delivered event's mark, string with a TTL),
``<prefix>:classic:<endpoint>:last`` (the classic API's last result, string) and
``<prefix>:artifact:<name>:<version>`` (a model artifact's trusted sha256, string) are outside any
model's hash tag, like ``cm:due``, ``cm:alerts:history``, ``cm:worker``, ``cm:worker:loop_lag`` and ``cm:epoch``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

LABELS = ("bad", "good", "unlabeled")
"""Histogram names by label: target 1, target 0, no target yet."""

# Redis keeps a hash of up to 128 entries (hash-max-listpack-entries) in a compact listpack: 4096
# buckets keep up to ~500k records waiting from one write period compact.
JOIN_BUCKETS = 4096

BUCKET_NAMES = [str(bucket) for bucket in range(JOIN_BUCKETS)]  # formatted once: calls declare hundreds

JOIN_PERIOD_S = 30 * 86400
"""Length of a join buffer's write period: a bucket holds the records (or early outcomes) written in
one period and expires at the period's end plus the label TTL, so an outcome probes at most
``ceil(TTL / JOIN_PERIOD_S) + 1`` buckets (5 with the default 120 days), however many months the model
has. Changing it orphans the buffered records: keep it."""

MONTH_ORIGIN = 2000 * 12
"""Month index of 2000-01: a waiting record's value is ``(month index - MONTH_ORIGIN) * bins + bin``,
small enough for listpack's 24-bit integers until 2069 at the default resolution."""


def join_bucket(record_id: str) -> int:
    """The bucket of a record's entry in the join buffer (``join:<period>:<bucket>``, ``pending:<period>:<bucket>``).

    >>> join_bucket("r1"), join_bucket("r42"), 0 <= join_bucket("x" * 256) < JOIN_BUCKETS
    (2481, 1883, True)
    """
    return zlib.crc32(record_id.encode()) % JOIN_BUCKETS


def join_period(unix_s: float) -> int:
    """The write period of the join buffer at this Redis time (``join:<period>:<bucket>``).

    >>> join_period(0), join_period(JOIN_PERIOD_S - 1), join_period(JOIN_PERIOD_S)
    (0, 0, 1)
    """
    return int(unix_s // JOIN_PERIOD_S)


def join_value(month: str, score_bin: int, bins: int) -> int:
    """What the join buffer keeps of a waiting record: its month and score bin as one integer.

    >>> join_value("2000-01", 7, 10_001), join_value("2024-05", 0, 10_001), join_value("1999-12", 3, 101)
    (7, 2920292, -98)
    """
    year, mon = int(month[:4]), int(month[5:7])
    return (year * 12 + mon - 1 - MONTH_ORIGIN) * bins + score_bin


def join_month_bin(value: int, bins: int) -> tuple[str, int]:
    """The month and score bin of a join buffer value (the inverse of :func:`join_value`).

    >>> join_month_bin(2920292, 10_001), join_month_bin(-98, 101)
    (('2024-05', 0), ('1999-12', 3))
    """
    index, score_bin = divmod(value, bins)
    index += MONTH_ORIGIN
    return f"{index // 12:04d}-{index % 12 + 1:02d}", score_bin


class Keys:
    """The key names of one deployment (one key prefix).

    >>> k = Keys("cm")
    >>> k.base("m", "1"), k.count("m", "1", "2024-01"), k.hist("m", "1", "2024-01", "bad")
    ('cm:{m:1}', 'cm:{m:1}:count:2024-01', 'cm:{m:1}:hist:2024-01:bad')
    >>> k.of("m", "1", "alerts"), k.due(), k.history(), k.notify_delivered("webhook", "e1")
    ('cm:{m:1}:alerts', 'cm:due', 'cm:alerts:history', 'cm:notify:delivered:webhook:e1')
    """

    def __init__(self, prefix: str):
        self.prefix = prefix

    # ---- one key per deployment ----------------------------------------------------------
    def models(self) -> str:
        return f"{self.prefix}:models"

    def worker(self) -> str:
        return f"{self.prefix}:worker"

    def worker_loop_lag(self) -> str:
        return f"{self.prefix}:worker:loop_lag"

    def due(self) -> str:
        return f"{self.prefix}:due"

    def history(self) -> str:
        return f"{self.prefix}:alerts:history"

    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    def pattern(self) -> str:
        """Every key of the deployment (SCAN MATCH)."""
        return f"{self.prefix}:*"

    def notify_firing(self) -> str:
        return f"{self.prefix}:notify:firing"

    def notify_delivered(self, sink: str, event_id: str) -> str:
        return f"{self.prefix}:notify:delivered:{sink}:{event_id}"

    def classic_last(self, endpoint: str) -> str:
        return f"{self.prefix}:classic:{endpoint}:last"

    def artifact(self, name: str, version: str) -> str:
        return f"{self.prefix}:artifact:{name}:{version}"

    # ---- keys of one (model, version), in its hash tag -------------------------------------
    def base(self, model: str, version: str) -> str:
        return f"{self.prefix}:{{{model}:{version}}}"

    def of(self, model: str, version: str, name: str) -> str:
        """A model key without a month: ``offsets``, ``fingerprints``, ``months``, ``watermark``,
        ``watermarks``, ``epoch``, ``ref``, ``ref:meta``, ``ref:features``, ``metrics``, ``alerts``,
        ``outbox``, ``lease``, ``outcomes``, ``pending:periods``."""
        return f"{self.base(model, version)}:{name}"

    def count(self, model: str, version: str, month: str) -> str:
        return f"{self.base(model, version)}:count:{month}"

    def hist(self, model: str, version: str, month: str, label: str) -> str:
        return f"{self.base(model, version)}:hist:{month}:{label}"

    def features(self, model: str, version: str, month: str) -> str:
        return f"{self.base(model, version)}:features:{month}"

    def buckets(self, model: str, version: str, kind: str, periods: Iterable[int], buckets: Iterable[int]) -> list[str]:
        """The ``join`` or ``pending`` buckets of these periods, each period's buckets in turn (one
        script call declares hundreds: the model's base is formatted once).

        >>> Keys("cm").buckets("m", "1", "join", [5, 4], [17, 3])
        ['cm:{m:1}:join:5:17', 'cm:{m:1}:join:5:3', 'cm:{m:1}:join:4:17', 'cm:{m:1}:join:4:3']
        >>> Keys("cm").buckets("m", "1", "pending", [684], [17])
        ['cm:{m:1}:pending:684:17']
        """
        if kind not in ("join", "pending"):
            raise ValueError(f"not a join buffer bucket kind: {kind}")
        names = [BUCKET_NAMES[bucket] for bucket in buckets]
        out: list[str] = []
        for period in periods:
            head = f"{self.base(model, version)}:{kind}:{period}:"
            out += [head + name for name in names]
        return out


def alert_field(rule: str, window: str, month: str) -> str:
    """The alert's field in the model's alerts hash (``cm:{m:v}:alerts``).

    >>> alert_field("feature_psi:income", "rolling", "2024-03")
    'feature_psi:income|rolling|2024-03'
    """
    return f"{rule}|{window}|{month}"


def parse_alert_field(field: str, state: dict) -> tuple[str, str, str]:
    """(rule, window, month) of an alerts hash field; a field of an older release (``rule|window``)
    takes the month from its state.

    >>> parse_alert_field("psi|month|2024-03", {}), parse_alert_field("psi|rolling", {"month": "2024-02"})
    (('psi', 'month', '2024-03'), ('psi', 'rolling', '2024-02'))
    """
    parts = field.split("|")
    if len(parts) >= 3:
        return "|".join(parts[:-2]), parts[-2], parts[-1]
    return parts[0], parts[-1], state.get("month", "")
