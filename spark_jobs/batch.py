"""One validated micro-batch (as Arrow) → split, deduplicated, committed exactly once, measured.

Conservation holds per batch: lines read = events + feedback + quarantined + duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import catalog
from lakehouse.catalog import TableSpec, Warehouse
from lakehouse.errors import RecoError
from lakehouse.writers import BatchWriter
from spark_jobs.dedup import SeenIds, horizon_days
from spark_jobs.settings import IngestSettings

KIND_TABLES: dict[str, TableSpec] = {"events": catalog.EVENTS, "feedback": catalog.FEEDBACK}


@dataclass
class BatchReport:
    batch_id: int
    lines_read: int
    events_written: int
    feedback_written: int
    quarantined: int
    duplicates: int
    duration_s: float
    lag_s: float | None
    files: list[str] = field(default_factory=list)
    # False when an earlier, killed attempt had already committed this batch.
    committed_now: bool = True
    # The tables this batch added rows to (what an incremental fine-tune should look at).
    tables_written: list[str] = field(default_factory=list)
    # Landing files set aside (in <kind>/_refused/) since the previous batch, not read (spark_jobs.refusals).
    refused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


class BatchProcessor:
    """Everything after Spark's validation, shared by both Delta writers."""

    def __init__(
        self,
        warehouse: Warehouse,
        writer: BatchWriter,
        app_id: str,
        dedup_horizon_s: float = IngestSettings.dedup_horizon,
    ) -> None:
        self.writer, self.app_id = writer, app_id
        days = horizon_days(dedup_horizon_s)
        self.seen = {kind: SeenIds(warehouse.uri(spec), app_id, days) for kind, spec in KIND_TABLES.items()}

    def process(
        self, data: pa.Table, batch_id: int, latest: datetime, refused: Sequence[str] = ()
    ) -> BatchReport:
        """Commit one batch from spark_jobs.validate; valid lines with an event time after `latest`
        (the batch's time plus ingest.max_future) are quarantined as bad_timestamp. Its metrics row
        names the `refused` landing files."""
        try:
            return self._process(_escape_bad_encoding(_reject_late(data, latest)), batch_id, refused)
        except BaseException:
            for seen in self.seen.values():
                seen.forget()
            raise

    def _process(self, data: pa.Table, batch_id: int, refused: Sequence[str]) -> BatchReport:
        started, clock = datetime.now(UTC), time.perf_counter()
        lineage = {"ingested_at": started, "batch_id": batch_id}
        outputs: dict[str, pa.Table] = {}
        duplicates = 0
        valid = pc.is_null(data["reason"])
        for kind, spec in KIND_TABLES.items():
            in_kind = pc.and_(valid, pc.equal(data["kind"], kind))
            rows = data.select(["event_id", "ts"]).filter(in_kind)
            fresh = self.seen[kind].first_sightings(rows["event_id"], rows["ts"], batch_id)
            keep = _keep_fresh(in_kind, fresh)
            duplicates += len(fresh) - int(fresh.sum())
            rows = _columns_of(data, spec).filter(keep)
            rows = rows.append_column("event_date", pc.cast(rows["ts"], pa.date32()))
            outputs[spec.name] = _with_columns(rows, lineage)
        rejected = _columns_of(data, catalog.QUARANTINE).filter(pc.invert(valid))
        outputs[catalog.QUARANTINE.name] = _with_columns(rejected, lineage)

        committed_now = False
        written = []
        for spec in (catalog.EVENTS, catalog.FEEDBACK, catalog.QUARANTINE):
            table = outputs[spec.name]
            if table.num_rows:
                committed_now |= self.writer.append_once(spec, table, batch_id)
                written.append(spec.name)

        report = BatchReport(
            batch_id=batch_id,
            lines_read=data.num_rows,
            events_written=outputs[catalog.EVENTS.name].num_rows,
            feedback_written=outputs[catalog.FEEDBACK.name].num_rows,
            quarantined=rejected.num_rows,
            duplicates=duplicates,
            duration_s=0.0,
            lag_s=_lag_seconds(data, started),
            files=sorted(pc.unique(data["source_file"]).to_pylist()),
            tables_written=written,
            refused=list(refused),
        )
        report.duration_s = round(time.perf_counter() - clock, 3)
        metrics = metrics_row(report, self.app_id, started, self.writer.name)
        committed_now |= self.writer.append_once(catalog.INGEST_METRICS, metrics, batch_id)
        report.committed_now = committed_now
        return report


def _reject_late(data: pa.Table, latest: datetime) -> pa.Table:
    """Mark valid rows whose event time is after `latest` as bad_timestamp; validate kept their line."""
    late = pc.and_kleene(
        pc.is_null(data["reason"]), pc.greater(data["ts"], pa.scalar(latest, data["ts"].type))
    )
    late = pc.fill_null(late, False)
    if not pc.any(late).as_py():
        return data
    if pc.any(pc.and_(late, pc.is_null(data["raw"]))).as_py():
        raise RecoError(
            f"a line later than {latest:%Y-%m-%d %H:%M:%S} UTC reached the batch without its text (was the "
            "clock set back?); nothing of this batch was written: run the command again"
        )
    reason = pc.if_else(late, pa.scalar("bad_timestamp"), data["reason"])
    return data.set_column(data.schema.get_field_index("reason"), "reason", reason)


def _escape_bad_encoding(data: pa.Table) -> pa.Table:
    """The text of lines that are not UTF-8, with each invalid byte written as \\xNN: raw bytes in a
    string column would make the quarantine unreadable to Polars, DuckDB and pyarrow's to_pylist."""
    bad = pc.fill_null(pc.equal(data["reason"], "bad_encoding"), False)
    if not pc.any(bad).as_py():
        return data
    raw, flags = data["raw"].cast(pa.binary()).to_pylist(), bad.to_pylist()
    escaped = [
        t.decode("utf-8", "backslashreplace") if flag else t and t.decode()
        for t, flag in zip(raw, flags, strict=True)
    ]
    return data.set_column(data.schema.get_field_index("raw"), "raw", pa.array(escaped, pa.string()))


def _columns_of(data: pa.Table, spec: TableSpec) -> pa.Table:
    """The batch's columns that `spec` keeps: filtering copies only those."""
    return data.select([name for name in spec.schema.names if name in data.column_names])


def _keep_fresh(in_kind: pa.ChunkedArray, fresh: np.ndarray) -> np.ndarray:
    """Row mask over the whole batch: the rows of `in_kind` whose `fresh` flag (one per such row) is set."""
    keep = in_kind.to_numpy()
    keep[np.flatnonzero(keep)[~fresh]] = False
    return keep


def _with_columns(table: pa.Table, values: dict) -> pa.Table:
    """Append constant columns (cheaply: one value, repeated by index)."""
    repeat = pa.array(np.zeros(table.num_rows, dtype=np.int64))
    for name, value in values.items():
        table = table.append_column(name, pa.array([value]).take(repeat))
    return table


def _lag_seconds(data: pa.Table, now: datetime) -> float | None:
    """Now minus the batch's oldest valid event time (filters the ts column only, not the batch)."""
    oldest = pc.min(data["ts"].filter(pc.is_null(data["reason"]))).as_py()
    return None if oldest is None else round((now - oldest).total_seconds(), 3)


def metrics_row(report: BatchReport, app_id: str, started: datetime, writer: str) -> pa.Table:
    row = {
        "query_name": app_id,
        "batch_id": report.batch_id,
        "started_at": started,
        "lines_read": report.lines_read,
        "events_written": report.events_written,
        "feedback_written": report.feedback_written,
        "quarantined": report.quarantined,
        "duplicates": report.duplicates,
        "duration_s": report.duration_s,
        "lag_s": report.lag_s,
        "writer": writer,
        "files": report.files,
        "refused": report.refused,
    }
    return pa.Table.from_pylist([row], schema=catalog.INGEST_METRICS.schema)
