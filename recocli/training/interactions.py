"""Bronze rows → interactions (who, what, when, how much, positive or negative) → vocabulary rows.

An interaction table is Arrow with SCHEMA; training holds them as `Compact` instead (integer codes
into the distinct ids, built batch by batch from a Delta scan), so its memory follows rows × 29
bytes plus each id once, never a string column per row. Every event type and feedback action has a weight in
config (`[train.weights]`, 0 drops it). dislike and dismiss are negatives, and so are ratings below
`train.rating_threshold`; every other kind with a weight is a positive. Impressions default to 0:
not being clicked is position bias as much as taste, so they are neither.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.errors import RecoError
from recocli.config import EventWeights
from recocli.models.vocab import Vocabs, Vocabulary

TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("weight", pa.float32(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),  # 1 positive, 0 negative
    ]
)
NEGATIVE_KINDS = ("dislike", "dismiss")
# The bronze columns interactions need (the kind column is event_type or action).
EVENT_COLUMNS = ["user_id", "item_id", "event_type", "value", "ts"]
FEEDBACK_COLUMNS = ["user_id", "item_id", "action", "value", "ts"]


class TooLittleData(RecoError):
    """Too few interactions for a first model: more data, not a different command, is the fix, so a
    scheduled `reco train` says so and waits (exit 0); `reco train --full` and `reco evaluate` stop."""


def make_interactions(
    user_ids: Sequence[str] | pa.Array,
    item_ids: Sequence[str] | pa.Array,
    ts: Sequence | pa.Array | None = None,
    weight: Sequence[float] | None = None,
    label: Sequence[int] | None = None,
) -> pa.Table:
    """An interaction table from columns; ts defaults to the given order, weight and label to 1."""
    n = len(user_ids)
    ts_array = pa.array(np.arange(n, dtype=np.int64)).cast(TS) if ts is None else pa.array(ts)
    if not pa.types.is_timestamp(ts_array.type):
        ts_array = ts_array.cast(pa.int64()).cast(TS)
    columns = [
        pa.array(user_ids).cast(pa.string()),
        pa.array(item_ids).cast(pa.string()),
        ts_array.cast(TS),
        pa.array(np.ones(n) if weight is None else weight).cast(pa.float32()),
        pa.array(np.ones(n) if label is None else label).cast(pa.int8()),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _from_kinds(table: pa.Table, kind_column: str, weights: EventWeights, threshold: float) -> pa.Table:
    kinds = pc.utf8_lower(table[kind_column].cast(pa.string()))
    names = [f.name for f in dataclasses.fields(EventWeights)]
    lookup = pa.array([float(getattr(weights, name)) for name in names], pa.float32())
    weight = pc.take(lookup, pc.index_in(kinds, value_set=pa.array(names))).fill_null(0.0)
    value = table["value"].cast(pa.float64())
    is_rating = pc.equal(kinds, "rating")
    low_rating = pc.and_(is_rating, pc.less(value, threshold)).fill_null(False)
    negative = pc.or_(pc.is_in(kinds, value_set=pa.array(NEGATIVE_KINDS)), low_rating)
    # A rating without a value says nothing.
    weight = pc.if_else(pc.and_(is_rating, pc.is_null(value)), pa.scalar(0.0, pa.float32()), weight)
    out = pa.Table.from_arrays(
        [
            table["user_id"].cast(pa.string()),
            table["item_id"].cast(pa.string()),
            table["ts"].cast(TS),
            weight.cast(pa.float32()),
            pc.if_else(negative, 0, 1).cast(pa.int8()),
        ],
        schema=SCHEMA,
    )
    return out.filter(pc.greater(out["weight"], 0.0))


def from_bronze(
    events: pa.Table | None,
    feedback: pa.Table | None,
    weights: EventWeights,
    rating_threshold: float,
) -> pa.Table:
    """Interactions from bronze/events and bronze/feedback rows, in time order (stable)."""
    batches = [[] if t is None else t.to_batches() for t in (events, feedback)]
    return compact_from_bronze(*batches, weights, rating_threshold).to_table()


def compact_from_bronze(
    events: Iterable[pa.RecordBatch],
    feedback: Iterable[pa.RecordBatch],
    weights: EventWeights,
    rating_threshold: float,
) -> Compact:
    """Interactions from streams of bronze/events and bronze/feedback record batches, in time order
    (stable; events before feedback at equal times): each batch is coded as it comes, so only the
    codes outlive it."""
    users, items = _Codes(), _Codes()
    parts = []
    for batches, kind_column in ((events, "event_type"), (feedback, "action")):
        for batch in batches:
            if batch.num_rows:
                rows = _from_kinds(pa.Table.from_batches([batch]), kind_column, weights, rating_threshold)
                parts.append(_coded(rows, users, items))
    data = Encoded.concat(parts) if parts else Encoded.empty()
    parts.clear()
    order = np.argsort(data.ts, kind="stable")
    for column in dataclasses.fields(data):  # one column copied at a time
        setattr(data, column.name, getattr(data, column.name)[order])
    return Compact(users.ids(), items.ids(), data)


class _Codes:
    """Distinct ids → codes 0, 1, … in order of first appearance, grown batch by batch."""

    def __init__(self) -> None:
        self._code: dict[str, int] = {}

    def of(self, ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
        encoded = pc.dictionary_encode(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids)
        local = encoded.dictionary.to_pylist()
        code = self._code
        mapping = np.fromiter((code.setdefault(key, len(code)) for key in local), np.int64, len(local))
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)]

    def ids(self) -> pa.Array:
        return pa.array(list(self._code), pa.string())


def _coded(rows: pa.Table, users: _Codes, items: _Codes) -> Encoded:
    """An interaction table (SCHEMA) as codes of `users` and `items`."""
    return Encoded(
        users=users.of(rows["user_id"]),
        items=items.of(rows["item_id"]),
        ts=rows["ts"].cast(pa.int64()).to_numpy(),
        weights=rows["weight"].to_numpy().astype(np.float32),
        labels=rows["label"].to_numpy().astype(np.int8),
    )


@dataclass
class Encoded:
    """Interactions as vocabulary rows (NumPy), ready for tensors."""

    users: np.ndarray  # int64 user rows
    items: np.ndarray  # int64 item rows
    ts: np.ndarray  # int64 microseconds since the epoch
    weights: np.ndarray  # float32
    labels: np.ndarray  # int8, 1 positive / 0 negative

    def __len__(self) -> int:
        return len(self.users)

    def take(self, index: np.ndarray) -> Encoded:
        return Encoded(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    def positives(self) -> Encoded:
        return self.take(self.labels > 0)

    @classmethod
    def concat(cls, parts: Sequence[Encoded]) -> Encoded:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))

    @classmethod
    def empty(cls) -> Encoded:
        return cls(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
            np.zeros(0, np.float32), np.zeros(0, np.int8),
        )  # fmt: skip


@dataclass
class Compact:
    """Interactions as codes into their distinct ids: `rows.users` / `rows.items` index `user_ids` /
    `item_ids`. Sliced like an Arrow table (views, no copy)."""

    user_ids: pa.Array
    item_ids: pa.Array
    rows: Encoded

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def slice(self, offset: int = 0, length: int | None = None) -> Compact:
        stop = self.num_rows if length is None else offset + length
        return Compact(self.user_ids, self.item_ids, self.rows.take(slice(offset, stop)))

    def to_table(self) -> pa.Table:
        return make_interactions(
            self.user_ids.take(pa.array(self.rows.users)),
            self.item_ids.take(pa.array(self.rows.items)),
            pa.array(self.rows.ts, pa.int64()).cast(TS),
            self.rows.weights,
            self.rows.labels,
        )


Interactions = pa.Table | Compact


def as_compact(interactions: Interactions) -> Compact:
    if isinstance(interactions, Compact):
        return interactions
    users, items = _Codes(), _Codes()
    rows = _coded(interactions, users, items)
    return Compact(users.ids(), items.ids(), rows)


def as_table(interactions: Interactions) -> pa.Table:
    return interactions.to_table() if isinstance(interactions, Compact) else interactions


def encode(interactions: Interactions, vocabs: Vocabs, min_count: int | None = None) -> Encoded:
    """Rows of each interaction; those whose user or item has no row are dropped.

    With `min_count`, the interactions are counted first and ids reaching `min_count` sightings
    are admitted (new rows, in order of first appearance); without it, the vocabularies are only read.
    """
    data = as_compact(interactions)
    if min_count is not None:
        _observe(vocabs.users, data.user_ids, data.rows.users, min_count)
        _observe(vocabs.items, data.item_ids, data.rows.items, min_count)
    users = vocabs.users.rows(data.user_ids)[data.rows.users]
    items = vocabs.items.rows(data.item_ids)[data.rows.items]
    keep = (users >= 0) & (items >= 0)
    return Encoded(
        users[keep], items[keep], *(a[keep] for a in (data.rows.ts, data.rows.weights, data.rows.labels))
    )


def _observe(vocab: Vocabulary, ids: pa.Array, codes: np.ndarray, min_count: int) -> None:
    """`vocab.observe` of the ids the codes stand for, without materialising them per row."""
    present, first, counts = np.unique(codes, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    vocab.observe_counts(ids.take(pa.array(present[order])), counts[order], min_count)


def decode(encoded: Encoded, vocabs: Vocabs) -> pa.Table:
    """Back to raw ids (for replay samples handed to the in-memory API)."""
    return make_interactions(
        vocabs.users.ids(encoded.users),
        vocabs.items.ids(encoded.items),
        pa.array(encoded.ts, pa.int64()).cast(TS),
        encoded.weights,
        encoded.labels,
    )
