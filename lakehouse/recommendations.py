"""gold/recommendations: each run is one Delta commit into its own run_id partition.

Run ids sort by creation time, so the newest complete run is the greatest run_id among the table's
partitions; a run being written is invisible until its single commit lands.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import write_deltalake

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by time to the microsecond, unique across concurrent runs."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def write_run(warehouse: Warehouse, rows: pa.Table) -> None:
    """Append one run's rows in a single commit."""
    spec = catalog.RECOMMENDATIONS
    table = delta.ensure_table(warehouse.uri(spec), spec)
    write_deltalake(table, delta.conform(rows, spec), mode="append", partition_by=list(spec.partition_by))


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
