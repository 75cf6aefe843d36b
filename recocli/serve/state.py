"""What the service ranks from: the served model version, every user's committed interactions, and the
events it accepted that ingest has not committed yet (read-your-writes).

A refresh (every serve.refresh, on a thread) picks up a new model version or a rollback from the
registry pointer, and the rows of the bronze commits after the table versions it last read (Delta's
change feed: a refresh costs O(new rows), not a re-read of bronze); they are swapped in under one lock,
so a request sees one consistent snapshot. Accepted events stay in memory per user until the landing
file that holds them shows up in _ops/ingest_metrics: that table is read before bronze, so their rows
are in the bronze snapshot read after it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict, deque
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.contracts import raw_text
from lakehouse.errors import RecoError
from lakehouse.landing import file_uri_path
from lakehouse.registry import ModelRegistry
from recocli.config import Settings
from recocli.models.store import load_version
from recocli.recommend import bronze
from recocli.serve.ranking import Ranking
from recocli.training.interactions import SCHEMA, from_bronze

BRONZE = (catalog.EVENTS, catalog.FEEDBACK, catalog.INGEST_METRICS, catalog.BLOCKLIST)


class Committed:
    """Bronze interactions grouped by user: a base sorted by user, and the rows of the commits read
    since, per user. A refresh adds only the new rows (O(new rows)); the base is rebuilt with them once
    they are a quarter of it, so rebuilding costs O(1) a row, amortised."""

    def __init__(self, interactions: pa.Table | None = None) -> None:
        self.table, self.spans = _by_user(SCHEMA.empty_table() if interactions is None else interactions)
        self.newer: dict[str, list[pa.Table]] = {}
        self.newer_rows = 0

    def of_user(self, user_id: str) -> pa.Table:
        start, length = self.spans.get(user_id, (0, 0))
        base = self.table.slice(start, length)
        newer = self.newer.get(user_id)
        return pa.concat_tables([base, *newer]) if newer else base

    def add(self, grouped: tuple[pa.Table, dict[str, tuple[int, int]]]) -> None:
        """Add the rows of newer commits, grouped by `_by_user` (the caller holds the readers' lock)."""
        table, spans = grouped
        for user, (start, length) in spans.items():
            self.newer.setdefault(user, []).append(table.slice(start, length))
        self.newer_rows += table.num_rows

    def due(self) -> bool:
        return self.newer_rows > max(self.table.num_rows // 4, 1000)

    def rebuilt(self) -> Committed:
        """One sorted base of everything (only the refresh thread changes `newer`: read without lock)."""
        return Committed(pa.concat_tables([self.table, *(t for ts in self.newer.values() for t in ts)]))


def _by_user(interactions: pa.Table) -> tuple[pa.Table, dict[str, tuple[int, int]]]:
    """The rows sorted by user (time order kept within each), and each user's (start, length)."""
    order = pc.sort_indices(interactions, [("user_id", "ascending")])  # stable: time order kept
    table = interactions.take(order).combine_chunks()
    users = table["user_id"].to_numpy(zero_copy_only=False)
    if len(users) == 0:
        return table, {}
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    return table, {users[s]: (int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)}


class LiveState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.warehouse = Warehouse(settings.warehouse)
        self.registry = ModelRegistry(self.warehouse)
        self.ranking = Ranking(None, None, settings.recommend)
        self.committed = Committed()
        self.committed_at: float | None = None  # wall time of the last bronze refresh that found data
        self._pointer: int | None = None
        self._loaded = None
        self._seen_marks: tuple | None = None
        self._blocklist_at: int | None = None
        self._metrics_at: int | None = None
        self._bronze_at: dict[str, int | None] | None = None
        self._ingested: deque[set[Path]] = deque(maxlen=16)  # files the last refreshes saw ingested
        self._lock = threading.Lock()
        # user → deque of (landing file, interactions); landing file → wall time it landed.
        self._pending: dict[str, deque] = defaultdict(lambda: deque(maxlen=settings.serve.pending_per_user))
        self._unconfirmed: dict[Path, float] = {}

    # ---- requests ----

    def interactions_of(self, user_id: str) -> pa.Table:
        """The user's committed interactions, then those accepted and not yet committed."""
        with self._lock:
            committed = self.committed.of_user(user_id)
            pending = [rows for _, rows in self._pending.get(user_id, ())]
        return pa.concat_tables([committed, *pending]) if pending else committed

    def accept(
        self, kind: str, records: list[dict], kinds: list[str], stamps: list[datetime], landed: Path
    ) -> None:
        """Keep accepted records (with their normalised kind and parsed ts) until ingest commits
        `landed`."""
        kind_column = "event_type" if kind == "events" else "action"
        rows = pa.table(
            {
                "user_id": pa.array([raw_text(r["user_id"]) for r in records], pa.string()),
                "item_id": pa.array([raw_text(r["item_id"]) for r in records], pa.string()),
                kind_column: pa.array(kinds, pa.string()),
                "value": pa.array([_float(r.get("value")) for r in records], pa.float64()),
                "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            }
        )
        weights, threshold = self.settings.train.weights, self.settings.train.rating_threshold
        interactions = (
            from_bronze(rows, None, weights, threshold)
            if kind == "events"
            else from_bronze(None, rows, weights, threshold)
        )
        rows_of: dict[str, list[int]] = defaultdict(list)
        for row, user in enumerate(interactions["user_id"].to_pylist()):
            rows_of[user].append(row)
        mine = {user: interactions.take(rows) for user, rows in rows_of.items()}
        with self._lock:
            if any(landed in files for files in self._ingested):  # ingest was first: in bronze already
                return
            self._unconfirmed[landed] = time.time()
            for user, rows in mine.items():
                self._pending[user].append((landed, rows))

    def landing_lag(self) -> float:
        """Seconds since the oldest file this service landed that ingest has not committed (0: none)."""
        with self._lock:
            oldest = min(self._unconfirmed.values(), default=None)
        return 0.0 if oldest is None else time.time() - oldest

    def pending_events(self) -> int:
        with self._lock:
            return sum(len(rows) for queue in self._pending.values() for _, rows in queue)

    # ---- refresh ----

    def refresh(self) -> None:
        """Swap in a new model version (or rollback), a new blocklist, and the rows of new bronze
        commits: only those commits are read (table versions after the last seen), not all of bronze."""
        pointer = self.registry.latest()
        marks = tuple(_log_mark(self.warehouse.uri(spec)) for spec in BRONZE)
        if pointer == self._pointer and marks == self._seen_marks:
            return
        metrics_uri = self.warehouse.uri(catalog.INGEST_METRICS)
        metrics_at = delta.current_version(metrics_uri)  # before bronze: a file it names is in bronze
        ingested = _files(_added(metrics_uri, self._metrics_at, metrics_at, ["files"]))
        at = bronze.versions(self.warehouse)
        blocklist_at = delta.current_version(self.warehouse.uri(catalog.BLOCKLIST))
        if pointer != self._pointer:
            self._loaded = load_version(self.registry, pointer) if pointer is not None else None
        ranking = self.ranking
        if pointer != self._pointer or blocklist_at != self._blocklist_at:
            ranking = Ranking.build(self.warehouse, self._loaded, self.settings.recommend)
        committed, added = self._committed_at(at)
        with self._lock:
            self.ranking, self.committed = ranking, committed
            if added is not None:
                committed.add(added)  # grouped outside the lock: only the appends are inside
            self.committed_at = time.time()
            self._ingested.append(ingested)
            for path in [p for p in self._unconfirmed if p in ingested]:
                del self._unconfirmed[path]
            for user in list(self._pending):
                kept = [(p, rows) for p, rows in self._pending[user] if p not in ingested]
                if kept:
                    self._pending[user] = deque(kept, maxlen=self.settings.serve.pending_per_user)
                else:
                    del self._pending[user]
        self._pointer, self._seen_marks, self._blocklist_at = pointer, marks, blocklist_at
        self._metrics_at, self._bronze_at = metrics_at, at

    def _committed_at(self, at: dict[str, int | None]) -> tuple[Committed, tuple | None]:
        """The Committed to serve from bronze at versions `at`, and the rows (grouped by user) to add
        to it under the lock (None: it is whole). The first time, after the log lost the commits, or
        when a table went back (dropped and made again): everything, read again."""
        seen = self._bronze_at
        if seen is not None and all(_not_before(at[name], seen[name]) for name in at):
            try:
                added = bronze.interactions_added(self.warehouse, self.settings, seen, at)
            except RecoError:
                added = None
            if added is not None:
                committed = self.committed.rebuilt() if self.committed.due() else self.committed
                return committed, _by_user(added)
        return Committed(bronze.interactions_at(self.warehouse, self.settings, at)), None


def _not_before(version: int | None, seen: int | None) -> bool:
    return seen is None or (version is not None and version >= seen)


def _added(uri: str, after: int | None, upto: int | None, columns: list[str]) -> pa.Table | None:
    """Rows committed after version `after` up to `upto` (all of them at `upto` when `after` is None or
    the log no longer holds those commits); None without a table."""
    if upto is None or after == upto:
        return None
    if after is not None and after < upto:
        try:
            return delta.read_changes(uri, after, upto, columns)
        except RecoError:
            pass
    return delta.read_version(uri, upto, columns)


def _files(metrics: pa.Table | None) -> set[Path]:
    """The landing files that ingest_metrics rows name as committed."""
    if metrics is None or not metrics.num_rows:
        return set()
    return {file_uri_path(u) for u in pc.list_flatten(metrics["files"]).to_pylist()}


def _log_mark(uri: str) -> int | None:
    """A cheap change mark of a Delta table: its log folder's modification time (a commit adds a file)."""
    try:
        return os.stat(os.path.join(uri, "_delta_log")).st_mtime_ns
    except FileNotFoundError:
        return None


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
