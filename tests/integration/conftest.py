"""Fixtures shared by the integration tests of the API: a data directory and settings of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import unique_settings


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The module's data directory (MONITOR_DATA_DIR: the files the API may read)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def api_settings(servers, data_dir, tmp_path_factory):
    """The module's API settings: fresh topics and key prefix, its data directory and models directory."""
    return unique_settings(servers, data_dir=data_dir, models_dir=tmp_path_factory.mktemp("models"))
