"""One validated micro-batch through the processor into real Delta tables: split, dedup, the future
bound, and a replay after a commit that failed half-way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake.exceptions import DeltaError

from lakehouse import catalog, delta, schemas
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.writers import DeltaRsWriter
from spark_jobs.batch import BatchProcessor

LINEAGE = ("event_date", "ingested_at", "batch_id", "source_file")
LATEST = datetime.now(UTC) + timedelta(days=1)  # the latest event time each test batch accepts
# The columns of the validated stream, as Spark hands them over: each kind's contract fields.
VALIDATED = pa.schema(
    [("kind", pa.string()), ("reason", pa.string()), ("raw", pa.string()), ("source_file", pa.string())]
    + [(f.name, f.type) for f in schemas.EVENTS if f.name not in LINEAGE]
    + [(f.name, f.type) for f in schemas.FEEDBACK if f.name not in (*LINEAGE, *schemas.EVENTS.names)]
)


def _batch(events: list[str], feedback: list[str], rejected: int = 0, ts: datetime | None = None) -> pa.Table:
    ts = ts or datetime.now(UTC)
    event = {"kind": "events", "user_id": "u", "item_id": "i", "event_type": "view", "ts": ts}
    answer = {"kind": "feedback", "rec_id": "r", "user_id": "u", "item_id": "i", "action": "click", "ts": ts}
    rows = [{**event, "event_id": e} for e in events] + [{**answer, "event_id": e} for e in feedback]
    rows += [{"kind": "events", "reason": "malformed_json", "raw": "{"} for _ in range(rejected)]
    return pa.Table.from_pylist([{"source_file": "f", **row} for row in rows], schema=VALIDATED)


def _ids(warehouse: Warehouse, spec: catalog.TableSpec) -> list[str]:
    return sorted(delta.read_table(warehouse.uri(spec), columns=["event_id"])["event_id"].to_pylist())


def test_batch_is_split_deduplicated_and_conserved(tmp_path):
    warehouse = Warehouse(tmp_path)
    processor = BatchProcessor(warehouse, DeltaRsWriter(warehouse, "q"), "q")
    first = processor.process(_batch(["a", "b", "a"], ["x"], rejected=2), 0, LATEST)
    second = processor.process(_batch(["b", "c"], ["x", "y", "y"]), 1, LATEST)

    assert (first.events_written, first.feedback_written, first.quarantined, first.duplicates) == (2, 1, 2, 1)
    assert (second.events_written, second.feedback_written, second.duplicates) == (1, 1, 3)
    for report in (first, second):
        assert report.lines_read == (
            report.events_written + report.feedback_written + report.quarantined + report.duplicates
        )
    assert _ids(warehouse, catalog.EVENTS) == ["a", "b", "c"]
    assert _ids(warehouse, catalog.FEEDBACK) == ["x", "y"]


def test_replay_after_a_failed_commit_loses_no_row(tmp_path):
    warehouse = Warehouse(tmp_path)
    processor = BatchProcessor(warehouse, DeltaRsWriter(warehouse, "q"), "q")
    processor.process(_batch(["a"], []), 0, LATEST)
    # The metrics table, committed last, cannot be opened: events and feedback of batch 1 are in,
    # the batch as a whole failed and Spark will run it again.
    metrics = Path(warehouse.uri(catalog.INGEST_METRICS))
    metrics.rename(tmp_path / "metrics_aside")
    metrics.write_text("not a table")
    with pytest.raises(DeltaError):
        processor.process(_batch(["b", "c"], ["x"]), 1, LATEST)

    metrics.unlink()
    (tmp_path / "metrics_aside").rename(metrics)
    replay = processor.process(_batch(["b", "c"], ["x"]), 1, LATEST)
    assert (replay.events_written, replay.feedback_written, replay.duplicates) == (2, 1, 0)
    assert _ids(warehouse, catalog.EVENTS) == ["a", "b", "c"]
    assert _ids(warehouse, catalog.FEEDBACK) == ["x"]
    assert delta.committed_version(warehouse.uri(catalog.INGEST_METRICS), "q") == 1


def test_lines_later_than_the_batch_accepts_are_quarantined_whole(tmp_path):
    warehouse = Warehouse(tmp_path)
    processor = BatchProcessor(warehouse, DeltaRsWriter(warehouse, "q"), "q")
    late = _batch(["a", "b"], ["x"], ts=LATEST + timedelta(seconds=1))
    late = late.set_column(2, "raw", pa.array(['{"a"}', '{"b"}', '{"x"}']))
    report = processor.process(pa.concat_tables([_batch(["c"], [], ts=LATEST), late]), 0, LATEST)

    assert (report.events_written, report.feedback_written, report.quarantined) == (1, 0, 3)
    assert _ids(warehouse, catalog.EVENTS) == ["c"]
    quarantine = delta.read_table(warehouse.uri(catalog.QUARANTINE)).sort_by("raw")
    assert quarantine["raw"].to_pylist() == ['{"a"}', '{"b"}', '{"x"}']
    assert set(quarantine["reason"].to_pylist()) == {"bad_timestamp"}
    assert quarantine["kind"].to_pylist() == ["events", "events", "feedback"]


def test_a_late_line_without_its_text_stops_the_batch(tmp_path):
    warehouse = Warehouse(tmp_path)
    processor = BatchProcessor(warehouse, DeltaRsWriter(warehouse, "q"), "q")
    with pytest.raises(RecoError, match="without its text"):
        processor.process(_batch(["a"], [], ts=LATEST + timedelta(seconds=1)), 0, LATEST)
    assert delta.read_table(warehouse.uri(catalog.EVENTS)) is None
