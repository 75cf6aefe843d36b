"""Batches that Spark has handed over, committed to Delta on a thread while Spark computes the next.

Spark records a micro-batch as done as soon as foreachBatch returns. So that its Delta commits need
not hold Spark up, the batch is first saved to the spool (under the query's checkpoint) and only then
handed to a thread that commits it. A crash after Spark's record loses nothing: the next run commits
what the spool holds before Spark starts, and the commits themselves are idempotent (app transaction).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa

from lakehouse.files import atomic_file

LATEST_KEY = b"reco.latest"
REFUSED_KEY = b"reco.refused"


class SpooledBatch(NamedTuple):
    data: pa.Table
    latest: datetime  # the latest event time the batch accepts
    refused: list[str]  # the set-aside landing files its metrics row names


class BatchSpool:
    """One Arrow file per batch that is saved and not yet known to be committed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, batch_id: int) -> Path:
        return self.folder / f"batch-{batch_id:012d}.arrow"

    def save(self, batch_id: int, data: pa.Table, latest: datetime, refused: Sequence[str] = ()) -> None:
        """Write (synced, then renamed into place) the batch, the latest event time it accepts and the
        refused files its metrics row names: a replay from the spool writes the row the first try would."""
        self.folder.mkdir(parents=True, exist_ok=True)
        metadata = {LATEST_KEY: latest.isoformat().encode(), REFUSED_KEY: json.dumps(list(refused)).encode()}
        data = data.replace_schema_metadata(metadata)
        with atomic_file(self._path(batch_id)) as out, pa.ipc.new_file(out, data.schema) as writer:
            writer.write_table(data)

    def pending(self) -> list[int]:
        """Ids of the saved batches, oldest first."""
        return sorted(int(p.stem.removeprefix("batch-")) for p in self.folder.glob("batch-*.arrow"))

    def load(self, batch_id: int) -> SpooledBatch:
        """A saved batch as the killed run had judged it (a batch spooled before refusals were recorded
        names none)."""
        with pa.memory_map(str(self._path(batch_id))) as source:
            data = pa.ipc.open_file(source).read_all()
        metadata = data.schema.metadata
        latest = datetime.fromisoformat(metadata[LATEST_KEY].decode())
        refused = json.loads(metadata.get(REFUSED_KEY, b"[]"))
        return SpooledBatch(data.replace_schema_metadata(None), latest, refused)

    def remove(self, batch_id: int) -> None:
        self._path(batch_id).unlink(missing_ok=True)


class BackgroundCommit:
    """Runs one batch's commit at a time on a thread; the next waits for it and sees its error."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, commit: Callable[[], None]) -> None:
        """Wait for the previous commit (raising its error), then run `commit` on a new thread."""
        self.wait()

        def run() -> None:
            try:
                commit()
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="reco-delta-commit")
        self._thread.start()

    def wait(self) -> None:
        """Block until the running commit ends; raise its error (once) if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    @property
    def failed(self) -> bool:
        """Whether the last commit has ended in an error (without waiting for a running one)."""
        return self._error is not None
