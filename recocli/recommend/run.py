"""One recommendation run: load a model version, score users in batches, write gold/recommendations."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.recommendations import new_run_id, write_run
from lakehouse.registry import ModelRegistry
from lakehouse.schemas import RECOMMENDATIONS
from lakehouse.settings import parse_duration
from recocli.config import Settings
from recocli.models.store import load_version
from recocli.recommend.history import seen_items
from recocli.recommend.ranker import Ranker
from recocli.training.interactions import EVENT_COLUMNS, FEEDBACK_COLUMNS, from_bronze

MODEL, POPULAR = "model", "popular"


@dataclass
class Request:
    k: int
    users: list[str] | None = None  # None: every known user (or those active since)
    active_since: str | None = None  # a duration back from now
    model_version: int | None = None  # None: latest
    holdout: float = 0.0  # share of users (by a stable hash of their id) served the popular list instead


def in_holdout(user_id: str, share: float) -> bool:
    """Stable across runs and machines, so a user stays in the same group."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@dataclass
class RunResult:
    run_id: str
    rows: pa.Table
    model_version: int
    users: int
    model_users: int
    popular_users: int
    seconds: float


def read_interactions(warehouse: Warehouse, settings: Settings) -> pa.Table:
    """Every interaction in bronze, including rows committed after the model's cursor."""
    events = delta.read_table(warehouse.uri(catalog.EVENTS), columns=EVENT_COLUMNS)
    feedback = delta.read_table(warehouse.uri(catalog.FEEDBACK), columns=FEEDBACK_COLUMNS)
    return from_bronze(events, feedback, settings.train.weights, settings.train.rating_threshold)


def choose_users(request: Request, known: list[str], interactions: pa.Table) -> list[str]:
    if request.users is not None:
        return list(dict.fromkeys(request.users))
    if request.active_since is not None:
        since = datetime.now(UTC).timestamp() - parse_duration(request.active_since)
        cutoff = pa.scalar(int(since * 1_000_000), pa.timestamp("us", tz="UTC"))
        recent = interactions.filter(pc.greater_equal(interactions["ts"], cutoff))
        return sorted(set(recent["user_id"].to_pylist()))
    return sorted(set(known) | set(interactions["user_id"].to_pylist()))


def blocked_mask(warehouse: Warehouse, item_ids: pa.Array) -> torch.Tensor:
    blocklist = delta.read_table(warehouse.uri(catalog.BLOCKLIST), columns=["item_id"])
    if blocklist is None or blocklist.num_rows == 0:
        return torch.zeros(len(item_ids), dtype=torch.bool)
    mask = pc.is_in(item_ids, value_set=blocklist["item_id"].combine_chunks())
    return torch.from_numpy(mask.to_numpy(zero_copy_only=False).copy())


def recommend(settings: Settings, request: Request) -> RunResult:
    """Top-K lists for the chosen users from the version's ranker (time-decayed popularity for users
    the model knows nothing about, and for held-out users)."""
    if request.k < 1:
        raise RecoError("k must be at least 1")
    started = time.perf_counter()
    warehouse = Warehouse(settings.warehouse)
    loaded = load_version(ModelRegistry(warehouse), request.model_version)
    ranker, vocabs, version = Ranker.of(loaded), loaded.vocabs, loaded.version
    interactions = read_interactions(warehouse, settings)
    users = choose_users(request, vocabs.users.ids(range(len(vocabs.users))), interactions)
    held_out = [u for u in users if in_holdout(u, request.holdout)] if request.holdout > 0 else []
    if held_out:
        users = [u for u in users if not in_holdout(u, request.holdout)]
    item_ids = pa.array(vocabs.items.ids(range(len(vocabs.items))), pa.string())
    blocked = blocked_mask(warehouse, item_ids)
    cfg = settings.recommend

    parts: list[dict[str, np.ndarray]] = []
    for group, popular_only in ((users, False), (held_out, True)):
        for start in range(0, len(group), cfg.batch_users):
            batch = group[start : start + cfg.batch_users]
            exclude = seen_items(interactions, batch, vocabs.items) if cfg.exclude_seen else None
            parts.append(_ranked(ranker, batch, interactions, request.k, exclude, blocked, popular_only))
    cold = sum(int((~p["personal"]).sum()) for p in parts)
    users = users + held_out

    run_id, now = new_run_id(), datetime.now(UTC)
    rows = _rows(parts, item_ids, version)
    n = rows.num_rows
    rows = rows.append_column("run_id", pa.array([run_id] * n, pa.string()))
    rows = rows.append_column("rec_id", pc.binary_join_element_wise(rows["run_id"], rows["user_id"], "/"))
    rows = rows.append_column("generated_at", pa.array([now] * n, RECOMMENDATIONS.field("generated_at").type))
    rows = rows.select(RECOMMENDATIONS.names).cast(RECOMMENDATIONS)
    return RunResult(
        run_id=run_id,
        rows=rows,
        model_version=version,
        users=len(users),
        model_users=len(users) - cold,
        popular_users=cold,
        seconds=time.perf_counter() - started,
    )


def publish(settings: Settings, result: RunResult) -> None:
    """One commit: readers see the whole run or none of it."""
    write_run(Warehouse(settings.warehouse), result.rows)


def _ranked(
    ranker: Ranker,
    batch: list[str],
    interactions: pa.Table,
    k: int,
    exclude: torch.Tensor | None,
    blocked: torch.Tensor,
    popular_only: bool,
) -> dict[str, np.ndarray]:
    """One batch's lists from the ranker, as columns; `personal` per user (False: popularity alone)."""
    values, rows, personal = ranker.top_k(batch, interactions, k, exclude, blocked, popular_only)
    values, rows = values.cpu().numpy(), rows.cpu().numpy()
    user_index, rank_index = np.nonzero(np.isfinite(values))
    return {
        "user_id": np.asarray(batch, dtype=object)[user_index],
        "rank": rank_index + 1,
        "item_row": rows[user_index, rank_index],
        "score": values[user_index, rank_index].astype(np.float64),
        "model": personal.numpy()[user_index],
        "personal": personal.numpy(),
    }


def _rows(parts: list[dict[str, np.ndarray]], item_ids: pa.Array, version: int) -> pa.Table:
    """Model lists carry their version; popularity lists (cold or held-out users) none."""

    def column(name: str, dtype) -> np.ndarray:
        return np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, dtype=dtype)

    model = column("model", bool)
    return pa.table(
        {
            "user_id": pa.array(column("user_id", object), pa.string()),
            "rank": pa.array(column("rank", np.int64), pa.int32()),
            "item_id": item_ids.take(pa.array(column("item_row", np.int64))),
            "score": pa.array(column("score", np.float64)),
            "model_version": pa.array(np.full(len(model), version, dtype=np.int64), mask=~model),
            "strategy": pa.array(np.where(model, MODEL, POPULAR).tolist(), pa.string()),
        }
    )
