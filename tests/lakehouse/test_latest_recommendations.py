"""gold/latest_recommendations: each user's newest list, whatever the lengths of the lists."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from lakehouse.catalog import Warehouse
from lakehouse.recommendations import merge_latest, read_latest


def lists(run: str, lengths: dict[str, int]) -> pa.Table:
    """A run's rows: `lengths[user]` ranked items per user, item ids naming run and rank."""
    pairs = [(user, rank) for user, n in lengths.items() for rank in range(1, n + 1)]
    return pa.table(
        {
            "run_id": [run] * len(pairs),
            "rec_id": [f"{run}/{u}" for u, _ in pairs],
            "user_id": [u for u, _ in pairs],
            "rank": pa.array([r for _, r in pairs], pa.int32()),
            "item_id": [f"{run}-{r}" for _, r in pairs],
            "score": [1.0 / r for _, r in pairs],
            "model_version": pa.array([1] * len(pairs), pa.int64()),
            "strategy": ["ranker"] * len(pairs),
            "generated_at": pa.array(
                [datetime(2026, 12, 4, tzinfo=UTC)] * len(pairs), pa.timestamp("us", "UTC")
            ),
        }
    )


def held(warehouse: Warehouse) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in read_latest(warehouse).to_pylist():
        out.setdefault(row["user_id"], []).append(row["item_id"])
    return out


def test_lists_of_any_length_replace_only_their_users_lists(tmp_path):
    """A small catalogue, or a user who has seen most of it, gives lists shorter than k. A new user
    with a list shorter than another user's held one made the merge fail (delta-rs: NOT NULL)."""
    warehouse = Warehouse(tmp_path)
    merge_latest(warehouse, lists("r1", {"a": 3}))
    merge_latest(warehouse, lists("r2", {"b": 1, "c": 2}))
    assert held(warehouse) == {"a": ["r1-1", "r1-2", "r1-3"], "b": ["r2-1"], "c": ["r2-1", "r2-2"]}
    merge_latest(warehouse, lists("r3", {"a": 1, "b": 4}))  # a shrinks, b grows, c untouched
    assert held(warehouse) == {"a": ["r3-1"], "b": ["r3-1", "r3-2", "r3-3", "r3-4"], "c": ["r2-1", "r2-2"]}
