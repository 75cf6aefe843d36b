"""Bulk backfill of bronze/events: JSON lines through the same validation, dedup and commit as ingest.

`reco data import` uses it to load a whole dataset without going through landing files. Each chunk
of lines is one batch of its own app id (`reco_import_<dataset>`): validated by
spark_jobs.validate on a static DataFrame, then deduplicated against everything bronze holds and
committed once by spark_jobs.batch, with a row in _ops/ingest_metrics. Batch ids continue after the
app's last commit, so running the same import again writes nothing and counts duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import pyarrow as pa

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.contracts import CONTRACTS
from lakehouse.locks import exclusive_lock
from lakehouse.writers import make_writer
from spark_jobs.batch import BatchProcessor, BatchReport
from spark_jobs.session import build_session
from spark_jobs.settings import JobSettings
from spark_jobs.validate import Bounds, validate

# The lock `reco ingest` holds: bronze has one writer at a time, so dedup sees every id.
BRONZE_LOCK = "ingest"


def next_batch_id(warehouse: Warehouse, app_id: str) -> int:
    """One past the last batch this app committed to any table (0 for a new app)."""
    done = [
        delta.committed_version(warehouse.uri(spec), app_id)
        for spec in (catalog.EVENTS, catalog.QUARANTINE, catalog.INGEST_METRICS)
    ]
    return max((v for v in done if v is not None), default=-1) + 1


def backfill_events(
    settings: JobSettings,
    app_id: str,
    chunks: Iterable[pa.Array],
    source_file: str,
    on_batch: Callable[[BatchReport], None] | None = None,
) -> list[BatchReport]:
    """Validate and commit each chunk of event JSON lines as one batch; the reports, in order."""
    warehouse = Warehouse(settings.warehouse)
    bounds = Bounds.from_settings(settings.ingest)
    dedup_horizon_s = settings.ingest.dedup_horizon
    with exclusive_lock(warehouse.lock(BRONZE_LOCK), "a bronze writer (reco ingest or reco data import)"):
        for spec in catalog.INGEST_TABLES:
            delta.ensure_table(warehouse.uri(spec), spec)
        spark = build_session(settings.spark)
        writer = make_writer(settings.ingest.writer, spark, warehouse, app_id)
        processor = BatchProcessor(warehouse, writer, app_id, dedup_horizon_s)
        batch_id = next_batch_id(warehouse, app_id)
        started = datetime.now(UTC)
        reports = []
        for lines in chunks:
            frame = spark.createDataFrame(
                pa.table({"value": lines, "source_file": pa.repeat(source_file, len(lines))})
            )
            validated = validate(frame, CONTRACTS["events"], bounds, started).toArrow()
            report = processor.process(validated, batch_id, bounds.latest(datetime.now(UTC)))
            reports.append(report)
            if on_batch:
                on_batch(report)
            batch_id += 1
        return reports
