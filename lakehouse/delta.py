"""Delta tables through delta-rs and Arrow: create, append exactly once, read, describe.

Works without a JVM, so training and recommending can use it on a GPU box.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pa_ds
import pyarrow.fs as pa_fs
from deltalake import CommitProperties, DeltaTable, Field, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from lakehouse.catalog import ALL_TABLES, TableSpec, Warehouse
from lakehouse.errors import RecoError
from lakehouse.files import check_writable_folder

# Change data feed lets downstream readers (training's cursor, Spark) ask "what was added since v".
TABLE_CONFIG = {"delta.enableChangeDataFeed": "true"}


def open_table(uri: str) -> DeltaTable | None:
    """The table at `uri`, or None when there is none yet."""
    try:
        return DeltaTable(uri)
    except TableNotFoundError:
        return None


def ensure_table(uri: str, spec: TableSpec) -> DeltaTable:
    """Create the (empty) table when it does not exist, so readers always find it; add to an existing
    one the columns `spec` has gained since it was created (nullable: its rows read them as null)."""
    table = open_table(uri)
    if table is None:
        return DeltaTable.create(
            uri,
            spec.schema,
            mode="ignore",
            partition_by=list(spec.partition_by) or None,
            configuration=TABLE_CONFIG,
        )
    present = set(pa.schema(table.schema().to_arrow()).names)
    added = [field for field in spec.schema if field.name not in present]
    if added:
        table.alter.add_columns([Field.from_arrow(field) for field in added])
    return table


def create_tables(warehouse: Warehouse) -> list[str]:
    """Every table of the catalog, empty where it is not there yet; the names of those created."""
    check_writable_folder(warehouse.root, "warehouse")
    created = []
    for spec in ALL_TABLES:
        if open_table(warehouse.uri(spec)) is None:
            ensure_table(warehouse.uri(spec), spec)
            created.append(spec.name)
    return created


def conform(data: pa.Table, spec: TableSpec) -> pa.Table:
    """Columns in the table's order and types (fails loudly on a missing column)."""
    return data.select(spec.schema.names).cast(spec.schema)


def append_once(uri: str, spec: TableSpec, data: pa.Table, app_id: str, version: int) -> bool:
    """Append `data` in one commit tagged (app_id, version); skip when that version is committed.

    delta-rs records the app transaction but does not skip a repeated one by itself, so the
    check comes first. Returns True when this call committed. One writer per app id (the lock).
    """
    table = ensure_table(uri, spec)
    done = table.transaction_version(app_id)
    if done is not None and done >= version:
        return False
    write_deltalake(
        table,
        conform(data, spec),
        mode="append",
        partition_by=list(spec.partition_by) or None,
        commit_properties=CommitProperties(app_transactions=[Transaction(app_id=app_id, version=version)]),
    )
    return True


def committed_version(uri: str, app_id: str) -> int | None:
    """The last version `app_id` committed to this table, or None."""
    table = open_table(uri)
    return None if table is None else table.transaction_version(app_id)


def read_table(
    uri: str, columns: list[str] | None = None, filters: list | pa_ds.Expression | None = None
) -> pa.Table | None:
    """The current snapshot as Arrow (None when the table does not exist). `filters` (DNF tuples or an
    Arrow expression) prune files by partition and statistics, then select the rows exactly."""
    table = open_table(uri)
    if table is None:
        return None
    return table.to_pyarrow_table(columns=columns, filters=filters, filesystem=arrow_file_system(uri))


def arrow_file_system(uri: str) -> pa_fs.FileSystem | None:
    """Arrow's own file system for a local table. Through delta-rs's (the default), a process that
    had read a table aborted at exit in about half the runs here ("terminate called without an
    active exception", exit status 134), which cron would count as a failed job."""
    return None if "://" in uri else pa_fs.SubTreeFileSystem(uri, pa_fs.LocalFileSystem())


@dataclass(frozen=True)
class TableStats:
    version: int
    rows: int
    last_commit: datetime | None


def table_stats(uri: str) -> TableStats | None:
    """Version, row count and last commit time, or None when the table does not exist."""
    table = open_table(uri)
    if table is None:
        return None
    rows = pc.sum(pa.table(table.get_add_actions(flatten=True))["num_records"]).as_py()
    history = table.history(1)
    stamp = history[0].get("timestamp") if history else None
    last = datetime.fromtimestamp(stamp / 1000, UTC) if stamp else None
    return TableStats(version=table.version(), rows=int(rows or 0), last_commit=last)


def upsert(uri: str, spec: TableSpec, data: pa.Table, key: str) -> None:
    """Merge `data` into the table on `key` in one commit: matching rows are replaced, others added."""
    table = ensure_table(uri, spec)
    (
        table.merge(conform(data, spec), predicate=f"t.{key} = s.{key}", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )


def current_version(uri: str) -> int | None:
    """The table's latest version, or None when there is no table."""
    table = open_table(uri)
    return None if table is None else table.version()


def commit_of(uri: str, app_id: str, txn_version: int) -> int | None:
    """The table version whose commit recorded `app_id`'s transaction `txn_version`, or None. An app's
    transaction versions only grow, so a binary search over the table's versions finds it."""

    def reached(table: DeltaTable) -> bool:
        recorded = table.transaction_version(app_id)
        return recorded is not None and recorded >= txn_version

    table = open_table(uri)
    if table is None or not reached(table):
        return None
    low, high = 0, table.version()
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if reached(DeltaTable(uri, version=middle)) else (middle + 1, high)
    return low


def read_partitions(
    uri: str,
    where: list[tuple[str, str, Any]] | None = None,
    columns: list[str] | None = None,
    less_commit: int | None = None,
) -> pa.Table:
    """The rows of the files whose partition values pass `where` (tuple filters on partition columns,
    e.g. [("event_date", "in", dates)]: other files are never opened); with `less_commit`, less the
    files that the (append) commit at that version added. An absent table reads as no rows."""
    table = open_table(uri)
    if table is None:
        return pa.table({name: pa.array([], pa.string()) for name in columns or []})
    dataset = table.to_pyarrow_dataset(file_pruning_predicate=where, filesystem=arrow_file_system(uri))
    if less_commit is not None:
        added = {_file_name(u) for u in DeltaTable(uri, version=less_commit).file_uris()}
        added -= {_file_name(u) for u in DeltaTable(uri, version=less_commit - 1).file_uris()}
        kept = [f for f in dataset.get_fragments() if _file_name(f.path) not in added]
        dataset = pa_ds.FileSystemDataset(kept, dataset.schema, dataset.format, dataset.filesystem)
    return dataset.to_table(columns=columns)


def _file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def read_version(uri: str, version: int, columns: list[str] | None = None) -> pa.Table:
    """The table as it was at `version` (a pinned snapshot)."""
    table = DeltaTable(uri, version=version)
    return table.to_pyarrow_table(columns=columns, filesystem=arrow_file_system(uri))


def version_batches(
    uri: str, version: int, columns: list[str], batch_rows: int = 131_072
) -> Iterator[pa.RecordBatch]:
    """The table as it was at `version`, as record batches of `columns` read a few at a time: memory
    follows the batch, not the table."""
    dataset = DeltaTable(uri, version=version).to_pyarrow_dataset(filesystem=arrow_file_system(uri))
    yield from dataset.to_batches(
        columns=columns, batch_size=batch_rows, batch_readahead=2, fragment_readahead=1
    )


def read_changes(
    uri: str, after_version: int, upto_version: int, columns: list[str] | None = None
) -> pa.Table:
    """Rows inserted by the commits after `after_version` up to `upto_version` (inclusive), from the
    Delta log's change data feed: a cursor of table versions, never timestamps. A compaction adds
    no rows here (its commits change no data). `after_version` -1 means from the table's creation."""
    if upto_version <= after_version:
        return _empty(uri, columns)
    try:
        reader = DeltaTable(uri).load_cdf(
            starting_version=after_version + 1,
            ending_version=upto_version,
            columns=None if columns is None else [*columns, "_change_type"],
        )
        changes = pa.table(reader)
        changes = changes.cast(_plain_schema(changes.schema))
    except Exception as exc:  # delta-rs raises several types for a missing log or a CDF that is off
        raise RecoError(
            f"cannot read the changes of {uri} after version {after_version}: {str(exc).splitlines()[0]} "
            "(log entries cleaned up, or change data feed off?): retrain with `reco train --full`"
        ) from None
    changes = changes.filter(pc.equal(changes["_change_type"], "insert"))
    return changes.drop_columns([c for c in changes.column_names if c in _CDF_COLUMNS])


_CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """delta-rs hands out string_view; the rest of the code works with plain strings."""
    plain = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}
    return pa.schema([f.with_type(plain.get(f.type, f.type)) for f in schema])


def _empty(uri: str, columns: list[str] | None) -> pa.Table:
    table = open_table(uri)
    if table is None:
        return pa.table({})
    empty = pa.schema(table.schema().to_arrow()).empty_table()
    return empty if columns is None else empty.select(columns)
