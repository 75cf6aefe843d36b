"""What a recommendation run reads from bronze: the chosen users' rows only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from recocli.config import load_settings
from recocli.recommend import bronze

NEWEST = datetime(2024, 5, 10, 12, tzinfo=UTC)


def _warehouse(tmp_path) -> tuple[Warehouse, object]:
    """Ten days of events, one partition a day: user uD clicks item iD on day D; a day later, u9
    dislikes i0 (the newest partition holds no positive)."""
    rows = [(f"u{d}", f"i{d}", "click", NEWEST - timedelta(days=9 - d, hours=d % 3)) for d in range(10)] + [
        ("u9", "i0", "dislike", NEWEST + timedelta(days=1))
    ]
    events = pa.table(
        {
            "event_id": [f"e{n}" for n in range(len(rows))],
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "value": pa.nulls(len(rows), pa.float64()),
            "ts": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
            "session_id": pa.nulls(len(rows), pa.string()),
            "context": pa.nulls(len(rows), catalog.EVENTS.schema.field("context").type),
            "event_date": pa.array([r[3].date() for r in rows], pa.date32()),
            "ingested_at": pa.array([NEWEST] * len(rows), pa.timestamp("us", tz="UTC")),
            "batch_id": pa.array([0] * len(rows), pa.int64()),
            "source_file": ["t"] * len(rows),
        }
    )
    warehouse = Warehouse(tmp_path / "warehouse")
    delta.append_once(warehouse.uri(catalog.EVENTS), catalog.EVENTS, events, "t", 0)
    return warehouse, load_settings(env={}, overrides={"warehouse": str(warehouse.root)})


def test_interactions_of_the_chosen_users_only(tmp_path):
    warehouse, settings = _warehouse(tmp_path)
    mine = bronze.interactions(warehouse, settings, ["u2", "u9", "nobody"])
    assert sorted(zip(mine["user_id"].to_pylist(), mine["item_id"].to_pylist(), strict=True)) == [
        ("u2", "i2"), ("u9", "i0"), ("u9", "i9")
    ]  # fmt: skip
    assert pc.min(mine["label"]).as_py() == 0  # the dislike is there, as a negative
    since = NEWEST - timedelta(days=2, hours=3)
    assert sorted(bronze.user_ids(warehouse, since).to_pylist()) == ["u7", "u8", "u9"]
    assert len(bronze.user_ids(warehouse)) == 10
