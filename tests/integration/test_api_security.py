"""`monitor api` as an attacker on the same network meets it (issue 16): a real uvicorn process
(`python -m monitor api`, as a user runs it) on the session's real Redis.

Bearer tokens with scopes (401 / 403), a body-size limit enforced while the body arrives (413, the
process stays small), a rate limit on the write endpoints (429), error messages that name the problem
and never the file's contents or the server's paths, 500s with an error id that the log carries,
/docs served offline, and `monitor api --host 0.0.0.0` refused without tokens.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import redis

from monitor.ops import infra
from monitor.api.auth import hash_token, new_token
from monitor.api.bench import start_api_process, wait_http
from monitor.ops.processes import settings_env, stop_process
from monitor.ops.reference import save_reference
from tests.conftest import unique_settings

pytestmark = pytest.mark.integration

READ, WRITE = new_token(), new_token()
TOKENS = f"reader:read:{hash_token(READ)},writer:write:{hash_token(WRITE)}"
RECORDS = [{"REF_DATE": "2024-01-15", "TARGET": 0, "score": 0.12}, {"REF_DATE": "2024-01-20", "TARGET": 1, "score": 0.71}]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def api(servers, tmp_path):
    """Start `monitor api` with the given settings overrides; every process stopped at teardown."""
    procs = []

    async def start(**overrides):
        data_dir = tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        values = {"api_tokens": TOKENS, "data_dir": data_dir, "models_dir": tmp_path / "models", **overrides}
        settings = unique_settings(servers, **values)
        port = infra.free_port()
        log = tmp_path / f"api-{len(procs)}.log"
        proc = start_api_process(settings, port, log)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        await wait_http(base + "/health", 60, proc)
        return settings, base, proc, log

    yield start
    for proc in procs:
        stop_process(proc)


async def test_tokens_and_scopes(api):
    settings, base, _, _ = await api()
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/health") as r:
            assert r.status == 200  # liveness stays open, and tells a stranger no address or prefix
            body = await r.json()
            assert body["status"] == "ok" and body["redis_url"] is None and body["key_prefix"] is None, body
        async with s.get(base + "/health", headers=bearer(READ)) as r:
            assert (await r.json())["key_prefix"] == settings.key_prefix
        for method, url in (("GET", "/models"), ("GET", "/alerts"), ("GET", "/metrics"), ("GET", "/dashboard/data"),
                            ("POST", "/v1/performance/m")):
            async with s.request(method, base + url, json=RECORDS) as r:
                assert r.status == 401, (url, await r.text())
                body = await r.json()
                assert "token" in body["detail"] and r.headers["WWW-Authenticate"].startswith("Bearer")
        async with s.get(base + "/models", headers=bearer("not-a-token")) as r:
            assert r.status == 401 and "invalid" in (await r.json())["detail"]
        async with s.get(base + "/models", headers=bearer(READ)) as r:
            assert r.status == 200
        async with s.get(base + "/metrics", headers=bearer(READ)) as r:
            assert r.status == 200
        async with s.post(base + "/v1/performance/m", json=RECORDS, headers=bearer(READ)) as r:
            assert r.status == 403, await r.text()
            assert "write" in (await r.json())["detail"]
        await save_reference(settings, "m", "1", [0.1, 0.5, 0.9], None, source="test")  # `m` is monitored
        async with s.post(base + "/v1/performance/m", json=RECORDS, headers=bearer(WRITE)) as r:
            assert r.status == 200, await r.text()
        async with s.get(base + "/v1/performance/", headers=bearer(WRITE)) as r:  # write implies read
            assert r.status == 200
        # the dashboard: the page without a token is a login form (no data); ?token= becomes a cookie
        async with s.get(base + "/") as r:
            page = await r.text()
            assert r.status == 401 and "<form" in page and "__DATA__" not in page and "generated_at" not in page
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:  # unsafe: an IP address
        async with s.get(base + f"/?token={READ}", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/"
            cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        async with s.get(base + "/") as r:
            assert r.status == 200 and "generated_at" in await r.text()
        async with s.get(base + "/dashboard/data") as r:
            assert r.status == 200
        # the cookie only ever reads: a cross-site form could not post with it
        async with s.post(base + "/v1/performance/m", json=RECORDS) as r:
            assert r.status == 403 and "cookie only reads" in (await r.json())["detail"]


def _send_raw(port: int, head: bytes, body_chunks, timeout: float = 30.0) -> bytes:
    """One HTTP/1.1 request over a raw socket; returns what the server answered (status line first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: what it said is in the socket
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
        return answer


async def test_oversized_bodies_get_413_before_they_are_read(api):
    _, base, proc, _ = await api(api_max_body_bytes=1 << 20)
    port = int(base.rsplit(":", 1)[1])
    before = rss_kib(proc.pid)
    big = 155 * (1 << 20)
    auth = f"Authorization: Bearer {WRITE}\r\n".encode()
    # a declared length over the limit: refused on the headers, nothing of the body is read
    head = (b"POST /v1/performance/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
            + f"Content-Length: {big}\r\n\r\n".encode())
    answer = _send_raw(port, head, [b"[" + b" " * 65535])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    # a chunked body: counted as it arrives, refused once past the limit (155 MB offered)
    head = (b"POST /v1/performance/m HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
            + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % (1 << 20) + b" " * (1 << 20) + b"\r\n"
    answer = _send_raw(port, head, (chunk for _ in range(155)))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"limit" in answer
    after = rss_kib(proc.pid)
    print(f"API RSS before {before} KiB, after two 155 MB bodies {after} KiB")
    assert after - before < 64 * 1024, (before, after)
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/health") as r:
            assert r.status == 200


async def test_record_count_limit_and_rate_limit(api):
    settings, base, _, _ = await api(api_max_records=3, api_write_rate="4/minute")
    r_ = redis.Redis.from_url(settings.redis_url)
    r_.sadd(f"{settings.key_prefix}:models", "m:1")
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/v1/performance/m", json=RECORDS * 2, headers=bearer(WRITE)) as r:
            assert r.status == 413, await r.text()
            assert "3 records" in (await r.json())["detail"]
        statuses = []
        for _ in range(4):
            async with s.post(base + "/v1/performance/m", json=RECORDS, headers=bearer(WRITE)) as r:
                statuses.append(r.status)
        assert statuses[:3] == [200, 200, 200], statuses  # the 413 above counted as the first of four
        assert statuses[3] == 429
        async with s.post(base + "/v1/performance/m", json=RECORDS, headers=bearer(WRITE)) as r:
            assert r.status == 429 and "Retry-After" in r.headers
            assert "rate" in (await r.json())["detail"]
        async with s.get(base + "/models", headers=bearer(READ)) as r:
            assert r.status == 200  # reads are not rate limited


async def test_errors_name_the_problem_not_the_data(api):
    settings, base, _, log = await api()
    data_dir = Path(settings.data_dir)
    (data_dir / "customers.csv").write_text("ssn,full_name,income\n123-45-6789,Jane Roe,50000\n")
    (data_dir / "broken.csv").write_text('REF_DATE,score\n2024-01-01,0.5\n2024-01-02,0.5,9,9\n"open')
    (data_dir / "binary.csv").write_bytes(bytes(range(256)) * 8)
    await save_reference(settings, "m", "1", [0.1, 0.5, 0.9], None, source="test")
    secrets = ("ssn", "full_name", "income", "123-45", "Jane", str(settings.data_dir), str(settings.models_dir),
               "/tmp")
    async with aiohttp.ClientSession(headers=bearer(WRITE)) as s:
        cases = [({"path": "customers.csv", "model": "m", "version": "1", "score_column": "score"}, 422, "score"),
                 ({"path": "customers.csv", "model": "unknown"}, 404, "unknown"),
                 ({"path": "broken.csv", "model": "m", "version": "1", "score_column": "score"}, 422, "read"),
                 ({"path": "binary.csv", "model": "m", "version": "1", "score_column": "score"}, 422, "read")]
        for body, status, word in cases:
            async with s.post(base + "/v1/aderencia/", json=body) as r:
                text = await r.text()
                assert r.status == status, (body, text)
                assert word in r.headers.get("content-type", "") or word in (await r.json())["detail"], text
                for secret in secrets:
                    assert secret not in text, (secret, text)
        async with s.post(base + "/v1/performance/nobody", json=RECORDS) as r:
            text = await r.text()
            assert r.status == 404 and "nobody" in text and str(settings.models_dir) not in text, text
        from models.registry import Registry
        from models.train import train

        train("credit_data", "default", "default", registry=Registry(settings.models_dir, settings=settings))
        async with s.post(base + "/v1/performance/default?version=9", json=RECORDS) as r:  # the registry's own 404
            text = await r.text()
            assert r.status == 404 and "no version '9'" in text and str(settings.models_dir) not in text, text
        # an unexpected failure (a key of the wrong type in Redis) is a 500 with an id the log carries
        redis.Redis.from_url(settings.redis_url).set(f"{settings.key_prefix}:models", "not a set")
        async with s.get(base + "/models") as r:
            assert r.status == 500
            body = await r.json()
    error_id = body["error_id"]
    assert re.fullmatch(r"[0-9a-f]{12,32}", error_id) and error_id in body["detail"]
    assert "WRONGTYPE" not in str(body)
    await asyncio.sleep(0.5)  # the log line is written before the answer; the file may lag a flush
    assert error_id in log.read_text()


async def test_docs_are_served_offline(api):
    _, base, _, _ = await api()
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/docs") as r:
            assert r.status == 200
            page = await r.text()
        assert not re.search(r"https?://", page), page
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", page)
        assert any(u.endswith(".js") for u in urls) and any(u.endswith(".css") for u in urls), urls
        for url in urls:
            async with s.get(base + url) as r:
                assert r.status == 200, url
        async with s.get(base + "/redoc") as r:
            assert r.status == 404 or not re.search(r"https?://", await r.text())


def test_api_refuses_a_public_address_without_tokens(servers, tmp_path):
    for overrides in ({"api_tokens": ""}, {"api_tokens": "", "api_auth": "off"}):
        env = settings_env(unique_settings(servers, **overrides))
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "api", "--host", "0.0.0.0", "--port",
                                 str(infra.free_port())], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            pytest.fail(f"monitor api served 0.0.0.0 without tokens ({overrides}): {out.decode()[-500:]}")
        assert proc.returncode != 0
        assert b"refusing to listen on 0.0.0.0" in out and (b"token" in out or b"loopback" in out), out
    # `monitor api token` prints a token and the settings line with its hash only
    made = subprocess.run([sys.executable, "-m", "monitor", "api", "token", "--scope", "read", "--name", "prom"],
                          env=settings_env(servers), capture_output=True, text=True, timeout=60, check=True)
    token = re.search(r"token: (\S+)", made.stdout).group(1)
    assert f"prom:read:{hash_token(token)}" in made.stdout


async def test_the_memory_of_a_large_refused_body_goes_back_to_the_os(api):
    """A body within the byte limit but over the record limit costs its JSON parse (~13x its size, once);
    the process does not keep that peak."""
    _, base, proc, _ = await api(api_max_records=10)
    before = rss_kib(proc.pid)
    records = b'{"REF_DATE":"2024-01-15","TARGET":0,"score":0.12},' * 1_250_000
    async with aiohttp.ClientSession(headers=bearer(WRITE)) as s:
        async with s.post(base + "/v1/performance/m", data=b"[" + records[:-1] + b"]",
                          headers={"content-type": "application/json"}) as r:
            assert r.status == 413 and "1250000 records" in (await r.json())["detail"]
    await asyncio.sleep(1.0)  # the request's objects are freed once the answer is sent
    after = rss_kib(proc.pid)
    print(f"API RSS before {before} KiB, 1 s after a refused 60 MiB body of 1.25M records {after} KiB")
    assert after - before < 64 * 1024, (before, after)
