"""The event ids a table already holds, so a repeated event_id is dropped and counted, never written."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import delta


class SeenIds:
    """In-memory id set of one table, loaded on the first batch and kept in step with each commit.

    Costs about 100 bytes per ingested event in the ingest process. A batch that this table already
    committed before a crash is replayed against the ids of the batches before it, so the replay
    decides exactly as the first attempt did.
    """

    def __init__(self, uri: str, app_id: str) -> None:
        self.uri, self.app_id = uri, app_id
        self._ids: set[str] | None = None
        self._pending: set[str] = set()

    def _load(self, batch_id: int) -> set[str]:
        done = delta.committed_version(self.uri, self.app_id)
        replaying = done is not None and done >= batch_id
        filters = [("batch_id", "!=", batch_id)] if replaying else None
        table = delta.read_table(self.uri, columns=["event_id"], filters=filters)
        return set() if table is None else set(table.column("event_id").to_pylist())

    def first_sightings(self, event_ids: pa.ChunkedArray | pa.Array, batch_id: int) -> pa.Array:
        """Mask of rows whose id is new: not in the table, and first of its kind in this batch.

        Set operations over the whole batch, in C; only rows whose id was already seen, or repeats
        within the batch, are walked one by one (a few per thousand)."""
        if self._ids is None:
            self._ids = self._load(batch_id)
        values = event_ids.to_pylist()
        batch = set(values)
        known = batch & self._ids
        self._pending = batch - known if known else batch
        fresh = np.ones(len(values), dtype=bool)
        suspects = (known | _repeated(event_ids)) if len(batch) < len(values) else known
        if suspects:
            firsts: set[str] = set()
            marked = pc.is_in(event_ids, value_set=pa.array(list(suspects), event_ids.type))
            for row in np.flatnonzero(np.asarray(marked)):
                event_id = values[row]
                fresh[row] = event_id not in known and event_id not in firsts
                firsts.add(event_id)
        return pa.array(fresh)

    def commit(self) -> None:
        """Record the new ids of the last `first_sightings` once their rows are committed."""
        if self._ids is not None:
            self._ids.update(self._pending)
        self._pending = set()


def _repeated(event_ids: pa.ChunkedArray | pa.Array) -> set[str]:
    """The ids that occur more than once."""
    counts = pc.value_counts(event_ids)
    return set(counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist())
