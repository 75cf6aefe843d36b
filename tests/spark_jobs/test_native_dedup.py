"""The state-store dedup of the `spark-delta` path (spark_jobs.native.deduplicated) on real Spark with
the RocksDB provider: the Delta write itself needs Delta's jars, which this machine cannot fetch, so
only the dedup is tested here; rows are collected to the test's driver to be counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pyspark.sql import functions as F

from lakehouse.contracts import EVENTS
from spark_jobs.native import STATE_STORE, deduplicated, use_rocksdb
from spark_jobs.validate import Bounds, validate

BOUNDS = Bounds(min_ts=datetime(1995, 1, 1, tzinfo=UTC), max_future_s=86400.0, max_line_bytes=1000)


def event(event_id: str) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "user_id": "u",
            "item_id": "i",
            "event_type": "click",
            "ts": "2025-06-01T12:00:00Z",
        }
    )


def test_duplicates_within_and_across_batches_are_dropped_and_rejected_lines_all_kept(spark, tmp_path):
    landing, checkpoint = tmp_path / "landing", tmp_path / "checkpoint"
    landing.mkdir()
    seen: list[tuple[int, str | None, str | None]] = []

    def collect(frame, batch_id):
        seen.extend(
            (batch_id, r["event_id"], r["reason"]) for r in frame.select("event_id", "reason").collect()
        )

    def run_once():
        lines = spark.readStream.format("text").load(str(landing))
        lines = lines.select("value", F.col("_metadata.file_path").alias("source_file"))
        stream = deduplicated(validate(lines, EVENTS, BOUNDS, datetime(2026, 1, 1, tzinfo=UTC)), 7 * 86400)
        writer = stream.writeStream.option("checkpointLocation", str(checkpoint)).foreachBatch(collect)
        writer.trigger(availableNow=True).start().awaitTermination()

    use_rocksdb(spark)
    try:
        (landing / "a.jsonl").write_text("\n".join([event("e1"), event("e2"), event("e1"), "{", "{"]) + "\n")
        run_once()
        (landing / "b.jsonl").write_text("\n".join([event("e2"), event("e3")]) + "\n")
        run_once()
        provider = spark.conf.get(STATE_STORE)
    finally:
        spark.conf.unset(STATE_STORE)
    assert provider.endswith("RocksDBStateStoreProvider")
    valid = sorted(event_id for _, event_id, reason in seen if reason is None)
    assert valid == ["e1", "e2", "e3"]  # e1 twice in a batch, e2 again in the next: each written once
    assert sum(1 for _, _, reason in seen if reason is not None) == 2  # rejected lines are never deduplicated
    batches = {event_id: batch for batch, event_id, reason in seen if reason is None}
    assert batches["e3"] > batches["e1"] == batches["e2"]  # the second run's batch: after the first's
