"""Bronze rows → interactions (who, what, when, how much, positive or negative) → vocabulary rows.

An interaction table is Arrow with SCHEMA. Every event type and feedback action has a weight in
config (`[train.weights]`, 0 drops it). dislike and dismiss are negatives, and so are ratings below
`train.rating_threshold`; every other kind with a weight is a positive. Impressions default to 0:
not being clicked is position bias as much as taste, so they are neither.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recocli.config import EventWeights
from recocli.models.vocab import Vocabs

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
    parts = []
    if events is not None and events.num_rows:
        parts.append(_from_kinds(events, "event_type", weights, rating_threshold))
    if feedback is not None and feedback.num_rows:
        parts.append(_from_kinds(feedback, "action", weights, rating_threshold))
    if not parts:
        return SCHEMA.empty_table()
    data = pa.concat_tables(parts)
    order = np.argsort(data["ts"].cast(pa.int64()).to_numpy(), kind="stable")
    return data.take(pa.array(order))


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


def encode(interactions: pa.Table, vocabs: Vocabs, min_count: int | None = None) -> Encoded:
    """Rows of each interaction; those whose user or item has no row are dropped.

    With `min_count`, the interactions are counted first and ids reaching `min_count` sightings
    are admitted (new rows); without it, the vocabularies are only read.
    """
    if min_count is not None:
        vocabs.users.observe(interactions["user_id"], min_count)
        vocabs.items.observe(interactions["item_id"], min_count)
    users = vocabs.users.rows(interactions["user_id"])
    items = vocabs.items.rows(interactions["item_id"])
    keep = (users >= 0) & (items >= 0)
    return Encoded(
        users=users[keep],
        items=items[keep],
        ts=interactions["ts"].cast(pa.int64()).to_numpy()[keep],
        weights=interactions["weight"].to_numpy()[keep].astype(np.float32),
        labels=interactions["label"].to_numpy()[keep].astype(np.int8),
    )


def decode(encoded: Encoded, vocabs: Vocabs) -> pa.Table:
    """Back to raw ids (for replay samples handed to the in-memory API)."""
    return make_interactions(
        vocabs.users.ids(encoded.users),
        vocabs.items.ids(encoded.items),
        pa.array(encoded.ts, pa.int64()).cast(TS),
        encoded.weights,
        encoded.labels,
    )
