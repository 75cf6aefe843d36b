"""Where evaluation data comes from: a warehouse's bronze tables, or a MovieLens folder read by the
same parser as `reco data import`. Either way the result is interactions in time order (the same
semantics as training: event weights, low ratings negative) plus the raw rating values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from recocli.config import Settings
from recocli.data import movielens
from recocli.training.interactions import EVENT_COLUMNS, FEEDBACK_COLUMNS, from_bronze

RATING_KEYS = ["user_id", "item_id", "ts"]


@dataclass
class Source:
    name: str  # dataset name for the report
    interactions: pa.Table  # recocli.training.interactions.SCHEMA, time order
    ratings: pa.Table | None  # user_id, item_id, ts, value of every rating event (None: no ratings)


def _ratings(events: pa.Table) -> pa.Table | None:
    rated = events.filter(pc.and_(pc.equal(events["event_type"], "rating"), pc.is_valid(events["value"])))
    if rated.num_rows == 0:
        return None
    return rated.select([*RATING_KEYS, "value"]).cast(
        pa.schema([(k, events.schema.field(k).type) for k in RATING_KEYS] + [("value", pa.float64())])
    )


def load(
    settings: Settings, data: Path | None = None, sample_users: int | None = None, seed: int = 0
) -> Source:
    """Interactions from `data` (a MovieLens folder) or else the warehouse's bronze tables.

    `sample_users`: keep only that many users, drawn with `seed` (for quick runs)."""
    train = settings.train
    if data is not None:
        folder = movielens.detect(data)
        events = movielens.read_ratings(folder)
        feedback = None
        name = f"ml-{folder.dataset}"
    else:
        warehouse = Warehouse(settings.warehouse)
        events = delta.read_table(warehouse.uri(catalog.EVENTS), columns=EVENT_COLUMNS)
        feedback = delta.read_table(warehouse.uri(catalog.FEEDBACK), columns=FEEDBACK_COLUMNS)
        if events is None and feedback is None:
            raise RecoError(
                f"no bronze tables in {warehouse.root}: run `reco ingest` or `reco data import` first, "
                "or pass --data PATH of a MovieLens folder"
            )
        name = f"warehouse {warehouse.root.name}"
    interactions = from_bronze(events, feedback, train.weights, train.rating_threshold)
    if interactions.num_rows == 0:
        raise RecoError("no interactions to evaluate (every event had weight 0)")
    ratings = _ratings(events) if events is not None and events.num_rows else None
    if sample_users is not None:
        users = np.array(sorted(set(interactions["user_id"].to_pylist())), dtype=object)
        if sample_users < len(users):
            keep = np.random.default_rng(seed).choice(users, sample_users, replace=False)
            value_set = pa.array(sorted(keep.tolist()), pa.string())
            interactions = interactions.filter(pc.is_in(interactions["user_id"], value_set=value_set))
            if ratings is not None:
                ratings = ratings.filter(pc.is_in(ratings["user_id"], value_set=value_set))
            name = f"{name} ({sample_users} users)"
    return Source(name, interactions, ratings)


def rating_values(rows: pa.Table, ratings: pa.Table | None) -> np.ndarray:
    """The rating value of each of `rows` (NaN where it was not a rating), matched on user, item, ts."""
    if ratings is None or rows.num_rows == 0:
        return np.full(rows.num_rows, np.nan)
    keyed = rows.select(RATING_KEYS).append_column("_row", pa.array(np.arange(rows.num_rows)))
    unique = ratings.group_by(RATING_KEYS).aggregate([("value", "max")])
    joined = keyed.join(unique, RATING_KEYS, join_type="left outer")
    out = np.full(rows.num_rows, np.nan)
    values = joined["value_max"].to_numpy(zero_copy_only=False).astype(float)
    out[joined["_row"].to_numpy()] = values
    return out
