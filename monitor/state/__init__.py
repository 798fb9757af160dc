"""The state layer: the only code that talks to Redis.

- :mod:`monitor.state.keys`: the key schema (every key name is built there);
- :mod:`monitor.state.scripts`: every Lua script, one ``.lua`` file each, registered once per client;
- :mod:`monitor.state.store`: :class:`Store`, the typed operations (apply a batch, offsets, epoch, reference,
  metrics, reads), with :mod:`monitor.state.alerts` (alert states and transitions, outbox, history, due set,
  lease, the notifier's marks) and :mod:`monitor.state.admin` (outcome joins, health, wiping, fault helpers);
- :mod:`monitor.state.reads`: the reads of the API and the CLI (one read layer).

Clients come from :func:`monitor.connect.redis_client` (re-exported here); outside this package nothing
formats a key or calls Redis (tests/unit/test_state_boundary.py).
"""

from monitor.connect import redis_client
from monitor.state.keys import (
                                JOIN_BUCKETS,
                                JOIN_PERIOD_S,
                                LABELS,
                                MONTH_ORIGIN,
                                Keys,
                                join_bucket,
                                join_month_bin,
                                join_period,
                                join_value,
)
from monitor.state.store import (
                                ALERT_HISTORY_CAP,
                                BatchWrite,
                                EpochMismatch,
                                MonthChange,
                                MonthIncrements,
                                OffsetConflict,
                                Store,
                                StoredCardinality,
                                epoch_key,
                                month_changes,
                                state_epoch,
)

__all__ = [
                                "ALERT_HISTORY_CAP",
                                "BatchWrite",
                                "JOIN_BUCKETS",
                                "JOIN_PERIOD_S",
                                "LABELS",
                                "MONTH_ORIGIN",
                                "EpochMismatch",
                                "Keys",
                                "MonthChange",
                                "MonthIncrements",
                                "OffsetConflict",
                                "Store",
                                "StoredCardinality",
                                "epoch_key",
                                "join_bucket",
                                "join_month_bin",
                                "join_period",
                                "join_value",
                                "month_changes",
                                "redis_client",
                                "state_epoch",
]
