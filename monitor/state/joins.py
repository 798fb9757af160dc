"""The delayed-label join buffer's script calls and how they declare its keys (Redis Cluster contract).

Every key a script touches is declared in its KEYS (a cluster client routes a call by them), but the
join buffer's keys depend on what only Redis knows: the write period of Redis's clock
(``join:<period>:<bucket>``, :func:`~monitor.state.keys.join_period` of Redis ``TIME``: one clock for
every worker), the periods whose pending buckets still hold outcomes (``pending:periods``) and, for an
outcome, the month of the record it joins (``count:<month>`` / ``hist:<month>:<label>``). So the caller
declares them optimistically: the period of its own clock corrected by what Redis told it before
(``join_clock_offset``), and per (model, version) the pending periods and outcome months it last
learnt. The scripts check these before any write and, when they are not the right ones, write nothing
and say what is ({-3, Redis's time}, {-4, the live pending periods}, {-5, the missing months}); the
caller learns it and calls again (at most :data:`JOIN_ATTEMPTS` calls). A model's first outcome call may
take one more round trip (its months), later ones none; a batch without outcomes pending none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from monitor.errors import MonitorError
from monitor.state.keys import JOIN_PERIOD_S, LABELS, join_period

JOIN_ATTEMPTS = 5
"""Calls of a join script before giving up: each retry follows a status that taught the caller what to
declare (the period, the pending periods, the months), so two or three suffice even at a period's edge."""

WRONG_PERIOD, UNDECLARED_PENDING, UNDECLARED_MONTHS = -3, -4, -5

DECLARED_OUTCOME_MONTHS = 12
"""Months an outcome call declares at most (those most recently needed, or more when one call needs
more): outcomes join the records of the last few months, and a model of 1,000 months would otherwise
declare all it ever joined (4 keys each) on every call. A month not declared costs one more call."""


class JoinKeysUnsettled(MonitorError):
    """A join script refused the declared keys :data:`JOIN_ATTEMPTS` times in a row (Redis's clock
    jumping, or pending periods / months changing faster than the calls): nothing was written."""


def words(raw: bytes | str | int) -> list[str]:
    """The words of a script's space-separated reply.

    >>> words(b"692 691"), words(b""), words(5)
    (['692', '691'], [], ['5'])
    """
    return (raw.decode() if isinstance(raw, bytes) else str(raw)).split()


def probed_periods(period: int, ttl: int) -> list[int]:
    """The periods whose join buckets may still hold a record at ``period``, newest first:
    ``ceil(ttl / JOIN_PERIOD_S) + 1`` of them (the script probes the same).

    >>> probed_periods(700, 120 * 86400)
    [700, 699, 698, 697, 696]
    """
    return list(range(period, period - math.ceil(ttl / JOIN_PERIOD_S) - 1, -1))


def bucket_indexes(buckets: Iterable[int]) -> dict[int, int]:
    """Each distinct bucket's index (1-based, first come first) in the declared buckets.

    >>> bucket_indexes([7, 3, 7, 9])
    {7: 1, 3: 2, 9: 3}
    """
    out: dict[int, int] = {}
    for bucket in buckets:
        out.setdefault(bucket, len(out) + 1)
    return out


class JoinOps:
    """Mixed into Store (``self.redis``, ``self.keys``, ``self.scripts``, ``self.hist_bytes``): the
    declared-key bookkeeping of the join scripts, and the outcome script's calls."""

    keys: Any
    scripts: Any
    hist_bytes: int

    def init_join_declarations(self) -> None:
        # Redis TIME minus this host's clock, as a -3 reply told it (0 until then). Tests set it to
        # simulate a skewed host clock.
        self.join_clock_offset = 0.0
        self._pending_periods: dict[tuple[str, str], list[int]] = {}  # live ones, newest first
        self._outcome_months: dict[tuple[str, str], list[str]] = {}

    def join_period_now(self) -> int:
        """The join buffer's write period by this host's clock, corrected by Redis's."""
        return join_period(time.time() + self.join_clock_offset)

    def declared_pending(self, model: str, version: str) -> list[int]:
        return self._pending_periods.get((model, version), [])

    def join_keys(self, model: str, version: str, periods: Iterable[int], buckets: Iterable[int]) -> list[str]:
        """The join buckets of these periods (each period's buckets in turn)."""
        return self.keys.buckets(model, version, "join", periods, buckets)

    def pending_keys(self, model: str, version: str, periods: Iterable[int], buckets: Iterable[int]) -> list[str]:
        return self.keys.buckets(model, version, "pending", periods, buckets)

    def learn_join_status(self, model: str, version: str, status: int, info: Any) -> None:
        """What a refused join call taught: Redis's clock, the live pending periods, missing months."""
        if status == WRONG_PERIOD:
            self.join_clock_offset = int(info) + 0.5 - time.time()  # TIME's second, its middle
        elif status == UNDECLARED_PENDING:
            self.remember_pending(model, version, info)
        elif status == UNDECLARED_MONTHS:  # every month the call needs, then the others learnt before
            needed = words(info)
            known = needed + [m for m in self._outcome_months.get((model, version), []) if m not in needed]
            self._outcome_months[(model, version)] = known[:max(DECLARED_OUTCOME_MONTHS, len(needed))]
        else:
            raise ValueError(f"unknown join script status {status}")

    def remember_pending(self, model: str, version: str, live: Any) -> None:
        self._pending_periods[(model, version)] = [int(p) for p in words(live)]

    # ---- outcomes (monitor.worker.outcomes) --------------------------------------------------------
    async def apply_outcomes(self, model: str, version: str, ttl: int, triples: list) -> list:
        """One outcome join (``triples``: flat record_id, target, join bucket); the script's flat reply:
        joined, pending, duplicates, then the months changed (see apply_outcomes.lua). Raises
        JoinKeysUnsettled after :data:`JOIN_ATTEMPTS` refused calls (nothing written)."""
        indexes = bucket_indexes(int(b) for b in triples[2::3])
        args_tail: list = []
        for i in range(0, len(triples), 3):
            args_tail += (triples[i], triples[i + 1], indexes[int(triples[i + 2])])
        for _ in range(JOIN_ATTEMPTS):
            keys, args = self.outcome_declaration(model, version, ttl, list(indexes))
            status, info, *reply = await self.scripts.apply_outcomes(keys=keys, args=args + args_tail)
            if status == 1:
                self.remember_pending(model, version, info)
                return reply
            self.learn_join_status(model, version, status, info)
        raise JoinKeysUnsettled(f"outcomes of {model}:{version}: the join buffer's keys kept changing "
                                f"({JOIN_ATTEMPTS} calls refused)")

    def outcome_declaration(self, model: str, version: str, ttl: int, buckets: list[int]) -> tuple[list[str], list]:
        """KEYS and the leading ARGV of an outcome call, as this worker believes them now."""
        period = self.join_period_now()
        pending = [period, *(p for p in self.declared_pending(model, version) if p != period)]
        months = self._outcome_months.get((model, version), [])
        keys = [self.keys.of(model, version, "outcomes"), self.keys.of(model, version, "pending:periods"),
                *self.join_keys(model, version, probed_periods(period, ttl), buckets),
                *self.pending_keys(model, version, pending, buckets)]
        for month in months:
            keys += [self.keys.count(model, version, month),
                     *(self.keys.hist(model, version, month, label) for label in LABELS)]
        args = [period, ttl, self.hist_bytes, len(buckets), " ".join(map(str, pending)), " ".join(months)]
        return keys, args
