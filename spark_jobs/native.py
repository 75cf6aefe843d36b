"""Ingest with Delta's jars on the cluster (writer `spark-delta`): no row of a batch reaches the driver.

UNTESTED HERE: Delta's Spark jars cannot be fetched on the build machine (no Maven), so this path has
never run; the delta-rs path (spark_jobs.batch) is the tested one. What it does instead of
spark_jobs.batch: valid rows are deduplicated on (kind, event_id) in Spark's state store
(`dropDuplicatesWithinWatermark`, RocksDB provider) for `ingest.dedup_horizon` of arrival time, and
each batch is split and written by the executors with txnAppId/txnVersion (a rerun of a batch
commits nothing twice); the driver collects only the batch's counts and file names for
_ops/ingest_metrics.

Differences from the delta-rs path, by design: the horizon is measured in arrival time (a watermark
on event time would drop, as late, any event older than the newest one less the horizon: a
backfill would be lost), so a duplicate arriving more than the horizon after its first copy is
written again; duplicates are counted in Spark's query progress (`numDropDuplicateRows` of the
state operator), not in _ops/ingest_metrics (0 there); lines that are not UTF-8 keep their bytes
as Spark decoded them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse import catalog
from lakehouse.catalog import TableSpec
from lakehouse.writers import SparkDeltaWriter
from spark_jobs.batch import KIND_TABLES, BatchReport, metrics_row
from spark_jobs.refusals import RefusalLedger

ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
STATE_STORE = "spark.sql.streaming.stateStore.providerClass"


def use_rocksdb(spark: SparkSession) -> None:
    """The state store keeps the horizon's ids on the executors' disks, not in their heaps (fixed per
    checkpoint: set before the query first starts)."""
    spark.conf.set(STATE_STORE, ROCKSDB)


def deduplicated(stream: DataFrame, horizon_s: float) -> DataFrame:
    """Valid rows, the first sighting of each (kind, event_id) within the horizon; rejected rows all."""
    valid = F.col("reason").isNull()
    arrived = stream.filter(valid).withColumn("_arrived", F.current_timestamp())
    kept = arrived.withWatermark("_arrived", f"{int(horizon_s)} seconds")
    kept = kept.dropDuplicatesWithinWatermark(["kind", "event_id"]).drop("_arrived")
    return kept.unionByName(stream.filter(~valid))


class NativeBatch:
    """foreachBatch target: one batch written table by table by the executors, exactly once."""

    def __init__(
        self,
        writer: SparkDeltaWriter,
        app_id: str,
        latest: Callable[[int], datetime],
        refusals: RefusalLedger,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        self.writer, self.app_id, self.latest, self.on_batch = writer, app_id, latest, on_batch
        self.refusals = refusals

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        started, clock = datetime.now(UTC), time.perf_counter()
        late = F.col("reason").isNull() & (F.col("ts") > F.lit(self.latest(batch_id)))
        frame = frame.withColumn("reason", F.when(late, F.lit("bad_timestamp")).otherwise(F.col("reason")))
        frame = frame.withColumn("ingested_at", F.lit(started)).withColumn(
            "batch_id", F.lit(batch_id).cast("long")
        )
        frame = frame.persist()
        try:
            report = self._write(frame, batch_id, started)
        finally:
            frame.unpersist()
        report.duration_s = round(time.perf_counter() - clock, 3)
        report.refused = self.refusals.take(batch_id)
        self.writer.append_once(
            catalog.INGEST_METRICS, metrics_row(report, self.app_id, started, self.writer.name), batch_id
        )
        if self.on_batch:
            self.on_batch(report)

    def _write(self, frame: DataFrame, batch_id: int, started: datetime) -> BatchReport:
        valid = F.col("reason").isNull()
        parts = {spec: valid & (F.col("kind") == kind) for kind, spec in KIND_TABLES.items()}
        parts[catalog.QUARANTINE] = ~valid
        for spec, rows in parts.items():
            self.writer.append_frame(spec, _columns_of(frame.filter(rows), spec), batch_id)
        counts = frame.groupBy("kind", valid.alias("valid")).agg(
            F.count(F.lit(1)).alias("n"), F.min(F.when(valid, F.col("ts"))).alias("oldest")
        )
        stats = {(r["kind"], r["valid"]): (r["n"], r["oldest"]) for r in counts.collect()}
        oldest = [o for (_, ok), (_, o) in stats.items() if ok and o is not None]
        files = sorted(r[0] for r in frame.select("source_file").distinct().collect())
        written = {kind: stats.get((kind, True), (0, None))[0] for kind in KIND_TABLES}
        quarantined = sum(n for (_, ok), (n, _) in stats.items() if not ok)
        counts_of = {
            **{spec: written[kind] for kind, spec in KIND_TABLES.items()},
            catalog.QUARANTINE: quarantined,
        }
        return BatchReport(
            batch_id=batch_id,
            lines_read=sum(n for n, _ in stats.values()),
            events_written=written["events"],
            feedback_written=written["feedback"],
            quarantined=quarantined,
            duplicates=0,
            duration_s=0.0,
            lag_s=round((started - min(oldest)).total_seconds(), 3) if oldest else None,
            files=files,
            tables_written=[spec.name for spec, n in counts_of.items() if n],
        )


def _columns_of(frame: DataFrame, spec: TableSpec) -> DataFrame:
    """The columns `spec` keeps, event_date (the UTC date of ts: the session's time zone is UTC) added."""
    made = {"event_date": F.to_date("ts")}
    columns: list[str | Column] = [
        n if n in frame.columns else made[n].alias(n)
        for n in spec.schema.names
        if n in frame.columns or n in made
    ]
    return frame.select(*columns)
