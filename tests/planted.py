"""Generated behaviour with a planted preference structure, as bronze-like Arrow tables, for the
model and training tests (no Spark: the JSON lines of recocli.data.synthetic, parsed here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.schemas import TS
from recocli.config import EventWeights
from recocli.data.synthetic import World, generate_lines
from recocli.metrics import hit_and_ndcg
from recocli.models.base import Recommender
from recocli.models.vocab import Vocabs
from recocli.training.interactions import from_bronze

START = datetime(2024, 1, 1, tzinfo=UTC)


class BlockWorld(World):
    """The same users and items, regrouped: cluster c is now the contiguous block of items
    c·k … c·k + k - 1, so every old cluster is split across all new ones (a preference shift
    that neither a user's vector nor a history read with old co-occurrences can follow)."""

    def cluster_items(self, cluster: int) -> list[int]:
        size = self.items // self.clusters
        return list(range(cluster * size, (cluster + 1) * size))


def events(
    n: int, world: World | None = None, seed: int = 0, start: datetime = START, span_days: float = 2
) -> pa.Table:
    """n behaviour events (all types, ratings 1-5) as bronze/events-like rows, in time order."""
    lines, _ = generate_lines(
        n, world or World(), seed=seed, start=start, span=timedelta(days=span_days), feedback_share=0.0
    )
    rows = [json.loads(text) for text in lines["events"]]
    return pa.Table.from_pylist(
        [
            {
                "event_id": r["event_id"],
                "user_id": r["user_id"],
                "item_id": r["item_id"],
                "event_type": r["event_type"],
                "value": r.get("value"),
                "ts": datetime.fromisoformat(r["ts"].replace("Z", "+00:00")),
            }
            for r in rows
        ],
        schema=pa.schema(
            [
                ("event_id", pa.string()),
                ("user_id", pa.string()),
                ("item_id", pa.string()),
                ("event_type", pa.string()),
                ("value", pa.float64()),
                ("ts", TS),
            ]
        ),
    )


def interactions(n: int, world: World | None = None, seed: int = 0, start: datetime = START) -> pa.Table:
    return from_bronze(events(n, world, seed, start), None, EventWeights(), 3.5)


def next_item_hr10(model: Recommender, vocabs: Vocabs, test: pa.Table, mask_seen: bool = False) -> float:
    """HR@10 of each user's first positive in `test`, scored from what the model remembers."""
    users = vocabs.users.rows(test["user_id"])
    items = vocabs.items.rows(test["item_id"])
    keep = (users >= 0) & (items >= 0) & (test["label"].to_numpy() > 0)
    users, items = users[keep], items[keep]
    first = np.unique(users, return_index=True)[1]
    import torch

    users_t, items_t = torch.from_numpy(users[first]), torch.from_numpy(items[first])
    seen = model.history(users_t) if mask_seen else None
    hit, _ = hit_and_ndcg(model.score(users_t), items_t, seen, k=10)
    return float(hit.mean())


def to_bronze(rows: pa.Table, spec, batch_id: int) -> pa.Table:
    """Generated events (or feedback) with the lineage columns ingest would add."""

    n = rows.num_rows
    data = {name: rows[name] for name in rows.column_names}
    data["event_date"] = pc.cast(rows["ts"], pa.date32())
    data["ingested_at"] = pa.array([datetime.now(UTC)] * n, TS)
    data["batch_id"] = pa.array([batch_id] * n, pa.int64())
    data["source_file"] = pa.array([f"gen-{batch_id}.jsonl"] * n)
    for field in spec.schema:
        if field.name not in data:
            data[field.name] = pa.nulls(n, field.type)
    return pa.table(data).select(spec.schema.names).cast(spec.schema)


def commit_events(warehouse, rows: pa.Table, batch_id: int) -> int:
    """Append generated events to bronze/events as one Delta commit (as one ingest batch would);
    returns the table version it made."""
    from lakehouse import catalog, delta
    from lakehouse.catalog import Warehouse

    uri = Warehouse(warehouse).uri(catalog.EVENTS)
    delta.append_once(uri, catalog.EVENTS, to_bronze(rows, catalog.EVENTS, batch_id), "planted", batch_id)
    return delta.current_version(uri)
