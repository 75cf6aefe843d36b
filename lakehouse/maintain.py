"""Upkeep of a warehouse's Delta tables: compaction (delta-rs optimize) and vacuum.

Appends in micro-batches leave many small files (an ml-100k import: 213) and every recommend run
adds files to gold; compaction rewrites them into fewer larger ones in a commit that changes no
data (readers of the change data feed see no new rows), and vacuum deletes the files no version
younger than the retention still needs. Both run under the bronze writers' lock (`reco ingest`,
`reco data import`) and the recommend publish lock, so no writer of the warehouse is running
meanwhile: a running ingest makes `reco maintain` exit 3 rather than race it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lakehouse import delta
from lakehouse.catalog import ALL_TABLES, Warehouse
from lakehouse.locks import exclusive_lock

BRONZE_LOCK, PUBLISH_LOCK = "ingest", "publish"


@dataclass
class TableUpkeep:
    table: str
    files_before: int
    files_after: int
    rows_before: int
    rows_after: int
    files_vacuumed: int

    def as_dict(self) -> dict:
        return asdict(self)


def maintain(
    warehouse: Warehouse, retention_s: float, compact: bool = True, vacuum: bool = True
) -> list[TableUpkeep]:
    """Compact then vacuum every table that exists, holding the warehouse's writer locks."""
    done = []
    with (
        exclusive_lock(warehouse.lock(BRONZE_LOCK), "a bronze writer (reco ingest or reco data import)"),
        exclusive_lock(warehouse.lock(PUBLISH_LOCK), "reco recommend's publish", wait=True),
    ):
        for spec in ALL_TABLES:
            uri = warehouse.uri(spec)
            table = delta.open_table(uri)
            if table is None:
                continue
            files_before, rows_before = len(table.file_uris()), delta.table_stats(uri).rows
            if compact:
                table.optimize.compact()
            vacuumed = []
            if vacuum:
                vacuumed = table.vacuum(
                    retention_hours=int(retention_s // 3600), dry_run=False, enforce_retention_duration=False
                )
            done.append(
                TableUpkeep(
                    spec.name,
                    files_before,
                    len(delta.open_table(uri).file_uris()),
                    rows_before,
                    delta.table_stats(uri).rows,
                    len(vacuumed),
                )
            )
    return done
