"""What the service ranks from: the served model version, every user's committed interactions, and the
events it accepted that ingest has not committed yet (read-your-writes).

A refresh (every serve.refresh, on a thread) picks up a new model version or a rollback from the
registry pointer, and new bronze commits; each is swapped in whole, so a request sees one consistent
snapshot. Accepted events stay in memory per user until the landing file that holds them shows up in
_ops/ingest_metrics: that table is read before bronze, so their rows are in the bronze snapshot read
after it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.contracts import raw_text
from lakehouse.landing import file_uri_path
from lakehouse.registry import ModelRegistry
from recocli.config import Settings
from recocli.models.store import load_version
from recocli.recommend import bronze
from recocli.serve.ranking import Ranking
from recocli.training.interactions import SCHEMA, from_bronze

BRONZE = (catalog.EVENTS, catalog.FEEDBACK, catalog.INGEST_METRICS, catalog.BLOCKLIST)


@dataclass
class Committed:
    """Bronze interactions grouped by user (time order within each user)."""

    table: pa.Table = field(default_factory=SCHEMA.empty_table)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, interactions: pa.Table) -> Committed:
        order = pc.sort_indices(interactions, [("user_id", "ascending")])  # stable: time order kept
        table = interactions.take(order).combine_chunks()
        users = table["user_id"].to_numpy(zero_copy_only=False)
        if len(users) == 0:
            return cls(table, {})
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        ends = np.r_[starts[1:], len(users)]
        return cls(table, {users[s]: (int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)})

    def of_user(self, user_id: str) -> pa.Table:
        start, length = self.spans.get(user_id, (0, 0))
        return self.table.slice(start, length)


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
        self._seen_logs: tuple | None = None
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
        """Swap in a new model version (or rollback) and new bronze commits, when there are any."""
        pointer = self.registry.latest()
        logs = tuple(_log_mark(self.warehouse.uri(spec)) for spec in BRONZE)
        if pointer == self._pointer and logs == self._seen_logs:
            return
        if pointer != self._pointer:
            self._loaded = load_version(self.registry, pointer) if pointer is not None else None
        metrics = delta.read_table(self.warehouse.uri(catalog.INGEST_METRICS), columns=["files"])
        ingested = set()
        if metrics is not None and metrics.num_rows:
            ingested = {file_uri_path(u) for u in pc.list_flatten(metrics["files"]).to_pylist()}
        interactions = bronze.interactions(self.warehouse, self.settings)
        ranking = Ranking.build(self.warehouse, self._loaded, self.settings.recommend)
        committed = Committed.of(interactions)
        with self._lock:
            self.ranking, self.committed = ranking, committed
            self.committed_at = time.time()
            for path in [p for p in self._unconfirmed if p in ingested]:
                del self._unconfirmed[path]
            for user in list(self._pending):
                kept = [(p, rows) for p, rows in self._pending[user] if p not in ingested]
                if kept:
                    self._pending[user] = deque(kept, maxlen=self.settings.serve.pending_per_user)
                else:
                    del self._pending[user]
        self._pointer, self._seen_logs = pointer, logs


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
