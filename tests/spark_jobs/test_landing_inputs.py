"""Odd landing files (issue 23): names Spark would glob or cannot parse, links, subfolders, empty files,
gzip — each ingested once or refused visibly, and conservation holds."""

from __future__ import annotations

import gzip
import os

import pytest
from helpers import event, ids, line, table

from lakehouse import catalog
from lakehouse.catalog import Warehouse
from lakehouse.landing import write_landing_file
from recocli.commands.status import warehouse_status
from recocli.config import load_settings
from spark_jobs.ingest import run_ingest

ODD_NAMES = ["b[1].jsonl", "c?.jsonl", "d{x,y}.jsonl", "e*.jsonl", "2026-12-02T10:00:00.jsonl", "f\\g.jsonl"]


@pytest.fixture(scope="module")
def landed(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    warehouse, landing = root / "warehouse", root / "landing"
    names = ["a.jsonl", *ODD_NAMES]
    for n, name in enumerate(names):
        write_landing_file(landing, "events", name, [line(event(f"{n}-0")), line(event(f"{n}-1")), "bad"])
    folder = landing / "events"
    (folder / "empty.jsonl").write_bytes(b"")
    (folder / "blank.jsonl").write_bytes(b"\n  \n")
    with gzip.open(folder / "z.jsonl.gz", "wt") as out:
        out.write(line(event("gz")) + "\n")
    secret = root / "secret.txt"
    secret.write_text("root:x:0:0\n")
    os.symlink(secret, folder / "link.jsonl")
    (folder / "sub").mkdir()
    (folder / "sub" / "s.jsonl").write_text(line(event("sub")) + "\n")
    settings = load_settings(env={}, overrides={"warehouse": str(warehouse), "ingest.landing": str(landing)})
    summary = run_ingest(settings, once=True)
    return warehouse, landing, names, summary


def test_odd_names_are_read_once_and_conservation_holds(landed):
    warehouse, _, names, summary = landed
    expected = sorted([f"e{n}-{k}" for n in range(len(names)) for k in range(2)] + ["egz"])
    assert ids(warehouse) == expected
    totals = summary.totals()
    assert totals["lines_read"] == 3 * len(names) + 1
    assert totals["quarantined"] == len(names) and totals["duplicates"] == 0
    for m in table(warehouse, catalog.INGEST_METRICS).to_pylist():
        assert (
            m["lines_read"]
            == m["events_written"] + m["feedback_written"] + m["quarantined"] + m["duplicates"]
        )


def test_links_are_refused_subfolders_ignored_and_both_shown_by_status(landed):
    warehouse, landing, _, summary = landed
    assert [(r.path.name, r.reason) for r in summary.refused] == [
        ("link.jsonl", "symbolic link (not followed)")
    ]
    assert summary.totals()["refused"] == 1
    quarantine = table(warehouse, catalog.QUARANTINE).to_pylist()
    assert all("root:x" not in row["raw"] for row in quarantine)
    report = warehouse_status(Warehouse(warehouse), str(landing))
    assert report["pending_files"] == []  # empty, blank and gzip files are done too
    refused = {os.path.basename(r["path"]): r["reason"] for r in report["refused_files"]}
    assert refused == {
        "link.jsonl": "symbolic link (not followed)",
        "sub": "folder (only files directly in events/ are read)",
    }


def test_a_second_run_reads_nothing(landed, spark):
    warehouse, landing, _, _ = landed
    settings = load_settings(env={}, overrides={"warehouse": str(warehouse), "ingest.landing": str(landing)})
    assert run_ingest(settings, once=True).totals()["lines_read"] == 0
