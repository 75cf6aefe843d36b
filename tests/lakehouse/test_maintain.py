"""`reco maintain`: compaction and vacuum keep every row, and never run beside a bronze writer."""

from __future__ import annotations

import json

from helpers import ids, run_reco
from planted import commit_events, events

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.locks import exclusive_lock


def test_compaction_and_vacuum_keep_every_row_and_wait_for_no_running_ingest(tmp_path):
    warehouse = tmp_path / "warehouse"
    data = events(400, seed=3)
    for n in range(8):
        commit_events(warehouse, data.slice(50 * n, 50), n)
    uri = Warehouse(warehouse).uri(catalog.EVENTS)
    before = ids(warehouse)
    files = len(delta.open_table(uri).file_uris())
    version = delta.current_version(uri)

    with exclusive_lock(Warehouse(warehouse).lock("ingest"), "reco ingest"):
        busy = run_reco("maintain", "-w", str(warehouse), "--retention", "0h")
    assert busy.returncode == 3 and "already running" in busy.stderr, busy.stderr
    assert delta.current_version(uri) == version, "nothing ran beside the ingest"

    done = run_reco("maintain", "-w", str(warehouse), "--retention", "0h", "--json")
    assert done.returncode == 0, done.stderr
    report = {t["table"]: t for t in json.loads(done.stdout)["tables"]}
    events_report = report["bronze/events"]
    assert events_report["files_before"] == files and events_report["files_after"] < files
    assert events_report["rows_before"] == events_report["rows_after"] == len(before)
    assert events_report["files_vacuumed"] >= files - events_report["files_after"]
    assert ids(warehouse) == before, "the same rows after compaction and vacuum"
    on_disk = len([p for p in (warehouse / catalog.EVENTS.name).rglob("*.parquet")])
    assert on_disk == len(delta.open_table(uri).file_uris()), "vacuum left only the files in use"
    assert run_reco("maintain", "-w", str(tmp_path / "typo")).returncode == 2
