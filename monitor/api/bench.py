"""Load benchmark of the state endpoints while the worker runs: ``python -m monitor.api.bench``.

What it does, all on loopback:

1. starts its own broker (Tansu) and redis-server on free ports (or uses ``--kafka-bootstrap`` and
   ``--redis-url``), with a fresh key prefix and topics;
2. loads a reference, starts a worker (``monitor worker``), publishes the synthetic ``demo``
   scenario and waits until the worker has counted and computed every month;
3. starts the API (``monitor api``) and a publisher (``monitor produce --synthetic baseline``) that
   keeps the worker folding records and recomputing metrics during the measurement;
4. runs ``--clients`` concurrent clients (200), each with its own keep-alive connection, for
   ``--duration`` seconds (bounded by ``--max-requests`` too): a request to one of the state
   endpoints, then a pause drawn uniformly in [0, 2 x ``--think-ms``] (a dashboard or script that
   polls), and again. One warm-up request per client (connection set-up, staggered over 1 s) is
   not measured;
5. prints p50 / p95 / p99 / max latency and requests/s, overall and per endpoint, against the
   target p99 < ``--target-p99-ms`` (100); then, for information, the same clients without pauses
   (closed loop: the API's saturation throughput, where latency is queueing by construction);
6. stops everything it started. Exit status 0 when the target is met.

The clients are a minimal keep-alive HTTP/1.1 client on uvloop (when installed) in this process, so
that generating the load costs little CPU; the worker, the publisher, the API, Redis and the broker
are other processes on the same machine (which the benchmark prints: the figures depend on it).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producers.synthetic import Scenario

@dataclass
class Sample:
    endpoint: str
    seconds: float
    status: int


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: int = 0

    def quantiles(self, endpoint: str | None = None) -> dict:
        values = sorted(s.seconds for s in self.samples if endpoint is None or s.endpoint == endpoint)
        if not values:
            return {"n": 0}

        def q(p: float) -> float:
            return values[min(len(values) - 1, int(round(p * (len(values) - 1))))] * 1000

        return {"n": len(values), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": values[-1] * 1000,
                "rps": len(values) / self.elapsed_s if self.elapsed_s else 0.0}


def endpoint_urls(model: str, version: str, months: list[str]) -> dict[str, list[str]]:
    """The state endpoints the clients hit, by name (one URL picked at random per request).

    >>> endpoint_urls("m", "1", ["2024-01"])["month"]
    ['/models/m/versions/1/months/2024-01']
    """
    return {
        "models": ["/models"],
        "months": [f"/models/{model}/versions/{version}/months"],
        "month": [f"/models/{model}/versions/{version}/months/{m}" for m in months],
        "alerts": ["/alerts?limit=20", f"/alerts?model={model}&status=firing&limit=20"],
        "alert_states": ["/alerts/states?status=firing"],
        "health": ["/health"],
    }


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads ``Content-Length`` bodies.

    A load generator should cost the machine as little as possible (like wrk): this one does no
    more than write the request line and read the status, headers and body, a fraction of a
    general client's CPU, so the latency measured is the server's, not the client's.
    """

    def __init__(self, host: str, port: int, token: str | None = None):
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""  # an API read token (monitor.api.auth)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:  # set together (close() drops the writer)
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.auth}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise ConnectionError(f"{target}: no Content-Length in the answer")
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def run_load(base_url: str, urls: dict[str, list[str]], clients: int, duration_s: float, think_s: float,
                   max_requests: int, timeout_s: float = 10.0, token: str | None = None) -> LoadResult:
    """``clients`` concurrent clients (one keep-alive connection each) for ``duration_s`` (or
    ``max_requests`` in all), pausing uniform(0, 2 think_s) between requests; latency measured per
    request (the warm-up request that opens each connection is not)."""
    from urllib.parse import urlsplit

    where = urlsplit(base_url)
    names = list(urls)
    result = LoadResult()
    budget = [max_requests]
    if where.hostname is None or where.port is None:
        raise ValueError(f"{base_url}: a host and a port are needed")
    connections = [Connection(where.hostname, where.port, token) for _ in range(clients)]

    async def warm_up(conn: Connection) -> None:
        await asyncio.sleep(random.uniform(0, 1.0))  # noqa: S311 - benchmark jitter/data, not security
        await asyncio.wait_for(conn.get("/health"), timeout_s)

    try:
        await asyncio.gather(*(warm_up(c) for c in connections))
        gc.collect()
        started = time.perf_counter()
        stop = started + duration_s

        async def client(i: int, conn: Connection) -> None:
            rng = random.Random(i)  # noqa: S311 - benchmark jitter/data, not security
            await asyncio.sleep(rng.uniform(0, 2 * think_s))
            while time.perf_counter() < stop and budget[0] > 0:
                budget[0] -= 1
                name = names[rng.randrange(len(names))]
                url = rng.choice(urls[name])
                t0 = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(conn.get(url), timeout_s)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                    status = 0
                    conn.close()  # reconnects on the next request
                result.samples.append(Sample(name, time.perf_counter() - t0, status))
                if status != 200:
                    result.errors += 1
                if think_s > 0:
                    await asyncio.sleep(rng.uniform(0, 2 * think_s))

        gc.disable()  # a collection pausing this process would show as server latency
        try:
            await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
        finally:
            gc.enable()
        result.elapsed_s = time.perf_counter() - started
    finally:
        for conn in connections:
            conn.close()
    return result


def report(title: str, result: LoadResult, names: list[str], target_ms: float | None) -> str:
    lines = [title, f"  {'endpoint':14} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}"]
    for name in [*names, None]:
        q = result.quantiles(name)
        if not q["n"]:
            continue
        lines.append(f"  {name or 'ALL':14} {q['n']:>9} {q['rps']:>8.0f} {q['p50']:>8.1f} {q['p95']:>8.1f} "
                     f"{q['p99']:>8.1f} {q['max']:>8.1f}")
    lines.append(f"  errors (non-200 or no answer): {result.errors}")
    if target_ms is not None:
        p99 = result.quantiles()["p99"]
        lines.append(f"  target p99 < {target_ms:.0f} ms: {'MET' if p99 < target_ms and not result.errors else 'NOT MET'}"
                     f" (p99 {p99:.1f} ms)")
    return "\n".join(lines)


async def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Until ``url`` answers 200 (RuntimeError after ``timeout_s`` or if ``proc`` exits)."""
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the process serving {url} exited with code {proc.returncode}")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def start_api_process(settings, port: int, log: Path, host: str = "127.0.0.1") -> subprocess.Popen:
    """``monitor api`` in a child process with the given settings (as a user runs it)."""
    from monitor.ops.processes import settings_env

    env = settings_env(settings)
    env["MONITOR_DATA_DIR"] = str(settings.data_dir)
    return _popen([sys.executable, "-m", "monitor", "api", "--host", host, "--port", str(port)], env, log)


def _popen(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: S603 - our argv
                            stdin=subprocess.DEVNULL, start_new_session=True)


async def prepare_state(settings, run_dir: Path, log, procs: list[subprocess.Popen]) -> tuple[dict[str, int], Scenario]:
    """Reference, worker (appended to ``procs`` at once, so it is stopped whatever happens), the demo
    scenario published and fully counted and computed."""
    from monitor.ops import infra
    from monitor.ops.processes import start_worker, wait_until_caught_up
    from monitor.ops.reference import save_reference
    from monitor.state import Store
    from producers.publish import publish
    from producers.synthetic import SCENARIOS, generate, monthly_counts, reference_frame

    spec = replace(SCENARIOS["demo"], model="bench")
    await infra.create_topics(settings)
    ref = reference_frame(spec, n=10_000)
    await save_reference(settings, spec.model, spec.model_version, ref["score"].to_numpy(), ref["TARGET"].to_numpy(),
                         source="bench reference")
    worker = start_worker(settings, run_dir / "worker.log", loglevel="warning")
    procs.append(worker)
    log(f"worker started (pid {worker.pid}); publishing {sum(monthly_counts(spec).values())} records of the "
        f"'demo' scenario as model {spec.model!r}")
    await publish(generate(spec), settings, per_message=20)
    store = Store.connect(settings)
    try:
        if not await wait_until_caught_up(store, monthly_counts(spec), spec.model, spec.model_version, 180, worker):
            raise RuntimeError(f"the worker did not catch up within 180 s; see {run_dir / 'worker.log'}")
    finally:
        await store.close()
    return monthly_counts(spec), spec


async def worker_records(settings) -> int:
    from monitor.state import Store

    store = Store.connect(settings)
    try:
        return (await store.worker_counters()).get("records", 0)
    finally:
        await store.close()


async def delete_keys(settings) -> None:
    from monitor.state import Store

    store = Store.connect(settings)
    try:
        await store.wipe()
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.api.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kafka-bootstrap", help="use this broker (default: start a local Tansu on a free port)")
    parser.add_argument("--redis-url", help="use this Redis (default: start a redis-server on a free port)")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of measured load")
    parser.add_argument("--think-ms", type=float, default=100.0,
                        help="mean pause of a client between requests (uniform in [0, 2x]); 0 = closed loop")
    parser.add_argument("--max-requests", type=int, default=200_000, help="bound on the measured requests")
    parser.add_argument("--target-p99-ms", type=float, default=100.0)
    parser.add_argument("--publish-rate", type=float, default=2000.0,
                        help="records/s the background publisher sends while the clients run")
    parser.add_argument("--saturation-duration", type=float, default=10.0,
                        help="seconds of the closed-loop (no pause) phase after the target phase; 0 skips it")
    args = parser.parse_args(argv)
    try:
        import uvloop

        runner: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_main(args))


def bench_settings(args, run_dir: Path, token: str):
    """Settings of one run: fresh topics, group and key prefix; the broker and Redis given or started."""
    from monitor.api.auth import hash_token
    from monitor.ops import infra
    from monitor.settings import Settings

    name = f"bench-{uuid.uuid4().hex[:8]}"
    return Settings(
        kafka_bootstrap=args.kafka_bootstrap or f"127.0.0.1:{infra.free_port()}",
        redis_url=args.redis_url or f"redis://127.0.0.1:{infra.free_port()}/0", run_dir=run_dir,
        records_topic=f"{name}-records", outcomes_topic=f"{name}-outcomes", alerts_topic=f"{name}-alerts",
        dead_letter_topic=f"{name}-dead-letter", consumer_group=name, key_prefix=name,
        api_tokens=f"bench:read:{hash_token(token)}")


async def measure(args, settings, base_url: str, urls: dict[str, list[str]], token: str, log) -> bool:
    """The load run (and the saturation run, for information): prints the report, True when the p99
    target is met without errors."""
    names = list(urls)
    before = await worker_records(settings)
    log(f"load: {args.clients} clients, {args.duration:.0f} s, pause uniform(0, {2 * args.think_ms:.0f}) ms, "
        f"while the worker folds ~{args.publish_rate:.0f} records/s")
    result = await run_load(base_url, urls, args.clients, args.duration, args.think_ms / 1000,
                            args.max_requests, token=token)
    folded = await worker_records(settings) - before
    load1, _, _ = os.getloadavg()
    print(report(f"\nstate endpoints under load ({args.clients} concurrent clients, worker folding "
                 f"{folded / result.elapsed_s:.0f} records/s meanwhile, load average {load1:.2f} at the end):",
                 result, names, args.target_p99_ms))
    p99 = result.quantiles()["p99"]
    met = p99 < args.target_p99_ms and result.errors == 0
    if args.saturation_duration > 0:
        saturation = await run_load(base_url, urls, args.clients, args.saturation_duration, 0.0,
                                    args.max_requests, token=token)
        print(report(f"\nfor information, saturation: the same {args.clients} clients without pauses "
                     f"(closed loop; latency = {args.clients} / throughput):", saturation, names, None))
    print(f"\nbench: p99 {p99:.1f} ms {'<' if met else '>='} {args.target_p99_ms:.0f} ms target: "
          f"{'MET' if met else 'NOT MET'}")
    return met


async def _main(args) -> int:
    from monitor.api.auth import new_token
    from monitor.ops import infra
    from monitor.ops.processes import settings_env, stop_process

    token = new_token()  # the clients read with a token, as in production (auth costs its share)

    def log(message: str) -> None:
        print(f"[bench] {message}", flush=True)

    load1, load5, _ = os.getloadavg()
    log(f"machine: {os.cpu_count()} CPUs, load average {load1:.2f} (1 min) {load5:.2f} (5 min) before the run; "
        f"everything below shares them (API, clients, worker, publisher, broker, Redis)")
    run_dir = Path(tempfile.mkdtemp(prefix="credit-monitor-bench-"))
    settings = bench_settings(args, run_dir, token)
    started_services = []
    procs: list[subprocess.Popen] = []
    keep_logs = True  # until the run succeeds: the logs of a failed run stay for reading
    env = settings_env(settings)
    try:
        for svc in infra.services(settings):
            if (svc.name == "broker" and args.kafka_bootstrap) or (svc.name == "redis" and args.redis_url):
                continue
            started_services.append(svc)
            log(f"{svc.name}: {svc.start()} on {svc.host}:{svc.port}")
        counts, spec = await prepare_state(settings, run_dir, log, procs)
        port = infra.free_port()
        api = start_api_process(settings, port, run_dir / "api.log")
        procs.append(api)
        base_url = f"http://127.0.0.1:{port}"
        await wait_http(base_url + "/health", 60, api)
        log(f"API (pid {api.pid}) at {base_url}; state: {sum(counts.values())} records in {len(counts)} months")
        publisher = _popen([sys.executable, "-m", "monitor", "produce", "--synthetic", "baseline", "--model",
                            "bench-live", "--rate", str(args.publish_rate), "--batch", "20"], env,
                           run_dir / "publisher.log")
        procs.append(publisher)
        await asyncio.sleep(2.0)  # the publisher is connected and the worker folding
        met = await measure(args, settings, base_url, endpoint_urls(spec.model, spec.model_version, sorted(counts)),
                            token, log)
        if not met:
            print(f"logs in {run_dir}")
        keep_logs = not met
        return 0 if met else 1
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        try:
            await delete_keys(settings)
        except Exception as exc:  # noqa: BLE001 - best effort on a server we may be stopping
            logging.getLogger("monitor.api.bench").debug("deleting the bench keys: %r", exc)
        for svc in reversed(started_services):
            log(f"{svc.name}: {svc.stop()}")
        if not keep_logs:
            shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
