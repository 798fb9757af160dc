"""Reference consumers the benchmark measures the worker against, each in its own process.

``python -m monitor.bench.baselines KIND --topic T --bootstrap HOST:PORT --redis URL --expected N
--result-key KEY --group G`` consumes ``T`` from the earliest offsets with a fresh consumer group and,
once it has handled ``N`` records, writes to the Redis hash ``KEY``: ``first_ts`` and ``last_ts``
(wall-clock seconds of the first and the N-th record handled, so process start-up and the group
join are excluded), ``interval_records`` (records handled between the two), ``cpu_s`` (CPU seconds
of the process between the two), ``records``, ``messages``, ``rss_kb`` and ``done``. The benchmark then stops the process.

Kinds:

- ``raw``: aiokafka consumer (group, earliest, ``getmany`` with a large ``max_records``) and
  ``orjson.loads`` of every message: the Kafka client's ceiling. Timed from the end of the first
  fetched batch to the last record decoded, counting the records after the first batch (as the
  worker is timed from its first count).
- ``noop``: a faust agent that does nothing with the events (``async for _ in stream``).
- ``naive``: the straightforward faust + Redis implementation: per event ``orjson.loads``,
  ``ScoredRecord.model_validate`` per record, then one ``await redis.hincrby(...)`` per record on a
  hash per (model, month, label) keyed by score bin.

The faust apps use the worker's settings (monitor/worker/app.py): ``store="memory://"``, the web server
off, ``topic_disable_leader``, earliest offsets, session timeout 3 s, heartbeat 1 s, rebalance
timeout 3 s, and run under ``faust.Worker`` like ``monitor worker``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

import orjson

KINDS = ("raw", "noop", "naive")


def rss_kb(pid: int | None = None) -> int | None:
    """Resident set size of a process in kB (``VmRSS`` of /proc/<pid>/status), None if it is gone.

    >>> rss_kb() > 0
    True
    """
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def connection_settings(args: argparse.Namespace):
    """Settings for this process's clients: ``--bootstrap`` and ``--redis``, the credentials from the
    environment (MONITOR_*), as every client of the product gets them (monitor.connect)."""
    from monitor.settings import Settings

    return Settings(kafka_bootstrap=args.bootstrap, redis_url=args.redis)


async def write_result(settings, key: str, first_ts: float, last_ts: float, interval_records: int,
                       records: int, messages: int, cpu_s: float) -> None:
    """Report to the benchmark; ``cpu_s``: CPU seconds this process used between first_ts and last_ts."""
    from monitor.state.probe import write_result as write

    await write(settings, key, {"first_ts": repr(first_ts), "last_ts": repr(last_ts), "cpu_s": repr(cpu_s),
                                "interval_records": interval_records, "records": records,
                                "messages": messages, "rss_kb": rss_kb() or 0, "pid": os.getpid(), "done": 1})


# ---- raw aiokafka ---------------------------------------------------------------------------------
async def run_raw(args: argparse.Namespace) -> None:
    from monitor.connect import kafka_consumer

    session_ms = int(args.session_timeout * 1000)
    consumer = kafka_consumer(connection_settings(args), args.topic, group_id=args.group,
                              auto_offset_reset="earliest", enable_auto_commit=False,
                              session_timeout_ms=session_ms, heartbeat_interval_ms=300)
    await consumer.start()
    loads = orjson.loads
    records = messages = 0
    fetched_ts = first_ts = None
    first_records = 0
    first_cpu = fetched_cpu = 0.0
    try:
        while records < args.expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=100_000)
            if not batches:
                continue
            if fetched_ts is None:
                fetched_ts, fetched_cpu = time.time(), time.process_time()
            for msgs in batches.values():
                for msg in msgs:
                    payload = loads(msg.value)
                    records += len(payload) if type(payload) is list else 1
                messages += len(msgs)
            if first_ts is None:
                # Timed from the end of the first batch (whose fetch cannot be timed: it may have been
                # filled during the group join), counting the records after it.
                first_ts, first_cpu, first_records = time.time(), time.process_time(), records
        last_ts = time.time()
        if first_ts is not None and records > first_records:  # first_ts is set once the first batch is in
            await write_result(connection_settings(args), args.result_key, first_ts, last_ts, records - first_records, records,
                               messages, time.process_time() - first_cpu)
        else:  # everything came in one fetch: time its decoding
            if fetched_ts is None:
                raise ValueError("nothing was fetched: --expected must be positive")
            await write_result(connection_settings(args), args.result_key, fetched_ts, last_ts, records, records, messages,
                               time.process_time() - fetched_cpu)
        # Stay alive (as the faust apps do) until the benchmark stops us.
        while True:
            await asyncio.sleep(3600)
    finally:
        await consumer.stop()


# ---- faust apps -----------------------------------------------------------------------------------
def faust_app(args: argparse.Namespace):
    import faust

    from monitor.security import faust_credentials

    session = args.session_timeout
    return faust.App(
        args.group,
        broker=[f"kafka://{host}" for host in args.bootstrap.split(",")],
        broker_credentials=faust_credentials(connection_settings(args)),
        store="memory://",
        datadir=str(Path(args.datadir) / f"{args.group}-data"),
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=max(session / 3, 0.3),
        broker_rebalance_timeout=session,
        stream_wait_empty=False,
    )


def build_noop(args: argparse.Namespace):
    app = faust_app(args)
    topic = app.topic(args.topic, value_serializer="raw", key_serializer="raw")
    expected = args.expected

    @app.agent(topic, name="bench_noop")
    async def noop(stream):
        n = 0
        first_ts = first_cpu = 0.0
        async for _value in stream:
            n += 1
            if n == 1:
                first_ts, first_cpu = time.time(), time.process_time()
            if n == expected:
                await write_result(connection_settings(args), args.result_key, first_ts, time.time(), n - 1, n, n,
                                   time.process_time() - first_cpu)

    return app


def build_naive(args: argparse.Namespace):
    from monitor.schema import ScoredRecord
    from monitor.state.probe import NaiveHistograms

    app = faust_app(args)
    topic = app.topic(args.topic, value_serializer="raw", key_serializer="raw")
    expected, resolution, prefix = args.expected, args.resolution, args.prefix
    loads, validate = orjson.loads, ScoredRecord.model_validate

    @app.agent(topic, name="bench_naive")
    async def naive(stream):
        hists = NaiveHistograms(connection_settings(args), prefix)
        records = messages = 0
        first_ts = first_cpu = 0.0
        async for value in stream:
            payload = loads(value)
            for obj in payload if isinstance(payload, list) else (payload,):
                record = validate(obj)
                label = "unlabeled" if record.target is None else "bad" if record.target == 1 else "good"
                await hists.add(record.model, record.model_version, record.month, label,
                                round(record.score / resolution))
                records += 1
                if records == 1:
                    first_ts, first_cpu = time.time(), time.process_time()
            messages += 1
            if records >= expected and first_ts:
                await write_result(connection_settings(args), args.result_key, first_ts, time.time(), records - 1, records,
                                   messages, time.process_time() - first_cpu)
                first_ts = 0.0  # once

    return app


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m monitor.bench.baselines", description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--redis", required=True, help="Redis URL for the result (and the naive app's counts)")
    parser.add_argument("--expected", type=int, required=True, help="records to handle before reporting")
    parser.add_argument("--result-key", required=True)
    parser.add_argument("--group", required=True, help="consumer group (the faust app id)")
    parser.add_argument("--session-timeout", type=float, default=3.0)
    parser.add_argument("--datadir", default=".")
    parser.add_argument("--resolution", type=float, default=1e-4)
    parser.add_argument("--prefix", default="bench-naive")
    parser.add_argument("--loglevel", default="warning")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.kind == "raw":
        try:
            asyncio.run(run_raw(args))
        except KeyboardInterrupt:
            pass
        return 0
    import faust

    app = build_noop(args) if args.kind == "noop" else build_naive(args)
    faust.Worker(app, loglevel=args.loglevel).execute_from_commandline()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
