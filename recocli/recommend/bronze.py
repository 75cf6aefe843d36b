"""What a recommendation run reads from bronze, and no more: the interactions of the users it serves
(their histories and seen items) and the ids of the users to serve (the popularity fallback is the
ranker's decayed counts, stored with the model). Filters go to the Delta scan (file pruning by
partition and statistics, then exact rows), so memory follows the users asked for, not the size of the tables.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_ds

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from recocli.config import Settings
from recocli.training.interactions import EVENT_COLUMNS, FEEDBACK_COLUMNS, from_bronze

SOURCES = ((catalog.EVENTS, EVENT_COLUMNS), (catalog.FEEDBACK, FEEDBACK_COLUMNS))


def interactions(
    warehouse: Warehouse, settings: Settings, users: list[str] | None = None, since: datetime | None = None
) -> pa.Table:
    """Interactions (training's weights and labels) of `users` (None: everyone) at or after `since`,
    rows committed after the model's cursor included."""
    where = _since(since)
    if users is not None:
        mine = pc.field("user_id").isin(pa.array(users, pa.string()))
        where = mine if where is None else where & mine
    events, feedback = (
        delta.read_table(warehouse.uri(spec), columns=columns, filters=where) for spec, columns in SOURCES
    )
    return from_bronze(events, feedback, settings.train.weights, settings.train.rating_threshold)


def versions(warehouse: Warehouse) -> dict[str, int | None]:
    """The current version of each table interactions are read from (None: no table yet)."""
    return {spec.name: delta.current_version(warehouse.uri(spec)) for spec, _ in SOURCES}


def interactions_at(warehouse: Warehouse, settings: Settings, at: dict[str, int | None]) -> pa.Table:
    """Everyone's interactions in the tables as they were at the versions `at` (pinned snapshots)."""
    parts = [
        None if at[spec.name] is None else delta.read_version(warehouse.uri(spec), at[spec.name], columns)
        for spec, columns in SOURCES
    ]
    return from_bronze(*parts, settings.train.weights, settings.train.rating_threshold)


def interactions_added(
    warehouse: Warehouse, settings: Settings, after: dict[str, int | None], upto: dict[str, int | None]
) -> pa.Table:
    """The interactions of the rows committed after the versions `after` up to `upto` (bronze is
    appended to, never changed: a compaction adds no rows). RecoError when the log no longer holds
    those commits."""
    parts = [
        None
        if upto[spec.name] is None
        else delta.read_changes(warehouse.uri(spec), _before(after[spec.name]), upto[spec.name], columns)
        for spec, columns in SOURCES
    ]
    return from_bronze(*parts, settings.train.weights, settings.train.rating_threshold)


def _before(version: int | None) -> int:
    return -1 if version is None else version


def user_ids(warehouse: Warehouse, since: datetime | None = None) -> pa.Array:
    """Distinct ids of the users with rows in bronze (at or after `since`), reading that column only."""
    parts = [
        delta.read_table(warehouse.uri(spec), columns=["user_id"], filters=_since(since))
        for spec, _ in SOURCES
    ]
    ids = [p["user_id"] for p in parts if p is not None and p.num_rows]
    if not ids:
        return pa.array([], pa.string())
    return pc.unique(pa.chunked_array([c for a in ids for c in a.chunks], pa.string()))


def _since(since: datetime | None) -> pa_ds.Expression | None:
    """Rows at or after `since`, with the day partition (event_date = the ts's UTC date) to prune files."""
    if since is None:
        return None
    stamp = pa.scalar(since.astimezone(UTC), pa.timestamp("us", tz="UTC"))
    return (pc.field("event_date") >= pa.scalar(since.astimezone(UTC).date(), pa.date32())) & (
        pc.field("ts") >= stamp
    )
