"""A persistent vocabulary per entity: raw id (string) ↔ embedding row, growing, never renumbering.

Rows are handed out in order of admission and never change, so a grown embedding table keeps
every old row where it was. An id is admitted once it has been seen `min_count` times; until then
its count waits in the vocabulary (and its rows are not trained on). Saved as Arrow IPC, not pickle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.errors import RecoError

SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("row", pa.int64()), pa.field("count", pa.int64())])

IdsLike = pa.Array | pa.ChunkedArray | Sequence[str] | np.ndarray


def _as_array(ids: IdsLike) -> pa.Array:
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if not isinstance(ids, pa.Array):
        ids = pa.array(np.asarray(ids, dtype=object) if isinstance(ids, np.ndarray) else list(ids))
    return ids if ids.type == pa.string() else ids.cast(pa.string())


class Vocabulary:
    """Raw ids ↔ rows 0..len-1, plus how often each id (admitted or still pending) was seen."""

    def __init__(self, ids: Iterable[str] = (), counts: Iterable[int] | None = None) -> None:
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._count: dict[str, int] = {}
        self._lookup: pa.Array | None = None
        self.add(list(ids))
        if counts is not None:
            for key, count in zip(self._ids, counts, strict=True):
                self._count[key] = int(count)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: str) -> bool:
        return key in self._row

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids == other._ids and self._count == other._count

    def rows(self, ids: IdsLike) -> np.ndarray:
        """Row of each id (int64), -1 for ids without a row."""
        values = _as_array(ids)
        if len(values) * 8 < len(self):
            # A few ids (one batch of users): dict lookups beat hashing the whole vocabulary again.
            return np.fromiter((self._row.get(k, -1) for k in values.to_pylist()), np.int64, len(values))
        found = pc.index_in(values, value_set=self.id_array())
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    def ids(self, rows: Iterable[int] | np.ndarray) -> list[str]:
        """Raw id of each row (IndexError on a row that does not exist)."""
        return [self._ids[int(r)] for r in np.asarray(rows, dtype=np.int64).reshape(-1)]

    def add(self, ids: IdsLike) -> np.ndarray:
        """Admit every id now (in order of first appearance); returns the rows of `ids`."""
        values = _as_array(ids)
        for key in pc.unique(values.drop_null()).to_pylist():
            if key not in self._row:
                self._row[key] = len(self._ids)
                self._ids.append(key)
                self._count.setdefault(key, 0)
                self._lookup = None
        return self.rows(values)

    def observe(self, ids: IdsLike, min_count: int = 1) -> int:
        """Count one sighting per element; admit ids whose count reaches `min_count`. Returns how
        many ids were admitted. Admission follows first appearance in `ids`, so it is deterministic."""
        values = _as_array(ids).drop_null()
        if len(values) == 0:
            return 0
        counted = pc.value_counts(values)
        return self.observe_counts(counted.field("values"), counted.field("counts").to_numpy(), min_count)

    def observe_counts(self, ids: IdsLike, counts: Sequence[int] | np.ndarray, min_count: int = 1) -> int:
        """`observe` of distinct `ids` seen `counts` times each (admitted in the order given)."""
        before = len(self)
        admit = []
        for key, n in zip(_as_array(ids).to_pylist(), np.asarray(counts).tolist(), strict=True):
            total = self._count.get(key, 0) + n
            self._count[key] = total
            if key not in self._row and total >= max(min_count, 1):
                admit.append(key)
        if admit:
            self.add(admit)
        return len(self) - before

    def count(self, key: str) -> int:
        return self._count.get(key, 0)

    def counts(self) -> np.ndarray:
        """Sightings of each admitted row, in row order (popularity)."""
        return np.array([self._count[k] for k in self._ids], dtype=np.int64)

    def pending(self) -> dict[str, int]:
        """Ids seen but not admitted yet, with their counts."""
        return {k: c for k, c in self._count.items() if k not in self._row}

    # ---- persistence (Arrow IPC: no code runs on load) ----

    def to_arrow(self) -> pa.Table:
        pending = self.pending()
        ids = self._ids + list(pending)
        rows = list(range(len(self._ids))) + [-1] * len(pending)
        counts = [self._count[k] for k in ids]
        return pa.table([pa.array(ids, pa.string()), pa.array(rows, pa.int64()), pa.array(counts)], SCHEMA)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> Vocabulary:
        if not table.schema.equals(SCHEMA):
            raise RecoError(f"vocabulary has schema {table.schema}, expected {SCHEMA}")
        rows = table["row"].to_numpy()
        admitted = rows >= 0
        if not np.array_equal(rows[admitted], np.arange(int(admitted.sum()))):
            raise RecoError("vocabulary rows are not 0..n-1 in order")
        # Built from whole columns (no per-id Python loop): loading runs on every recommend.
        ids, counts = table["id"].to_pylist(), table["count"].to_pylist()
        vocab = cls()
        vocab._lookup = table["id"].filter(pa.array(admitted)).combine_chunks()
        vocab._ids = vocab._lookup.to_pylist()
        vocab._row = dict(zip(vocab._ids, range(len(vocab._ids)), strict=True))
        vocab._count = dict(zip(ids, counts, strict=True))
        return vocab

    def id_array(self) -> pa.Array:
        """Every admitted id in row order, as Arrow (row r at index r)."""
        if self._lookup is None:
            self._lookup = pa.array(self._ids, pa.string())
        return self._lookup


class Vocabs:
    """The two vocabularies a model's rows refer to."""

    def __init__(self, users: Vocabulary | None = None, items: Vocabulary | None = None) -> None:
        self.users = users if users is not None else Vocabulary()
        self.items = items if items is not None else Vocabulary()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabs) and self.users == other.users and self.items == other.items

    def __repr__(self) -> str:
        return f"Vocabs(users={len(self.users)}, items={len(self.items)})"
