"""Refused landing files in `_ops/ingest_metrics`, each named once whatever replays (issue 23, item 5),
and `ingest.follow_links = "inside_landing"`: a link to a file inside landing is read once."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from helpers import assert_readable_everywhere, event, ids, line, table

from lakehouse import catalog, delta, schemas
from lakehouse.catalog import TableSpec, Warehouse
from lakehouse.landing import LINK_OUTSIDE, LINK_TO_LANDED, write_landing_file
from recocli.commands.status import warehouse_status
from recocli.config import load_settings
from spark_jobs.ingest import checkpoint_dir, run_ingest


def settings_for(warehouse: Path, landing: Path, **overrides):
    return load_settings(
        env={}, overrides={"warehouse": str(warehouse), "ingest.landing": str(landing), **overrides}
    )


def link_outside(landing: Path, name: str) -> Path:
    """A link in events/ to a file outside the landing folder; where it will lie once set aside."""
    secret = landing.parent / f"secret-{name}"
    secret.write_text("root:x:0:0\n")
    os.symlink(secret, landing / "events" / name)
    return landing / "events" / "_refused" / name


def named(warehouse: Path) -> dict[int, list[str] | None]:
    rows = table(warehouse, catalog.INGEST_METRICS).to_pylist()
    return {row["batch_id"]: row["refused"] for row in rows if row["query_name"] == "reco_ingest"}


def test_refusals_are_named_by_the_next_batch_once_and_in_old_warehouses_too(spark, dirs):
    """A warehouse made before the column: its rows read null, and ingest adds the column."""
    warehouse, landing = dirs
    old = pa.schema([field for field in schemas.INGEST_METRICS if field.name != "refused"])
    uri = Warehouse(warehouse).uri(catalog.INGEST_METRICS)
    old_row = {
        "query_name": "reco_import_old",
        "batch_id": 0,
        "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        **dict.fromkeys(("lines_read", "events_written"), 1),
        **dict.fromkeys(("feedback_written", "quarantined", "duplicates"), 0),
        "duration_s": 0.1,
        "lag_s": None,
        "writer": "delta-rs",
        "files": [],
    }
    delta.append_once(
        uri, TableSpec(catalog.INGEST_METRICS.name, old), pa.Table.from_pylist([old_row], old), "old", 0
    )

    write_landing_file(landing, "events", "a.jsonl", [event(1)])
    first = link_outside(landing, "x.jsonl")
    run_ingest(settings_for(warehouse, landing), once=True)
    write_landing_file(landing, "events", "b.jsonl", [event(2)])
    link_outside(landing, "x.jsonl")  # the same name again: kept beside the first
    run_ingest(settings_for(warehouse, landing), once=True)

    assert named(warehouse) == {0: [str(first)], 1: [str(first) + ".1"]}
    _, _, rows = assert_readable_everywhere(warehouse)  # Polars and DuckDB read the evolved table too
    assert [r["refused"] for r in rows if r["query_name"] == "reco_import_old"] == [None]
    report = warehouse_status(Warehouse(warehouse), str(landing))
    assert sorted(r["path"] for r in report["refused_files"]) == [str(first), str(first) + ".1"]


def test_a_batch_replayed_from_the_spool_names_what_its_first_try_named(spark, dirs):
    """Batch 0's commit fails after Spark recorded it; a link set aside before the rerun belongs to a
    later batch, not to batch 0 committed from the spool."""
    warehouse, landing = dirs
    write_landing_file(landing, "events", "a.jsonl", [event(1)])
    write_landing_file(landing, "events", "b.jsonl", [event(2)])
    first = link_outside(landing, "x.jsonl")
    settings = settings_for(warehouse, landing, **{"ingest.max_files_per_batch": 1})
    broken = Path(Warehouse(warehouse).uri(catalog.EVENTS)) / "_delta_log" / f"{1:020d}.json"
    with pytest.raises(Exception, match="Json error"):
        run_ingest(settings, once=True, on_start=lambda _: broken.write_text("not json\n"))
    assert (checkpoint_dir(settings) / "spool" / "batch-000000000000.arrow").exists()
    broken.unlink()

    second = link_outside(landing, "y.jsonl")
    write_landing_file(landing, "events", "c.jsonl", [event(3)])
    run_ingest(settings, once=True)
    assert ids(warehouse) == ["e1", "e2", "e3"]
    rows = named(warehouse)
    assert rows[0] == [str(first)]
    assert sorted(n for names in rows.values() for n in names) == [str(first), str(second)]


def test_a_replay_of_a_committed_batch_takes_no_refusal_from_the_next(spark, dirs):
    """Spark replays batch 0 (its record was lost after the Delta commit): its row is not written
    again, so the link set aside meanwhile is named by batch 1."""
    warehouse, landing = dirs
    write_landing_file(landing, "events", "a.jsonl", [event(1)])
    first = link_outside(landing, "x.jsonl")
    settings = settings_for(warehouse, landing)
    run_ingest(settings, once=True)
    for record in ("commits/0", "commits/.0.crc"):
        (checkpoint_dir(settings) / record).unlink()
    second = link_outside(landing, "y.jsonl")
    write_landing_file(landing, "events", "b.jsonl", [event(2)])
    run_ingest(settings, once=True)
    assert named(warehouse) == {0: [str(first)], 1: [str(second)]}


def test_links_inside_landing_are_read_once_when_asked_and_others_still_refused(spark, dirs):
    warehouse, landing = dirs
    events = landing / "events"
    write_landing_file(landing, "events", "a.jsonl", [event("a0"), event("a1")])
    staging = landing / "staging"
    staging.mkdir()
    (staging / "s.jsonl").write_text(line(event("s0")) + "\n" + line(event("s1")) + "\n")
    (events / ".half.jsonl").write_text(line(event("half")) + "\n")  # in flight
    os.symlink("a.jsonl", events / "to_a.jsonl")  # a file ingest reads anyway
    os.symlink("../staging/s.jsonl", events / "to_s1.jsonl")
    os.symlink(staging / "s.jsonl", events / "to_s2.jsonl")  # the same target again
    os.symlink(".half.jsonl", events / "to_half.jsonl")
    link_outside(landing, "out.jsonl")
    settings = settings_for(warehouse, landing, **{"ingest.follow_links": "inside_landing"})

    report = warehouse_status(Warehouse(warehouse), str(landing), follow_links=True)
    assert [Path(p).name for p in report["pending_files"]] == ["a.jsonl", "to_s1.jsonl"]
    assert {Path(r["path"]).name: r["reason"] for r in report["refused_files"]} == {
        "out.jsonl": LINK_OUTSIDE,
        "to_a.jsonl": LINK_TO_LANDED,
        "to_half.jsonl": LINK_OUTSIDE,
        "to_s2.jsonl": LINK_TO_LANDED,
    }

    summary = run_ingest(settings, once=True)
    assert ids(warehouse) == ["ea0", "ea1", "es0", "es1"]
    assert (summary.totals()["lines_read"], summary.totals()["duplicates"]) == (4, 0)
    assert sorted(r.path.name for r in summary.refused) == [
        "out.jsonl",
        "to_a.jsonl",
        "to_half.jsonl",
        "to_s2.jsonl",
    ]
    assert not (events / "to_s1.jsonl").is_symlink()
    (refused,) = named(warehouse).values()
    assert sorted(Path(p).name for p in refused) == sorted(r.path.name for r in summary.refused)
    assert run_ingest(settings, once=True).totals()["lines_read"] == 0
