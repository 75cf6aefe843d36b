"""Streaming ingest: landing files (or Kafka) → validated, deduplicated Delta tables, exactly once.

Runs from `reco ingest` and, unchanged, as `spark-submit spark_jobs/ingest.py --config FILE`.
Exactly once = Spark's checkpoint (which batch holds which files) + one Delta commit per table
per batch tagged with (query name, batch id), skipped when already there.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import reduce
from pathlib import Path
from typing import NoReturn

import pyarrow as pa
import pyarrow.compute as pc
from py4j.protocol import Py4JJavaError
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import DataStreamWriter

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.contracts import CONTRACTS
from lakehouse.errors import RecoError, as_reco_error
from lakehouse.landing import (
    Refused,
    file_uri_path,
    landing_dirs,
    pending_files,
    prepare_landing,
    require_landing,
)
from lakehouse.locks import exclusive_lock
from lakehouse.writers import SparkDeltaWriter, make_writer
from spark_jobs.batch import BatchProcessor, BatchReport
from spark_jobs.native import NativeBatch, deduplicated, use_rocksdb
from spark_jobs.refusals import RefusalLedger
from spark_jobs.session import build_session
from spark_jobs.settings import JobSettings, load_job_settings
from spark_jobs.sources import require_kafka_package, source_options, source_streams
from spark_jobs.spool import BackgroundCommit, BatchSpool
from spark_jobs.validate import Bounds, validate

OnBatch = Callable[[BatchReport], None]
# Batches this run plans get a time no earlier than its start, short of the clock being set back.
CLOCK_MARGIN = timedelta(hours=1)
# What to do about Spark failures a user can act on, by a phrase of Spark's message.
HINTS = {
    "maxResultSize": (
        "the micro-batch is too large for the driver: lower ingest.max_bytes_per_batch, "
        "max_files_per_batch or kafka.max_offsets_per_batch; a batch Spark has already planned keeps "
        'its size at a rerun, so run that one with a larger limit: [spark] conf = {"spark.driver.'
        'maxResultSize" = "4g"}'
    ),
    "Wrong basePath": (
        "this query's checkpoint was made for another landing folder: ingest from that folder, or "
        "under a new query (--query-name)"
    ),
}


class StopRequested(Exception):
    """Raised inside a batch that starts after SIGINT/SIGTERM, so Spark does not commit it."""


@dataclass
class IngestSummary:
    writer: str
    batches: list[BatchReport] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    stopped_by_signal: bool = False
    nothing_waited: bool = False  # --once found nothing to read and did not start Spark

    def totals(self) -> dict:
        keys = ("lines_read", "events_written", "feedback_written", "quarantined", "duplicates", "duration_s")
        totals = {key: sum(getattr(b, key) for b in self.batches) for key in keys}
        totals["duration_s"] = round(totals["duration_s"], 3)
        return {"writer": self.writer, "batches": len(self.batches), **totals, "refused": len(self.refused)}


def check_inputs(settings: JobSettings) -> None:
    """The warehouse and (for the files source) the landing folder must exist: a mistyped path is
    exit 2, not a new empty warehouse and 0 batches under cron. `reco init` creates them. Settings
    are checked first: every mistake is found before any work."""
    source_options(settings.ingest)
    Warehouse(settings.warehouse).require()
    if settings.ingest.source == "files":
        require_landing(settings.ingest.landing)


def checkpoint_dir(settings: JobSettings) -> Path:
    custom = settings.ingest.checkpoint
    return (
        Path(custom).expanduser().resolve()
        if custom
        else Warehouse(settings.warehouse).checkpoint(settings.ingest.query_name)
    )


def validated_stream(spark: SparkSession, settings: JobSettings, earliest_batch: datetime) -> DataFrame:
    ingest = settings.ingest
    bounds = Bounds.from_settings(ingest)
    frames = [
        validate(df, CONTRACTS[kind], bounds, earliest_batch)
        for kind, df in source_streams(spark, ingest).items()
    ]
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _batch_ids(log: Path) -> set[int]:
    return {int(p.name) for p in log.glob("[0-9]*") if p.name.isdigit()}


def batch_time(checkpoint: Path, batch_id: int) -> datetime:
    """The time Spark gave micro-batch `batch_id` (its offset log's second line), the same on a replay."""
    offsets = checkpoint / "offsets" / str(batch_id)
    try:
        metadata = json.loads(offsets.read_text().splitlines()[1])
        return datetime.fromtimestamp(metadata["batchTimestampMs"] / 1000, UTC)
    except (OSError, IndexError, ValueError, KeyError, TypeError) as exc:
        raise RecoError(f"cannot read the time of batch {batch_id} from {offsets}: {exc}") from None


def earliest_batch_time(checkpoint: Path) -> datetime:
    """The oldest time a batch of this run can have: a new batch is timed when Spark plans it, and the
    only older one is the batch Spark replays after a crash (planned in offsets/, not in commits/).
    Rounded down to the hour, so that runs within an hour in one process share Spark's compiled code."""
    pending = _batch_ids(checkpoint / "offsets") - _batch_ids(checkpoint / "commits")
    earliest = min([datetime.now(UTC) - CLOCK_MARGIN, *(batch_time(checkpoint, n) for n in pending)])
    return earliest.replace(minute=0, second=0, microsecond=0)


def nothing_waits(settings: JobSettings, checkpoint: Path) -> bool:
    """Whether a --once run would find nothing to do, known without Spark (whose start costs ~25 s a
    cron run): every landed file is in a committed batch of this query, and the checkpoint holds no
    batch planned but not recorded, nor a spooled one. Kafka's offsets need Spark: never known."""
    if settings.ingest.source != "files":
        return False
    if (
        _batch_ids(checkpoint / "offsets") - _batch_ids(checkpoint / "commits")
        or BatchSpool(checkpoint / "spool").pending()
    ):
        return False
    metrics = delta.read_table(
        Warehouse(settings.warehouse).uri(catalog.INGEST_METRICS),
        columns=["files"],
        filters=[("query_name", "=", settings.ingest.query_name)],
    )
    ingested = pc.list_flatten(metrics["files"]).to_pylist() if metrics is not None else []
    return not pending_files(settings.ingest.landing, ingested, settings.ingest.follows_links)


def _refuse_other_landing(settings: JobSettings, checkpoint: Path) -> None:
    """A checkpoint remembers the landing folders its query reads (each file source's log names the
    files it took); Spark fails on another one only after it starts, with "Wrong basePath"."""
    if settings.ingest.source != "files":
        return
    expected = {str(folder) for folder in landing_dirs(settings.ingest.landing).values()}
    for log in sorted((checkpoint / "sources").glob("[0-9]*")):
        entries = sorted(
            (p for p in log.iterdir() if p.name.split(".")[0].isdigit()),
            key=lambda p: int(p.name.split(".")[0]),
        )
        recorded = (
            [json.loads(line)["path"] for line in entries[0].read_text().splitlines()[1:2]] if entries else []
        )
        folders = {str(file_uri_path(path).parent) for path in recorded}
        if folders - expected:
            raise RecoError(
                f"query '{settings.ingest.query_name}' (checkpoint {checkpoint}) reads the landing folder "
                f"{Path(folders.pop()).parent}, not {Path(settings.ingest.landing).expanduser().resolve()}: "
                "ingest from that folder, or give this one its own query with --query-name NAME"
            )


def _refuse_lost_checkpoint(warehouse: Warehouse, app_id: str, checkpoint: Path) -> None:
    """A checkpoint behind the tables (lost, or restored from an older copy) would replan batches
    the tables already hold under new files, and they would be skipped as committed: refuse
    instead of losing data. Spark plans a batch in `offsets/` before running it, so a healthy
    checkpoint has planned every batch the tables hold, even when the kill landed between the
    Delta commit and Spark's own `commits/` entry."""
    done = delta.committed_version(warehouse.uri(catalog.INGEST_METRICS), app_id)
    if done is not None and max(_batch_ids(checkpoint / "offsets"), default=-1) < done:
        raise RecoError(
            f"the tables hold batches 0..{done} of query '{app_id}' but its checkpoint {checkpoint} is "
            "missing or behind them: restore the checkpoint, or ingest under a new ingest.query_name"
        )


class _BatchCallback:
    """foreachBatch target: saves each batch to the spool and starts its commit on a thread, so Spark
    computes the next batch meanwhile. Holds a lock while it runs, so a stop waits for it."""

    def __init__(
        self,
        processor: BatchProcessor,
        spool: BatchSpool,
        latest: Callable[[int], datetime],
        on_batch: OnBatch | None,
        summary: IngestSummary,
        stop: threading.Event,
    ) -> None:
        self.processor, self.spool, self.latest, self.on_batch = processor, spool, latest, on_batch
        self.summary, self.stop = summary, stop
        self.commits = BackgroundCommit()
        self.drained: set[int] = set()
        self.handed: int | None = None  # the last batch saved to the spool and handed to a commit
        self.refusals: RefusalLedger | None = None  # set once the spool's batches are committed
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def __call__(self, frame: DataFrame, batch_id: int) -> None:
        with self.lock:
            if self.stop.is_set():
                raise StopRequested()
            if batch_id in self.drained:
                return  # Spark replays a batch it had not recorded, which the spool held: done
            try:
                data, latest = frame.toArrow(), self.latest(batch_id)
                refused = self.refusals.take(batch_id) if self.refusals else []
                self.spool.save(batch_id, data, latest, refused)
                self.commits.start(lambda: self.commit(batch_id, data, latest, refused))
                self.handed = batch_id
            except BaseException as exc:
                self.error = _spark_failure(exc, batch_id)
                raise

    def commit(self, batch_id: int, data: pa.Table, latest: datetime, refused: list[str]) -> None:
        """Commit one spooled batch (skipping tables that already hold it), then drop it from the spool."""
        report = self.processor.process(data, batch_id, latest, refused)
        self.spool.remove(batch_id)
        self.summary.batches.append(report)
        if self.on_batch:
            self.on_batch(report)

    def commit_spooled(self) -> None:
        """Commit, oldest first, the batches a killed run had saved but not committed (Spark may have
        recorded them as done, so it will not run them again)."""
        for batch_id in self.spool.pending():
            self.commit(batch_id, *self.spool.load(batch_id))
            self.drained.add(batch_id)


def _spark_failure(exc: BaseException, batch_id: int) -> BaseException:
    """A failure inside Spark (a Java exception) as one line naming its root cause; others unchanged."""
    if not isinstance(exc, Py4JJavaError):
        return exc
    cause = exc.java_exception
    while cause.getCause() is not None:
        cause = cause.getCause()
    return RecoError(f"batch {batch_id} failed in Spark: {_with_hint(str(cause.getMessage()))}")


def _with_hint(message: str) -> str:
    """The first line of Spark's message, and what to do about it when that is known."""
    line = (message.splitlines() or [""])[0]
    hints = [hint for phrase, hint in HINTS.items() if phrase in message]
    return f"{line} ({hints[0]})" if hints else line


def _catch_signals(event: threading.Event) -> None:
    """SIGINT/SIGTERM only set `event`. Called again after Spark starts: PySpark installs its own
    SIGINT handler, which would cancel the running batch's jobs."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: event.set())


@contextmanager
def _stop_on_signals(event: threading.Event) -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _catch_signals(event)
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_ingest(
    settings: JobSettings,
    once: bool,
    on_start: Callable[[str], None] | None = None,
    on_batch: OnBatch | None = None,
) -> IngestSummary:
    """Run the streaming query until everything landed is in (once) or until SIGINT/SIGTERM."""
    warehouse = Warehouse(settings.warehouse)
    app_id = settings.ingest.query_name
    checkpoint = checkpoint_dir(settings)
    dedup_horizon_s = settings.ingest.dedup_horizon
    bounds = Bounds.from_settings(settings.ingest)
    source_options(settings.ingest)  # a bad setting fails here, before Spark starts
    stop = threading.Event()
    summary = IngestSummary(writer="")
    files = settings.ingest.source == "files"

    def prepare() -> None:
        """Rename or set aside landed files Spark cannot read safely, before Spark lists them."""
        if files:
            summary.refused += prepare_landing(settings.ingest.landing, settings.ingest.follows_links)

    with _stop_on_signals(stop), exclusive_lock(warehouse.lock("ingest"), "reco ingest"):
        _refuse_lost_checkpoint(warehouse, app_id, checkpoint)
        _refuse_other_landing(settings, checkpoint)
        for spec in catalog.INGEST_TABLES:
            delta.ensure_table(warehouse.uri(spec), spec)
        prepare()
        if once and nothing_waits(settings, checkpoint):
            summary.writer, summary.nothing_waited = "none", True
            return summary
        spark = build_session(settings.spark)
        if settings.ingest.source == "kafka":
            require_kafka_package(spark)
        _catch_signals(stop)
        writer = make_writer(settings.ingest.writer, spark, warehouse, app_id)
        if on_start:
            on_start(writer.name)
        summary.writer = writer.name
        if isinstance(writer, SparkDeltaWriter):
            _run_native(spark, settings, writer, (checkpoint, once), (stop, prepare), summary, on_batch)
            return summary
        callback = _BatchCallback(
            BatchProcessor(warehouse, writer, app_id, dedup_horizon_s),
            BatchSpool(checkpoint / "spool"),
            lambda batch_id: bounds.latest(batch_time(checkpoint, batch_id)),
            on_batch,
            summary,
            stop,
        )
        callback.commit_spooled()
        callback.refusals = RefusalLedger(warehouse, app_id, settings.ingest.landing if files else None)
        stream = _stream_writer(
            validated_stream(spark, settings, earliest_batch_time(checkpoint)), settings, checkpoint, once
        )
        if not stop.is_set():
            prepare()
            _wait(stream.foreachBatch(callback).start(), callback, prepare)
        summary.stopped_by_signal = stop.is_set()
        return summary


def _stream_writer(
    stream: DataFrame, settings: JobSettings, checkpoint: Path, once: bool
) -> DataStreamWriter:
    writer = stream.writeStream.queryName(settings.ingest.query_name)
    writer = writer.option("checkpointLocation", str(checkpoint))
    if once:
        return writer.trigger(availableNow=True)
    return writer.trigger(processingTime=f"{float(settings.ingest.interval)} seconds")


def _run_native(
    spark: SparkSession,
    settings: JobSettings,
    writer: SparkDeltaWriter,
    where: tuple[Path, bool],
    control: tuple[threading.Event, Callable[[], None]],
    summary: IngestSummary,
    on_batch: OnBatch | None,
) -> None:
    """Writer spark-delta: Spark deduplicates and the executors write (spark_jobs.native, untested
    here); `where`: (checkpoint, once), `control`: (stop, prepare). Exactly once by Spark's own
    checkpoint and the writes' txnAppId/txnVersion: no spool."""
    checkpoint, once = where
    stop, prepare = control

    def record(report: BatchReport) -> None:
        summary.batches.append(report)
        if on_batch:
            on_batch(report)

    use_rocksdb(spark)
    latest = Bounds.from_settings(settings.ingest).latest
    landing = settings.ingest.landing if settings.ingest.source == "files" else None
    refusals = RefusalLedger(writer.warehouse, settings.ingest.query_name, landing)
    target = NativeBatch(
        writer, settings.ingest.query_name, lambda b: latest(batch_time(checkpoint, b)), refusals, record
    )
    stream = deduplicated(
        validated_stream(spark, settings, earliest_batch_time(checkpoint)), settings.ingest.dedup_horizon
    )
    if stop.is_set():
        return
    prepare()
    query = _stream_writer(stream, settings, checkpoint, once).foreachBatch(target).start()
    try:
        while query.isActive:
            if stop.is_set():
                query.stop()
                break
            prepare()
            query.awaitTermination(0.25)
    except StreamingQueryException as exc:
        raise RecoError(f"ingest failed: {_with_hint(str(exc))}") from None
    summary.stopped_by_signal = stop.is_set()


def _wait(query, callback: _BatchCallback, prepare: Callable[[], None]) -> None:
    """Until the query ends (all landed files read, a stop, or a failure), then until the last
    batch's commit ends. Raises the failure of a batch or of its commit. Calls `prepare` between
    polls, so that files landed meanwhile are made safe before Spark's next listing."""
    failure = None
    try:
        while query.isActive:
            if callback.stop.is_set() or callback.commits.failed:
                # Let the running batch finish and Spark record it; any later one refuses to start
                # (StopRequested). The lock is not held across stop(): stop() waits for Spark's batch
                # thread.
                with callback.lock:
                    pass
                _await_record(query, callback.handed)
                query.stop()
                break
            prepare()
            query.awaitTermination(0.25)
    except StreamingQueryException as exc:
        failure = exc
    callback.commits.wait()
    if callback.error is not None:
        raise callback.error from None
    if failure is not None and not callback.stop.is_set():
        raise RecoError(f"ingest failed: {_with_hint(str(failure))}") from None


def _await_record(query, batch_id: int | None, timeout_s: float = 10.0) -> None:
    """Until Spark has recorded `batch_id` as done (it reports a batch's progress after recording
    it), so that a stop does not cut the record short: otherwise the next run replays a batch that
    the spool already holds, and whether it does depends on timing."""
    deadline = time.monotonic() + timeout_s
    while batch_id is not None and query.isActive and time.monotonic() < deadline:
        progress = query.lastProgress
        if progress is not None and progress["batchId"] >= batch_id:
            return
        time.sleep(0.01)


class _ArgumentParser(argparse.ArgumentParser):
    """A mistake in the flags is one line, as in `reco` (argparse prints its usage too)."""

    def error(self, message: str) -> NoReturn:
        raise RecoError(f"{message} (see {self.prog} --help)")


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: the same job, with flags mirroring `reco ingest`. A user mistake or a
    warehouse it cannot write is one line on stderr and exit 2, as from `reco`."""
    parser = _ArgumentParser(prog="spark_jobs/ingest.py", description=__doc__)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--warehouse")
    parser.add_argument("--landing")
    parser.add_argument("--checkpoint")
    parser.add_argument("--query-name")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--max-bytes-per-batch")
    parser.add_argument("--max-files-per-batch", type=int)
    try:
        args = parser.parse_args(argv)
        settings = load_job_settings(
            args.config,
            overrides={
                "warehouse": args.warehouse,
                "ingest.landing": args.landing,
                "ingest.checkpoint": args.checkpoint,
                "ingest.query_name": args.query_name,
                "ingest.max_bytes_per_batch": args.max_bytes_per_batch,
                "ingest.max_files_per_batch": args.max_files_per_batch,
            },
        )
        check_inputs(settings)
        summary = run_ingest(
            settings,
            once=args.once,
            on_start=lambda writer: print(f"writer: {writer}", flush=True),
            on_batch=lambda report: print(json.dumps(report.as_dict()), flush=True),
        )
    except BaseException as exc:
        error = as_reco_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    for refused in summary.refused:
        print(f"refused {refused.path}: {refused.reason}", file=sys.stderr)
    print(json.dumps({"summary": summary.totals()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
