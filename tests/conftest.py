from __future__ import annotations

import pytest

from spark_jobs.settings import SparkSettings


@pytest.fixture(scope="session")
def spark():
    """One local[2] session for every in-process Spark test (jobs reuse it through getOrCreate)."""
    from spark_jobs.session import build_session

    session = build_session(SparkSettings(master="local[2]"))
    yield session
    session.stop()


@pytest.fixture
def dirs(tmp_path):
    """A fresh warehouse and landing folder."""
    return tmp_path / "warehouse", tmp_path / "landing"
