"""The event ids a table holds near a batch's event times, so a repeated event_id is dropped and counted,
never written."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import delta

DAY_S = 86400


def horizon_days(horizon_s: float) -> int:
    """The dedup horizon in whole days (event_date partitions), rounded up."""
    return math.ceil(horizon_s / DAY_S)


class SeenIds:
    """The ids of a table's `event_date` partitions near the batches' event times, with their dates.

    A row is a duplicate when its id is known with an event date at most `horizon` days from its
    own (a repeat of the same event has the same time, so the horizon only needs to cover producers
    that re-stamp a retry). Each batch loads, by partition pruning, the dates within the horizon of
    its own event dates that are not loaded yet; after it, the dates older than the newest event date
    seen minus the horizon are dropped. Memory and start time so follow the events of the horizon,
    not the table's history (about 140 bytes an id). A late event (older than the horizon) is judged
    the same way: its dates are read for its batch and dropped after it. An id seen again with an
    event time further than the horizon from the known one counts as a new event and is written.

    A batch that this table already committed before a crash is judged against every id but those of
    that commit, so the replay decides as the first attempt did (other writers' rows, such as an
    import's, stay known).
    """

    def __init__(self, uri: str, app_id: str, horizon: int) -> None:
        self.uri, self.app_id, self.horizon = uri, app_id, horizon
        self._day_of: dict[str, int] = {}  # id → its event date (days since 1970-01-01)
        self._loaded: set[int] = set()
        self._cutoff: int | None = None

    @property
    def loaded_days(self) -> set[int]:
        """The event dates whose ids are held (days since 1970-01-01)."""
        return set(self._loaded)

    def __len__(self) -> int:
        return len(self._day_of)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._day_of

    def first_sightings(
        self, event_ids: pa.ChunkedArray | pa.Array, event_times: pa.ChunkedArray | pa.Array, batch_id: int
    ) -> np.ndarray:
        """Mask of rows whose id is new (not known within the horizon of its event time, first of its
        kind in this batch); the new ids are recorded at once. A batch that then fails to commit must
        call `forget`.

        One dict lookup per row (about 0.1 s for 450,000 ids here); Arrow's own hashing of the
        strings (value counts, dictionary encoding) measured slower than Python's dicts."""
        days = pc.cast(pc.cast(event_times, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False)
        shared = {int(day): int(day) for day in np.unique(days)}  # one int object per date, not per id
        self._load({d + k for d in shared for k in range(-self.horizon, self.horizon + 1)}, batch_id)
        day_of, horizon = self._day_of, self.horizon
        fresh = np.ones(len(days), dtype=bool)
        for n, (event_id, day) in enumerate(zip(event_ids.to_pylist(), days.tolist(), strict=True)):
            known = day_of.get(event_id)
            if known is None:
                day_of[event_id] = shared[day]
            elif abs(known - day) <= horizon:
                fresh[n] = False
            elif day > known:  # the same id beyond the horizon: a new event, remembered by its date
                day_of[event_id] = shared[day]
        if shared:
            self._evict_before(max(shared) - horizon)
        return fresh

    def _load(self, days: set[int], batch_id: int) -> None:
        wanted = sorted(days - self._loaded)
        if not wanted:
            return
        commit = delta.commit_of(self.uri, self.app_id, batch_id)  # a replay reads less its own commit
        dates = pa.array(wanted, pa.int32()).cast(pa.date32()).to_pylist()
        table = delta.read_partitions(
            self.uri, [("event_date", "in", dates)], columns=["event_id", "event_date"], less_commit=commit
        )
        table_days = pc.cast(table["event_date"], pa.int32())
        for day in wanted:
            ids = table["event_id"].filter(pc.equal(table_days, day)).to_pylist()
            for event_id, known in zip(ids, map(self._day_of.get, ids), strict=True):
                if known is None or known < day:
                    self._day_of[event_id] = day
        self._loaded.update(wanted)

    def _evict_before(self, cutoff: int) -> None:
        """Drop the dates (and their ids) older than `cutoff`, the newest date seen less the horizon."""
        self._cutoff = max(cutoff, self._cutoff if self._cutoff is not None else cutoff)
        if all(day >= self._cutoff for day in self._loaded):
            return
        self._loaded = {day for day in self._loaded if day >= self._cutoff}
        self._day_of = {event_id: day for event_id, day in self._day_of.items() if day >= self._cutoff}

    def forget(self) -> None:
        """Drop everything after a batch that did not commit: the next batch reloads its dates from the
        table, which holds exactly the committed ids."""
        self._day_of, self._loaded, self._cutoff = {}, set(), None
