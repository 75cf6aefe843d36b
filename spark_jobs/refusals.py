"""Which refused landing files each batch's metrics row names, each once.

`prepare_landing` sets refused files aside in `<kind>/_refused/`, between Spark's listings, and no
batch reads them; so a batch's `_ops/ingest_metrics` row names those set aside since the previous
batch: the entries of `_refused/` that no earlier row of its query names. A batch's names are decided
when Spark hands it over and saved with it in the spool, so a replay from the spool writes the row the
first try would have; a batch whose row is committed already (Spark replays it) takes none, so that no
name is taken by a row that is never written.
"""

from __future__ import annotations

import pyarrow.compute as pc

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.landing import set_aside_files


class RefusalLedger:
    """The refused files a query's metrics rows name. Build it after the spool's batches are committed."""

    def __init__(self, warehouse: Warehouse, app_id: str, landing: str | None) -> None:
        """`landing`: the landing folder, or None when the query reads no files (Kafka)."""
        uri = warehouse.uri(catalog.INGEST_METRICS)
        self.landing = landing
        self.last_batch = delta.committed_version(uri, app_id)
        rows = delta.read_table(uri, columns=["refused"], filters=[("query_name", "=", app_id)])
        self.named = set() if rows is None else set(pc.list_flatten(rows["refused"]).to_pylist())

    def take(self, batch_id: int) -> list[str]:
        """The set-aside files no earlier batch named, now named by `batch_id` (none when its row is in
        the table already)."""
        if self.landing is None or (self.last_batch is not None and batch_id <= self.last_batch):
            return []
        new = sorted({str(path) for path in set_aside_files(self.landing)} - self.named)
        self.named.update(new)
        return new
