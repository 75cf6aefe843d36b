"""gold/recommendations (every run, kept) and gold/latest_recommendations (each user's newest list).

Each run is one Delta commit into its own run_id partition of gold/recommendations. Run ids sort by
creation time, so the newest complete run is the greatest run_id among the table's partitions; a run
being written is invisible until its single commit lands. A run that served only some users (a
`--users` list, `--active-since`) must not hide the others' lists: gold/latest_recommendations holds,
for every user ever served, the list of the last run that served them, merged on user_id in one
commit right after the run's own. Both commits are made under the warehouse's publish lock, so the
two tables take runs in the same order.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.locks import exclusive_lock

DELETE = "_delete"  # a source-only column of the latest merge: this (user, rank) is no longer in the list


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by time to the microsecond, unique across concurrent runs."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def write_run(warehouse: Warehouse, rows: pa.Table) -> bool:
    """Append one run's rows to the history in a single commit, then make them their users' latest
    lists in a second one. An empty run commits nothing (returns False)."""
    if rows.num_rows == 0:
        return False
    spec = catalog.RECOMMENDATIONS
    with exclusive_lock(warehouse.lock("publish"), "reco recommend's publish", wait=True):
        table = delta.ensure_table(warehouse.uri(spec), spec)
        write_deltalake(table, delta.conform(rows, spec), mode="append", partition_by=list(spec.partition_by))
        merge_latest(warehouse, rows)
    return True


def merge_latest(warehouse: Warehouse, rows: pa.Table) -> None:
    """Replace the lists of the users in `rows` in gold/latest_recommendations (one merge commit):
    their ranks are updated or inserted, and ranks their new list no longer reaches are deleted."""
    spec = catalog.LATEST_RECOMMENDATIONS
    uri = warehouse.uri(spec)
    table = delta.ensure_table(uri, spec)
    rows = delta.conform(rows, spec)
    keys = ["user_id", "rank"]
    # Only ranks the table holds are deleted: a delete-marked source row that matched nothing failed
    # delta-rs's NOT NULL check (a new user whose list was shorter than another user's held list).
    held = delta.read_table(uri, columns=keys)
    if held is None:
        held = rows.select(keys)[:0]
    mine = held.filter(pc.is_in(held["user_id"], pc.unique(rows["user_id"])))
    gone = mine.join(rows.select(keys), keys, join_type="left anti")
    loose = pa.schema([f.with_nullable(True) for f in spec.schema])
    kept = rows.cast(loose).append_column(DELETE, pa.array([False] * rows.num_rows, pa.bool_()))
    deleted = pa.table(
        {
            name: gone[name]
            if name in ("user_id", "rank")
            else pa.nulls(gone.num_rows, loose.field(name).type)
            for name in loose.names
        },
        schema=loose,
    ).append_column(DELETE, pa.array([True] * gone.num_rows, pa.bool_()))
    source = pa.concat_tables([kept, deleted])
    columns = {name: f"s.{name}" for name in spec.schema.names}
    (
        table.merge(
            source,
            predicate="t.user_id = s.user_id AND t.rank = s.rank",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_delete(predicate=f"s.{DELETE}")
        .when_matched_update(columns)
        .when_not_matched_insert(columns, predicate=f"NOT s.{DELETE}")
        .execute()
    )


def run_ids(warehouse: Warehouse) -> list[str]:
    """Committed runs, oldest first."""
    table = delta.open_table(warehouse.uri(catalog.RECOMMENDATIONS))
    if table is None:
        return []
    return sorted({part["run_id"] for part in table.partitions()})


def read_run(warehouse: Warehouse, run_id: str | None = None) -> pa.Table | None:
    """The rows of `run_id`, or of the newest complete run; None when there is none."""
    runs = run_ids(warehouse)
    if not runs:
        return None
    chosen = run_id or runs[-1]
    table = delta.read_table(warehouse.uri(catalog.RECOMMENDATIONS), filters=[("run_id", "=", chosen)])
    return table.sort_by([("user_id", "ascending"), ("rank", "ascending")])


def read_latest(warehouse: Warehouse) -> pa.Table | None:
    """Every user's newest list, sorted by user and rank; None before the first run."""
    table = delta.read_table(warehouse.uri(catalog.LATEST_RECOMMENDATIONS))
    return None if table is None else table.sort_by([("user_id", "ascending"), ("rank", "ascending")])
