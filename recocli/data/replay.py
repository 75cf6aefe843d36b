"""`reco replay`: a dataset's events streamed into the landing folder in time order, paced.

Rehearses production traffic against `reco ingest --train`. Events are written as landing files
(temp file, then rename), never before their due time:
  --speed S  event at time t is due (t - t0) / S seconds after the start (86400 = a day per second);
  --rate R   the n-th event is due n / R seconds after the start;
  neither    as fast as the disk allows.
At most one file per `flush_every` seconds (unless behind schedule), at most `batch_events` per file.
Event ids are the source's own, so replaying twice adds nothing to bronze.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.landing import write_landing_file
from recocli.data import movielens

CONTRACT = ("event_id", "user_id", "item_id", "event_type", "value", "ts", "session_id", "context")
OnFile = Callable[[Path, int, datetime], None]


@dataclass
class ReplayReport:
    source: str
    events: int
    files: int
    first_ts: str | None
    last_ts: str | None
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def load_events(source: str | Path, dataset: str | None = None) -> tuple[pa.Table, str]:
    """Events of a MovieLens folder, or of a warehouse's bronze/events, sorted by time; and a label."""
    path = Path(source).expanduser()
    if not path.is_dir():
        raise RecoError(f"not a folder: {path} (give a MovieLens folder or a warehouse)")
    uri = Warehouse(path).uri(catalog.EVENTS)
    if delta.open_table(uri) is not None:
        events = delta.read_table(uri, columns=list(CONTRACT))
        label = "bronze"
    else:
        folder = movielens.detect(path, dataset)
        events, label = movielens.read_ratings(folder), f"ml-{folder.dataset}"
    order = pc.sort_indices(events, [("ts", "ascending"), ("event_id", "ascending")])
    return events.take(order), label


def newest_event_time(warehouse: Warehouse) -> datetime | None:
    """The latest event time in the warehouse's bronze/events (None when it holds none): where a
    replay resumes. Events at that very time are written again; their ids make ingest count them as
    duplicates, so nothing is lost between two replays and nothing is added twice."""
    events = delta.read_table(warehouse.require().uri(catalog.EVENTS), columns=["ts"])
    newest = None if events is None or events.num_rows == 0 else pc.max(events["ts"]).as_py()
    return newest


def parse_time(text: str | None, option: str = "--until") -> datetime | None:
    """ISO-8601 (naive means UTC) → aware datetime; RecoError naming `option` when unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RecoError(
            f"{option} must be an ISO-8601 time such as 1998-01-01T00:00:00Z, got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def check_pace(speed: float | None, rate: float | None) -> None:
    """One pace at most, and a positive one (checked before anything is read or written)."""
    if speed is not None and rate is not None:
        raise RecoError("give --speed or --rate, not both")
    for name, value in (("--speed", speed), ("--rate", rate)):
        if value is not None and not value > 0:
            raise RecoError(f"{name} must be positive, got {value:g}")


def due_times(ts_micros: np.ndarray, speed: float | None, rate: float | None) -> np.ndarray | None:
    """Seconds after the start at which each event may be written; None when unpaced."""
    check_pace(speed, rate)
    if speed is not None:
        return (ts_micros - ts_micros[0]) / 1e6 / speed if len(ts_micros) else ts_micros.astype(float)
    if rate is not None:
        return np.arange(len(ts_micros)) / rate
    return None


def replay(
    events: pa.Table,
    landing: str | Path,
    *,
    speed: float | None = None,
    rate: float | None = None,
    until: datetime | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    batch_events: int = 50_000,
    flush_every: float = 1.0,
    retime: bool = False,
    label: str = "events",
    on_file: OnFile | None = None,
    on_total: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayReport:
    """Write `events` (sorted by ts) to <landing>/events/ as paced files; what was written.

    With `retime`, each event carries the wall-clock time it is written at as its ts (the original
    goes to context.original_ts), so freshness can be measured on old data.
    """
    if batch_events < 1:
        raise RecoError(f"--batch-events must be at least 1, got {batch_events}")
    if since is not None:
        events = events.filter(
            pc.greater_equal(events["ts"], pa.scalar(since, events.schema.field("ts").type))
        )
    if until is not None:
        events = events.filter(pc.less_equal(events["ts"], pa.scalar(until, events.schema.field("ts").type)))
    if limit is not None:
        events = events.slice(0, max(limit, 0))
    if on_total:
        on_total(events.num_rows)
    micros = pc.cast(events["ts"], pa.int64()).to_numpy() if events.num_rows else np.zeros(0, np.int64)
    due = due_times(micros, speed, rate)
    columns = [c for c in CONTRACT if c in events.column_names]
    started_wall, start = datetime.now(UTC), clock()
    prefix = f"replay-{label}-{started_wall:%Y%m%dT%H%M%S%f}"  # two runs never share a name
    n, i, files, last_write = events.num_rows, 0, 0, -math.inf
    while i < n:
        if due is None:
            j = min(i + batch_events, n)
        else:
            now = clock() - start
            behind = due[min(i + batch_events, n) - 1] <= now
            wait = due[i] - now if behind else max(due[i], last_write + flush_every) - now
            if wait > 0:
                sleep(wait)
            now = clock() - start
            j = int(np.searchsorted(due, now, side="right"))
            j = min(max(j, i + 1), i + batch_events, n)
        batch = events.slice(i, j - i).select(columns).to_pylist()
        path = write_landing_file(landing, "events", f"{prefix}-{files:06d}.jsonl", _records(batch, retime))
        last_write = clock() - start
        files += 1
        if on_file:
            on_file(path, j - i, batch[-1]["ts"])
        i = j
    first = iso(events["ts"][0].as_py()) if n else None
    last = iso(events["ts"][n - 1].as_py()) if n else None
    return ReplayReport(label, n, files, first, last, round(clock() - start, 3))


def _records(rows: list[dict], retime: bool) -> list[str]:
    now = iso(datetime.now(UTC)) if retime else None
    out = []
    for row in rows:
        record = {k: v for k, v in row.items() if v is not None}
        if "context" in record:
            record["context"] = dict(record["context"])
        record["ts"] = iso(row["ts"])
        if now:
            record["context"] = {**record.get("context", {}), "original_ts": record["ts"]}
            record["ts"] = now
        out.append(json.dumps(record, separators=(",", ":")))
    return out
