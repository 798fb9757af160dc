"""Micro-benchmark of the worker's record decoder: the previous one against the msgspec one.

Measures, in one process and one run, the CPU cost of turning message bytes into the worker's
``FastRecord`` tuples, nothing else (no Kafka, no Redis, no faust): 2,000 JSON-array messages of
100 records each (200,000 records), built with ``orjson.dumps`` from
``producers.synthetic.generate(SCENARIOS["baseline"])`` -- the shape ``monitor produce`` publishes
and the worker sees. Each decoder decodes every message once per repeat; the best of the repeats
(least disturbed by the machine) is reported as records/s, with the ratio new/old. It first checks
that both decoders give the same tuples. Figures only, no assertion on them.

    python -m monitor.bench.decode [--messages 2000] [--batch 100] [--repeats 5]

``old`` is ``monitor.worker.fastpath.decode_orjson`` (orjson + plain-Python checks per record, the
decoder before msgspec and now the fallback); ``new`` is ``monitor.worker.fastpath.decode_fast``.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time

import orjson

from monitor.worker.fastpath import decode_fast, decode_orjson
from producers.synthetic import SCENARIOS, generate


def messages(count: int, batch: int) -> list[bytes]:
    """``count`` JSON-array messages of ``batch`` baseline synthetic records (cycled if need be)."""
    records = itertools.cycle(itertools.islice(generate(SCENARIOS["baseline"]), count * batch))
    return [orjson.dumps(list(itertools.islice(records, batch))) for _ in range(count)]


def best_seconds(decode, msgs: list[bytes], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for m in msgs:
            decode(m)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.bench.decode", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    opts = parser.parse_args(argv)
    msgs = messages(opts.messages, opts.batch)
    records = opts.messages * opts.batch
    if any(decode_fast(m) != decode_orjson(m) for m in msgs):
        raise SystemExit("the two decoders disagree on the synthetic messages")
    print(f"{opts.messages} messages x {opts.batch} records ({sum(map(len, msgs)) / len(msgs):,.0f} bytes/message),"
          f" best of {opts.repeats}")
    rates = {}
    for name, decode in (("old (orjson + checks)", decode_orjson), ("new (msgspec)", decode_fast)):
        seconds = best_seconds(decode, msgs, opts.repeats)
        rates[name] = records / seconds
        print(f"  {name:<22} {rates[name]:>12,.0f} records/s  {seconds / records * 1e9:7.0f} ns/record")
    old, new = rates.values()
    print(f"  ratio new/old          {new / old:>12.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
