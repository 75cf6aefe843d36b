"""The spool of handed-over batches and the one-at-a-time background commit (real files, real threads)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from spark_jobs.spool import BackgroundCommit, BatchSpool


def test_a_saved_batch_comes_back_whole_with_its_time_bound(tmp_path):
    spool = BatchSpool(tmp_path / "spool")
    latest = datetime(2026, 11, 29, 4, 5, 6, 789000, tzinfo=UTC)
    data = pa.table({"event_id": ["a", "b", None], "value": [1.5, None, 3.0]})
    spool.save(7, data, latest, ["/landing/events/_refused/x.jsonl"])
    spool.save(12, data.slice(0, 1), latest)
    (tmp_path / "spool" / ".batch-000000000013.arrow.tmp").write_bytes(b"half written")

    assert spool.pending() == [7, 12]  # in order; a save cut short is not a batch
    loaded, loaded_latest, refused = spool.load(7)
    assert loaded.equals(data) and loaded.schema.metadata is None
    assert loaded_latest == latest and refused == ["/landing/events/_refused/x.jsonl"]
    assert spool.load(12).refused == []
    spool.remove(7)
    assert spool.pending() == [12]
    assert BatchSpool(tmp_path / "missing").pending() == []


def test_commits_run_one_at_a_time_in_order_on_their_own_thread():
    commits, order, release = BackgroundCommit(), [], threading.Event()

    def first():
        release.wait(10)
        order.append((1, threading.current_thread().name))

    commits.start(first)
    assert order == []  # start returned while the commit still runs
    release.set()
    commits.start(lambda: order.append((2, threading.current_thread().name)))  # waits for the first
    commits.wait()
    assert order == [(1, "reco-delta-commit"), (2, "reco-delta-commit")]


def test_a_failed_commit_is_raised_once_by_the_next_start_or_wait():
    commits, ran = BackgroundCommit(), []

    def fail():
        raise OSError("disk full")

    commits.start(fail)
    deadline = time.monotonic() + 10
    while not commits.failed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert commits.failed
    with pytest.raises(OSError, match="disk full"):
        commits.start(lambda: ran.append(2))
    assert ran == [] and not commits.failed  # the next commit did not start
    commits.start(fail)
    with pytest.raises(OSError, match="disk full"):
        commits.wait()
    commits.wait()  # raised once only
