"""`reco data import`: a MovieLens folder → bronze/events (bulk backfill) or landing files, + items.

Both routes end in the same validation and dedup code as `reco ingest`: landing files are taken by
ingest itself; the bronze route runs spark_jobs.backfill (same validate(), same BatchProcessor).
The item table always goes to reference/items, merged by item_id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.files import check_writable_folder
from lakehouse.landing import check_landing_target, landing_dirs, write_landing_file
from recocli.config import Settings
from recocli.data import movielens

TARGETS = ("bronze", "landing")
OnRows = Callable[[int, str], None]


@dataclass
class ImportReport:
    dataset: str
    layout: str
    path: str
    to: str
    ratings: int
    items: int
    events_written: int = 0
    duplicates: int = 0
    quarantined: int = 0
    batches: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def import_app_id(dataset: str) -> str:
    """The Delta app id of a dataset's bronze backfill (its batches are numbered on their own)."""
    return f"reco_import_{dataset.replace('-', '_')}"


def line_chunks(events: pa.Table, size: int) -> Iterator[pa.Array]:
    """JSON lines of `size` events at a time (built per chunk: a whole ml-25m would take GBs)."""
    for start in range(0, events.num_rows, size):
        yield movielens.json_lines(events.slice(start, size))


def import_movielens(
    settings: Settings,
    path: str | Path,
    to: str = "bronze",
    dataset: str | None = None,
    on_rows: OnRows | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the ratings as events (to bronze or landing) and the movies to reference/items."""
    if to not in TARGETS:
        raise RecoError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    if min(settings.data.batch_rows, settings.data.file_events) < 1:
        raise RecoError("data.batch_rows and data.file_events must be at least 1")
    folder = movielens.detect(path, dataset)
    warehouse = Warehouse(settings.warehouse)
    check_writable_folder(warehouse.root, "warehouse")
    if to == "landing":
        check_landing_target(settings.ingest.landing)
    clock = time.perf_counter()
    events = movielens.read_ratings(folder)
    items = movielens.read_items(folder)
    report = ImportReport(
        folder.dataset, folder.layout, str(folder.path), to, events.num_rows, items.num_rows
    )
    if on_total:
        on_total(events.num_rows)
    if to == "landing":
        report.files = _to_landing(events, settings, folder.dataset, on_rows)
        report.batches = len(report.files)
    else:
        _to_bronze(events, settings, folder, report, on_rows)
    delta.upsert(warehouse.uri(catalog.ITEMS), catalog.ITEMS, items, key="item_id")
    report.seconds = round(time.perf_counter() - clock, 3)
    return report


def _to_landing(events: pa.Table, settings: Settings, dataset: str, on_rows: OnRows | None) -> list[str]:
    """Files of at most data.file_events lines, in time order, names sorting in that order."""
    landing = settings.ingest.landing
    files = []
    for n, chunk in enumerate(line_chunks(events, settings.data.file_events)):
        path = write_landing_file(landing, "events", f"ml-{dataset}-{n:06d}.jsonl", chunk.to_pylist())
        files.append(str(path))
        if on_rows:
            on_rows(len(chunk), path.name)
    if not files:
        landing_dirs(landing)["events"].mkdir(parents=True, exist_ok=True)
    return files


def _to_bronze(
    events: pa.Table,
    settings: Settings,
    folder: movielens.MovieLensFolder,
    report: ImportReport,
    on_rows: OnRows | None,
) -> None:
    from spark_jobs.backfill import backfill_events  # starts a JVM: import only when needed

    def on_batch(batch) -> None:
        report.batches += 1
        report.events_written += batch.events_written
        report.duplicates += batch.duplicates
        report.quarantined += batch.quarantined
        if on_rows:
            on_rows(batch.lines_read, f"batch {batch.batch_id}")

    backfill_events(
        settings,
        import_app_id(folder.dataset),
        line_chunks(events, settings.data.batch_rows),
        source_file=folder.ratings.resolve().as_uri(),
        on_batch=on_batch,
    )
