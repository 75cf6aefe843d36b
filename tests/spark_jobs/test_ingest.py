"""Real Spark Structured Streaming into real Delta tables, in-process (one shared local[2] session)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest
from helpers import event, feedback, ids, line, table

from lakehouse import catalog
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.landing import write_landing_file
from recocli.config import load_settings
from spark_jobs.ingest import batch_time, checkpoint_dir, earliest_batch_time, run_ingest, validated_stream


def settings_for(warehouse, landing, **overrides):
    return load_settings(
        env={}, overrides={"warehouse": str(warehouse), "ingest.landing": str(landing), **overrides}
    )


def ingest_once(warehouse, landing, **overrides):
    return run_ingest(settings_for(warehouse, landing, **overrides), once=True)


def test_happy_path_both_kinds_with_types_and_lineage(spark, dirs):
    warehouse, landing = dirs
    write_landing_file(
        landing,
        "events",
        "a.jsonl",
        [
            event(1, event_type="click", session_id="s1", context={"page": "home", "slot": 3}),
            event(2, event_type="Rating", value=4.5, ts=1714557600),  # epoch seconds, mixed case
            event(3, event_type="purchase", value=2, ts=1714557600123),  # epoch milliseconds
            event(4, user_id=42, item_id=7, ts="2024-05-02T01:00:00+02:00"),  # numeric ids, offset
        ],
    )
    write_landing_file(
        landing,
        "feedback",
        "b.jsonl",
        [
            feedback(1, action="impression", position=3, model_version=2),
            feedback(2, action="dismiss", value=None),
        ],
    )
    summary = ingest_once(warehouse, landing)
    assert summary.writer == "delta-rs"
    assert summary.totals()["lines_read"] == 6

    events = table(warehouse, catalog.EVENTS).sort_by("event_id").to_pylist()
    assert [e["event_id"] for e in events] == ["e1", "e2", "e3", "e4"]
    assert [e["event_type"] for e in events] == ["click", "rating", "purchase", "click"]
    assert events[0]["context"] == [("page", "home"), ("slot", "3")]
    assert events[0]["session_id"] == "s1" and events[1]["session_id"] is None
    assert events[1]["value"] == 4.5 and events[0]["value"] is None
    assert events[1]["ts"] == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert events[2]["ts"] == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert events[3]["ts"] == datetime(2024, 5, 1, 23, 0, tzinfo=UTC)
    assert events[3]["event_date"] == date(2024, 5, 1)
    assert (events[3]["user_id"], events[3]["item_id"]) == ("42", "7")
    assert all(e["batch_id"] == 0 and e["source_file"].endswith("/events/a.jsonl") for e in events)
    assert all(e["ingested_at"] > datetime.now(UTC) - timedelta(minutes=5) for e in events)

    fb = table(warehouse, catalog.FEEDBACK).sort_by("event_id").to_pylist()
    assert [(f["event_id"], f["action"], f["position"], f["model_version"]) for f in fb] == [
        ("f1", "impression", 3, 2),
        ("f2", "dismiss", 1, 1),
    ]
    assert table(warehouse, catalog.QUARANTINE).num_rows == 0
    # partitioned by event date, as the Delta log says
    from deltalake import DeltaTable

    assert DeltaTable(str(warehouse / "bronze/events")).metadata().partition_columns == ["event_date"]


NOW = datetime.now(UTC)
REJECTS = {
    "malformed_json": ['{"event_id": "x1", "user_id": ', "not json at all", '{"event_id":"x3"} trailing'],
    "missing_field:event_id": [line({k: v for k, v in event(0).items() if k != "event_id"})],
    "missing_field:user_id": [line(event("x5", user_id=None)), line(event("x6", user_id="  "))],
    "missing_field:item_id": [line({k: v for k, v in event("x7").items() if k != "item_id"})],
    "missing_field:event_type": [line({k: v for k, v in event("x8").items() if k != "event_type"})],
    "missing_field:ts": [line({k: v for k, v in event("x9").items() if k != "ts"})],
    "bad_type:value": [line(event("x10", value="lots")), line(event("x11", value=True))],
    "bad_type:user_id": [line(event("x12", user_id={"id": 1})), line(event("x13", user_id=[1]))],
    "bad_type:context": [line(event("x14", context="page=home"))],
    "unknown_event_type": [line(event("x15", event_type="teleport"))],
    "bad_timestamp": [
        line(event("x16", ts="yesterday")),
        line(event("x17", ts="1994-12-31T23:59:59Z")),
        line(event("x18", ts=(NOW + timedelta(days=2)).isoformat())),
        line(event("x19", ts=1e20)),
    ],
    "oversize": [line(event("x20", context={"blob": "y" * 70_000}))],
}
FEEDBACK_REJECTS = {
    "missing_field:rec_id": [line({k: v for k, v in feedback("y1").items() if k != "rec_id"})],
    "bad_type:position": [line(feedback("y2", position="top"))],
    "bad_type:model_version": [line(feedback("y3", model_version="v2"))],
    "unknown_event_type": [line(feedback("y4", action="teleport"))],
}


@pytest.fixture(scope="module")
def rejected(spark, tmp_path_factory):
    """One ingest of a file with every kind of broken line, plus a few good ones."""
    root = tmp_path_factory.mktemp("rejects")
    warehouse, landing = root / "warehouse", root / "landing"
    good_events = [line(event(f"ok{n}")) for n in range(3)] + [
        line(event("ok-future-edge", ts=(NOW + timedelta(hours=20)).isoformat())),
        line(event("ok-min-edge", ts="1995-01-01T00:00:00Z")),
    ]
    bad_events = [text for texts in REJECTS.values() for text in texts]
    write_landing_file(landing, "events", "mixed.jsonl", good_events + bad_events + ["", "   "])
    bad_feedback = [text for texts in FEEDBACK_REJECTS.values() for text in texts]
    write_landing_file(landing, "feedback", "mixed.jsonl", [line(feedback("ok")), *bad_feedback])
    summary = ingest_once(warehouse, landing)
    quarantine = table(warehouse, catalog.QUARANTINE)
    return warehouse, summary, quarantine, len(good_events), len(bad_events), len(bad_feedback)


@pytest.mark.parametrize("reason", sorted(REJECTS))
def test_each_event_quarantine_reason(rejected, reason):
    _, _, quarantine, *_ = rejected
    rows = quarantine.filter(pc.equal(quarantine["reason"], reason)).to_pylist()
    rows = [r for r in rows if r["kind"] == "events"]
    assert sorted(r["raw"] for r in rows) == sorted(REJECTS[reason])
    assert all(r["source_file"].endswith("/events/mixed.jsonl") and r["batch_id"] == 0 for r in rows)


@pytest.mark.parametrize("reason", sorted(FEEDBACK_REJECTS))
def test_each_feedback_quarantine_reason(rejected, reason):
    _, _, quarantine, *_ = rejected
    rows = quarantine.filter(pc.equal(quarantine["reason"], reason)).to_pylist()
    assert sorted(r["raw"] for r in rows if r["kind"] == "feedback") == sorted(FEEDBACK_REJECTS[reason])


def test_good_lines_pass_and_blank_lines_are_not_records(rejected):
    warehouse, summary, quarantine, n_good, n_bad, n_bad_feedback = rejected
    assert ids(warehouse) == sorted(
        json.loads(t)["event_id"]
        for t in [line(event(f"ok{n}")) for n in range(3)]
        + [line(event("ok-future-edge")), line(event("ok-min-edge"))]
    )
    totals = summary.totals()
    assert totals["lines_read"] == n_good + n_bad + 1 + n_bad_feedback
    assert totals["quarantined"] == quarantine.num_rows == n_bad + n_bad_feedback


def test_conservation_per_batch_on_mixed_files(spark, dirs):
    warehouse, landing = dirs
    from recocli.data.synthetic import generate_lines

    lines, expected = generate_lines(3000, seed=3, broken_share=0.03, duplicate_share=0.05)
    for kind, texts in lines.items():
        for n in range(3):
            write_landing_file(landing, kind, f"part-{n}.jsonl", texts[n::3])
    summary = ingest_once(warehouse, landing, **{"ingest.max_files_per_batch": 2})
    assert len(summary.batches) >= 2
    metrics = table(warehouse, catalog.INGEST_METRICS).sort_by("batch_id").to_pylist()
    assert [m["batch_id"] for m in metrics] == list(range(len(summary.batches)))
    for m in metrics:
        assert m["lines_read"] == (
            m["events_written"] + m["feedback_written"] + m["quarantined"] + m["duplicates"]
        )
        assert m["duration_s"] >= 0 and m["lag_s"] > 0 and m["writer"] == "delta-rs"
        assert 1 <= len(m["files"]) <= 4
    assert sum(m["lines_read"] for m in metrics) == expected.lines
    assert sum(m["duplicates"] for m in metrics) == expected.duplicates
    assert table(warehouse, catalog.EVENTS).num_rows == expected.events
    assert table(warehouse, catalog.FEEDBACK).num_rows == expected.feedback
    quarantine = table(warehouse, catalog.QUARANTINE)
    counts = dict(zip(*pc.value_counts(quarantine["reason"]).flatten(), strict=True))
    assert {k.as_py(): v.as_py() for k, v in counts.items()} == expected.quarantine


def test_a_byte_cap_splits_a_backlog_into_batches_of_whole_files(spark, dirs):
    warehouse, landing = dirs
    for n in range(4):
        write_landing_file(landing, "events", f"part-{n}.jsonl", [line(event(f"{n}-{k}")) for k in range(50)])
    file_bytes = (landing / "events" / "part-0.jsonl").stat().st_size
    # two and a half files' worth: a batch takes whole files, as many as fit
    summary = ingest_once(warehouse, landing, **{"ingest.max_bytes_per_batch": str(file_bytes * 5 // 2)})
    assert [(b.lines_read, len(b.files)) for b in summary.batches] == [(100, 2), (100, 2)]
    assert ids(warehouse) == sorted(f"e{n}-{k}" for n in range(4) for k in range(50))


def test_a_checkpoint_made_for_another_landing_folder_is_explained(spark, dirs):
    warehouse, landing = dirs
    write_landing_file(landing, "events", "a.jsonl", [line(event(1))])
    ingest_once(warehouse, landing)
    moved = landing.parent / "moved"
    write_landing_file(moved, "events", "b.jsonl", [line(event(2))])
    with pytest.raises(RecoError, match=r"reads the landing folder .* --query-name"):
        ingest_once(warehouse, moved)
    assert ids(warehouse) == ["e1"]


def test_duplicates_within_a_file_across_files_and_across_runs(spark, dirs):
    warehouse, landing = dirs
    write_landing_file(landing, "events", "a.jsonl", [event(1), event(2), event(1, item_id="other")])
    write_landing_file(landing, "events", "b.jsonl", [event(2), event(3)])
    first = ingest_once(warehouse, landing).totals()
    assert (first["events_written"], first["duplicates"]) == (3, 2)
    write_landing_file(landing, "events", "c.jsonl", [event(3), event(1), event(4)])
    write_landing_file(landing, "feedback", "c.jsonl", [feedback(1), feedback(1)])
    second = ingest_once(warehouse, landing).totals()
    assert (second["events_written"], second["feedback_written"], second["duplicates"]) == (1, 1, 3)
    assert ids(warehouse) == ["e1", "e2", "e3", "e4"]
    # the first occurrence wins
    first_e1 = [r for r in table(warehouse, catalog.EVENTS).to_pylist() if r["event_id"] == "e1"]
    assert first_e1[0]["item_id"] == "i1"
    # nothing new: a rerun reads nothing and writes nothing
    assert ingest_once(warehouse, landing).totals()["lines_read"] == 0


def test_tables_are_readable_by_deltalake_duckdb_and_polars(spark, dirs):
    warehouse, landing = dirs
    write_landing_file(landing, "events", "a.jsonl", [event(n, user_id=f"u{n % 3}") for n in range(30)])
    ingest_once(warehouse, landing)
    uri = str(warehouse / "bronze/events")

    import duckdb
    import duckdb_extension_delta
    import polars as pl
    from deltalake import DeltaTable

    assert DeltaTable(uri).to_pyarrow_table().num_rows == 30
    assert pl.read_delta(uri).group_by("user_id").len().sort("user_id")["len"].to_list() == [10, 10, 10]
    # The extension ships in a PyPI package: no download at test time.
    extension = next(Path(duckdb_extension_delta.__path__[0]).rglob("delta.duckdb_extension"))
    con = duckdb.connect()
    con.sql(f"LOAD '{extension}'")
    assert con.sql(f"SELECT count(*), count(DISTINCT event_id) FROM delta_scan('{uri}')").fetchone() == (
        30,
        30,
    )


def test_the_compiled_plan_is_the_same_for_every_batch(spark, dirs):
    """The batch's time (the future bound) stays out of Spark's plan: as a literal there it made Spark
    compile the JSON parse or the checks, and the JIT warm them up, anew for every micro-batch."""
    warehouse, landing = dirs
    settings = settings_for(warehouse, landing)
    earliest = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def plan_of_a_batch(n: int) -> str:
        write_landing_file(landing, "events", f"{n}.jsonl", [event(n)])
        query = (
            validated_stream(spark, settings, earliest)
            .writeStream.format("noop")
            .option("checkpointLocation", str(warehouse / "noop_checkpoint"))
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        assert query.lastProgress["batchId"] == n
        plan = query._jsq.streamingQuery().lastExecution().executedPlan().toString()
        return re.sub(r"#\d+L?|epoch: \d+|\[file:[^\]]*\]", "", plan)  # ids, batch, files

    first, second = plan_of_a_batch(0), plan_of_a_batch(1)
    assert "from_json" in first and first == second
    times = set(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first))
    assert times == {"1995-01-01 00:00:00", "2026-01-03 03:04:05"}  # min bound, earliest + 1 day


def test_a_replayed_batch_keeps_the_time_spark_planned_it_at(spark, dirs):
    """Spark planned batch 0 three days ago and crashed before anything was committed: the rerun
    judges the future bound by that time, and still quarantines the line whole."""
    warehouse, landing = dirs
    soon = datetime.now(UTC) + timedelta(hours=20)
    write_landing_file(
        landing, "events", "a.jsonl", [line(event("now")), line(event("soon", ts=soon.isoformat()))]
    )
    ingest_once(warehouse, landing)
    assert ids(warehouse) == ["enow", "esoon"]

    checkpoint = checkpoint_dir(settings_for(warehouse, landing))
    planned = datetime.now(UTC) - timedelta(days=3)
    offsets = checkpoint / "offsets" / "0"
    header, metadata, *sources = offsets.read_text().splitlines()
    metadata = json.dumps({**json.loads(metadata), "batchTimestampMs": int(planned.timestamp() * 1000)})
    offsets.write_text("\n".join([header, metadata, *sources]))
    for stale in ("offsets/.0.crc", "commits/0", "commits/.0.crc"):  # Hadoop's checksums too
        (checkpoint / stale).unlink()
    for spec in catalog.INGEST_TABLES:
        shutil.rmtree(Warehouse(warehouse).uri(spec))
    assert abs(batch_time(checkpoint, 0) - planned) < timedelta(milliseconds=1)
    assert batch_time(checkpoint, 0) - timedelta(hours=1) < earliest_batch_time(checkpoint) <= planned

    ingest_once(warehouse, landing)
    assert ids(warehouse) == ["enow"]
    quarantine = table(warehouse, catalog.QUARANTINE).to_pylist()
    assert [(r["reason"], json.loads(r["raw"])["event_id"]) for r in quarantine] == [
        ("bad_timestamp", "esoon")
    ]


@pytest.mark.parametrize("spark_recorded", [True, False], ids=["spark-recorded", "spark-replays"])
def test_a_spooled_batch_whose_commit_failed_is_committed_by_the_next_run(spark, dirs, spark_recorded):
    """Delta commits run while Spark computes the next batch, so Spark records batch 0 as done before
    its commit ends. Here that commit fails: the spool keeps the batch, and the next run commits it
    before Spark starts. If Spark had not recorded it (a kill just after the spool's save), Spark
    replays it and the run skips it. Nothing is lost and nothing is written or counted twice."""
    warehouse, landing = dirs
    write_landing_file(landing, "events", "a.jsonl", [event(n) for n in range(5)])
    write_landing_file(landing, "events", "b.jsonl", [event(n) for n in range(5, 9)])
    settings = settings_for(warehouse, landing, **{"ingest.max_files_per_batch": 1})
    broken_log_entry = Path(Warehouse(warehouse).uri(catalog.EVENTS)) / "_delta_log" / f"{1:020d}.json"

    def break_events_table(_writer: str) -> None:
        broken_log_entry.write_text("not json\n")  # every later read or commit of bronze/events fails

    with pytest.raises(Exception, match="Json error"):
        run_ingest(settings, once=True, on_start=break_events_table)
    checkpoint = checkpoint_dir(settings)
    assert (checkpoint / "commits" / "0").exists() and not (checkpoint / "commits" / "1").exists()
    # batch 1 is spooled too when Spark started it before the failure stopped the query
    assert "batch-000000000000.arrow" in [p.name for p in (checkpoint / "spool").iterdir()]

    broken_log_entry.unlink()
    assert ids(warehouse) == []
    if not spark_recorded:
        for record in ("commits/0", "commits/.0.crc"):  # Hadoop's checksum too
            (checkpoint / record).unlink()
    summary = run_ingest(settings, once=True)
    assert ids(warehouse) == [f"e{n}" for n in range(9)]
    metrics = table(warehouse, catalog.INGEST_METRICS).to_pylist()
    assert sorted(m["batch_id"] for m in metrics) == [0, 1]
    assert sorted(m["lines_read"] for m in metrics) == [4, 5]
    assert (summary.totals()["batches"], summary.totals()["lines_read"]) == (2, 9)
    assert list((checkpoint / "spool").iterdir()) == []


def test_sessions_skip_pyspark_call_site_capture(spark):
    """Four JVM round trips per Column call otherwise, paid by every ingest start."""
    assert spark.conf.get("spark.python.sql.dataFrameDebugging.enabled") == "false"
