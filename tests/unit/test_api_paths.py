"""Files named by users (CLI, POST /v1/aderencia/) open only inside the data directory (monitor.paths.confine)."""

from __future__ import annotations

import os

import httpx
import pytest

from monitor.api import classic_engine
from monitor.api.app import create_api
from monitor.errors import NotFound
from monitor.paths import PathRejected, confine
from monitor.settings import Settings
from tests.conftest import API_TOKENS, api_headers


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.csv").write_text("REF_DATE,score\n2024-01-01,0.5\n")
    (root / "sub" / "b.csv").write_text("REF_DATE,score\n2024-01-01,0.5\n")
    (tmp_path / "secret.csv").write_text("top secret\n")
    return root


def test_one_confinement_for_the_cli_and_the_api():
    assert classic_engine.confine is confine and classic_engine.PathRejected is PathRejected


def test_a_path_object_is_accepted(data_dir):
    assert confine(data_dir, data_dir / "a.csv") == (data_dir / "a.csv").resolve()


def test_relative_paths_inside_resolve(data_dir):
    assert confine(data_dir, "a.csv") == (data_dir / "a.csv").resolve()
    assert confine(data_dir, "sub/b.csv") == (data_dir / "sub" / "b.csv").resolve()
    assert confine(data_dir, "./sub/../a.csv") == (data_dir / "a.csv").resolve()  # `..` that stays inside


def test_absolute_path_inside_is_accepted(data_dir):
    assert confine(data_dir, str(data_dir / "sub" / "b.csv")) == (data_dir / "sub" / "b.csv").resolve()


@pytest.mark.parametrize("path", ["../secret.csv", "sub/../../secret.csv", "../../../../../../etc/passwd",
                                  "/etc/passwd", "..", "/"])
def test_escapes_are_rejected(data_dir, path):
    with pytest.raises(PathRejected, match="outside the data directory"):
        confine(data_dir, path)


def test_absolute_path_outside_is_rejected_even_if_it_exists(data_dir):
    with pytest.raises(PathRejected, match="outside"):
        confine(data_dir, str(data_dir.parent / "secret.csv"))


def test_symlink_out_of_the_data_dir_is_rejected(data_dir):
    os.symlink(data_dir.parent / "secret.csv", data_dir / "link.csv")
    os.symlink(data_dir.parent, data_dir / "up")
    with pytest.raises(PathRejected, match="outside"):
        confine(data_dir, "link.csv")
    with pytest.raises(PathRejected, match="outside"):
        confine(data_dir, "up/secret.csv")


def test_symlink_inside_the_data_dir_is_followed(data_dir):
    os.symlink(data_dir / "sub" / "b.csv", data_dir / "alias.csv")
    assert confine(data_dir, "alias.csv") == (data_dir / "sub" / "b.csv").resolve()


def test_symlinked_data_dir_itself_is_fine(tmp_path, data_dir):
    os.symlink(data_dir, tmp_path / "data-link")
    assert confine(tmp_path / "data-link", "a.csv") == (data_dir / "a.csv").resolve()


def test_symlink_loop_is_rejected(data_dir):
    os.symlink(data_dir / "loop2", data_dir / "loop1")
    os.symlink(data_dir / "loop1", data_dir / "loop2")
    with pytest.raises((PathRejected, NotFound)):
        confine(data_dir, "loop1")


def test_missing_file_is_not_found(data_dir):
    with pytest.raises(NotFound, match="file not found"):
        confine(data_dir, "nope.csv")


@pytest.mark.parametrize("path,match", [("sub", "not a regular file"), ("", "empty"), ("   ", "empty"),
                                        ("a.csv\x00.txt", "NUL")])
def test_directories_empty_and_nul_paths_are_rejected(data_dir, path, match):
    with pytest.raises(PathRejected, match=match):
        confine(data_dir, path)


async def test_the_endpoint_answers_400_and_404_before_touching_redis(data_dir):
    # No lifespan (no Redis): path checks come first, so these never need the store.
    settings = Settings(data_dir=data_dir, redis_url="redis://127.0.0.1:1/0", api_tokens=API_TOKENS, models_dir=data_dir / "models")
    transport = httpx.ASGITransport(app=create_api(settings, measure_lag=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=api_headers()) as client:
        for path in ("../secret.csv", "/etc/passwd"):
            resp = await client.post("/v1/aderencia/", json={"path": path})
            assert resp.status_code == 400, resp.text
            assert "outside the data directory" in resp.json()["detail"]
        resp = await client.post("/v1/aderencia/", json={"path": "missing.csv"})
    assert resp.status_code == 404 and "file not found" in resp.json()["detail"]
    assert str(data_dir.parent) not in resp.json()["detail"]  # the server's directories are not disclosed
