import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from lakehouse import catalog, delta
from lakehouse.errors import BusyError
from lakehouse.locks import exclusive_lock


def _quarantine_rows(n: int, batch_id: int) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist(
        [
            {
                "raw": f"line {i}",
                "source_file": "f",
                "kind": "events",
                "reason": "malformed_json",
                "batch_id": batch_id,
                "ingested_at": now,
            }
            for i in range(n)
        ],
        schema=catalog.QUARANTINE.schema,
    )


def test_append_once_skips_a_repeated_app_transaction(tmp_path):
    uri = str(tmp_path / "q")
    assert delta.append_once(uri, catalog.QUARANTINE, _quarantine_rows(3, 0), "app", 0)
    assert not delta.append_once(uri, catalog.QUARANTINE, _quarantine_rows(3, 0), "app", 0)
    assert delta.append_once(uri, catalog.QUARANTINE, _quarantine_rows(2, 1), "app", 1)
    # An older batch id of the same app is also already committed.
    assert not delta.append_once(uri, catalog.QUARANTINE, _quarantine_rows(5, 0), "app", 0)
    # Another app id is independent.
    assert delta.append_once(uri, catalog.QUARANTINE, _quarantine_rows(1, 0), "other", 0)
    assert delta.read_table(uri).num_rows == 6
    assert delta.committed_version(uri, "app") == 1
    stats = delta.table_stats(uri)
    assert (stats.rows, stats.version) == (6, 3)  # create, then three appends


def test_ensure_table_creates_an_empty_readable_table(tmp_path):
    uri = str(tmp_path / "e")
    assert delta.read_table(uri) is None and delta.table_stats(uri) is None
    delta.ensure_table(uri, catalog.EVENTS)
    assert delta.read_table(uri).schema.names == catalog.EVENTS.schema.names
    assert delta.table_stats(uri).rows == 0


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    path = tmp_path / "locks" / "x.lock"
    busy = pytest.raises(BusyError, match=r"job is already running .*pid \d+")
    with exclusive_lock(path, "job"), busy, exclusive_lock(path, "job"):
        pass
    with exclusive_lock(path, "job"):  # released on exit
        pass


def test_a_process_that_read_a_table_exits_cleanly(tmp_path):
    """delta-rs's file system under Arrow's reader made such a process abort at exit (status 134)
    in about half the runs; cron must be able to trust the exit status."""
    uri = str(tmp_path / "q")
    for batch in range(3):
        delta.append_once(uri, catalog.QUARANTINE, _quarantine_rows(1000, batch), "app", batch)
    read = f"from lakehouse import delta; print(delta.read_table({uri!r}).num_rows)"
    runs = [subprocess.run([sys.executable, "-c", read], capture_output=True, text=True) for _ in range(6)]
    assert [(run.returncode, run.stdout.strip()) for run in runs] == [(0, "3000")] * 6
