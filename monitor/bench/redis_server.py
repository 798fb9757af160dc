"""A throwaway redis-server for the benches that only need Redis (``--redis URL`` to use another)."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager

from monitor.ops.infra import free_port, redis_binary


@contextmanager
def redis_url_or_server(url: str | None):
    """Yield ``url``, or start a throwaway local redis-server and yield its URL (stopped on exit).

    >>> with redis_url_or_server("redis://127.0.0.1:6379/0") as url:
    ...     print(url)
    redis://127.0.0.1:6379/0
    """
    if url:
        yield url
        return
    binary = redis_binary()
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv: the redis-server binary we found
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError

        from monitor.connect import redis_client
        from monitor.settings import Settings

        # Our own server has no password: none from the environment either.
        client = redis_client(Settings(redis_url=f"redis://127.0.0.1:{port}/0", redis_password=None,
                                       redis_username=None))
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except RedisConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the throwaway redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
