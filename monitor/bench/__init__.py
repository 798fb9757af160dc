"""``monitor bench``: where the worker stands against the Kafka client's ceiling, in one run.

Measures on throwaway servers (Tansu + redis-server on free loopback ports): (a) the raw aiokafka
consume + ``orjson`` decode ceiling, (b) a no-op faust agent, (c) a naive per-event faust + Redis
worker and (d) ``monitor worker`` on single-record and on JSON-array messages; the ratios of (d) to
the others; publish-to-alert and publish-to-state latency at a fixed rate; Redis memory per
(model, month) as its volume grows; the worker's RSS. Prints a table and writes JSON
(``artifacts/bench.json``). See ``monitor/bench/runner.py`` and docs/benchmarks.md.
"""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    """``monitor bench``; with ``--alerts``, the alert-quality benchmark (monitor/bench/alerts.py), with
    ``--scale`` the many-models benchmark (monitor/bench/scale.py), each with the other arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--alerts" in argv:
        from monitor.bench.alerts import main as alerts_main

        return alerts_main([a for a in argv if a != "--alerts"])
    if "--scale" in argv:
        from monitor.bench.scale import main as scale_main

        return scale_main([a for a in argv if a != "--scale"])
    from monitor.bench.runner import main as run_main

    return run_main(argv)
