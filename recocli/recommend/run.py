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
from recocli.recommend.history import score_users, seen_items
from recocli.recommend.popular import popular_items
from recocli.recommend.topk import masked_topk
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
    """Top-K lists for the chosen users; popularity for users the model knows nothing about."""
    if request.k < 1:
        raise RecoError("k must be at least 1")
    started = time.perf_counter()
    warehouse = Warehouse(settings.warehouse)
    loaded = load_version(ModelRegistry(warehouse), request.model_version)
    model, vocabs, version = loaded.model, loaded.vocabs, loaded.version
    interactions = read_interactions(warehouse, settings)
    users = choose_users(request, vocabs.users.ids(range(len(vocabs.users))), interactions)
    held_out = [u for u in users if in_holdout(u, request.holdout)] if request.holdout > 0 else []
    if held_out:
        users = [u for u in users if not in_holdout(u, request.holdout)]
    item_ids = pa.array(vocabs.items.ids(range(len(vocabs.items))), pa.string())
    blocked = blocked_mask(warehouse, item_ids)
    cfg = settings.recommend

    parts: list[dict[str, np.ndarray]] = []
    cold: list[str] = list(held_out)
    for start in range(0, len(users), cfg.batch_users):
        batch = users[start : start + cfg.batch_users]
        scores, has_signal = score_users(model, vocabs, interactions, batch)
        has_signal = has_signal.numpy()
        exclude = seen_items(interactions, batch, vocabs.items) if cfg.exclude_seen else None
        values, rows = masked_topk(scores, request.k, exclude, blocked)
        values, rows = values.cpu().numpy(), rows.cpu().numpy()
        keep = np.isfinite(values) & has_signal[:, None]
        user_index, rank_index = np.nonzero(keep)
        parts.append(
            {
                "user_id": np.asarray(batch, dtype=object)[user_index],
                "rank": rank_index + 1,
                "item_row": rows[user_index, rank_index],
                "score": values[user_index, rank_index].astype(np.float64),
            }
        )
        cold += [user for user, signal in zip(batch, has_signal, strict=True) if not signal]

    run_id, now = new_run_id(), datetime.now(UTC)
    model_rows = _model_rows(parts, item_ids, version)
    popular_rows = _popular_rows(cold, interactions, blocked, item_ids, request.k, cfg)
    rows = pa.concat_tables([model_rows, popular_rows])
    n = rows.num_rows
    rows = rows.append_column("run_id", pa.array([run_id] * n, pa.string()))
    rows = rows.append_column("rec_id", pc.binary_join_element_wise(rows["run_id"], rows["user_id"], "/"))
    rows = rows.append_column("generated_at", pa.array([now] * n, RECOMMENDATIONS.field("generated_at").type))
    rows = rows.select(RECOMMENDATIONS.names).cast(RECOMMENDATIONS)
    return RunResult(
        run_id=run_id,
        rows=rows,
        model_version=version,
        users=len(users) + len(held_out),
        model_users=len(users) + len(held_out) - len(cold),
        popular_users=len(cold),
        seconds=time.perf_counter() - started,
    )


def publish(settings: Settings, result: RunResult) -> bool:
    """One commit to the history (readers see the whole run or none of it), then one that makes the
    lists their users' latest. A run with no rows commits nothing: returns False."""
    return write_run(Warehouse(settings.warehouse), result.rows)


def _model_rows(parts: list[dict[str, np.ndarray]], item_ids: pa.Array, version: int) -> pa.Table:
    def column(name: str, dtype) -> np.ndarray:
        return np.concatenate([p[name] for p in parts]) if parts else np.zeros(0, dtype=dtype)

    n = sum(len(p["rank"]) for p in parts)
    return pa.table(
        {
            "user_id": pa.array(column("user_id", object), pa.string()),
            "rank": pa.array(column("rank", np.int64), pa.int32()),
            "item_id": item_ids.take(pa.array(column("item_row", np.int64))),
            "score": pa.array(column("score", np.float64)),
            "model_version": pa.array(np.full(n, version, dtype=np.int64)),
            "strategy": pa.array([MODEL] * n, pa.string()),
        }
    )


def _popular_rows(
    users: list[str], interactions: pa.Table, blocked: torch.Tensor, item_ids: pa.Array, k: int, cfg
) -> pa.Table:
    """The same popular list for every cold user, less what that user has already seen."""
    ranked, weights = popular_items(interactions, parse_duration(cfg.popular_window))
    banned = set(item_ids.filter(pa.array(blocked.numpy())).to_pylist())
    candidates = [(item, float(w)) for item, w in zip(ranked, weights, strict=True) if item not in banned]
    seen: dict[str, set[str]] = {}
    if cfg.exclude_seen and users:
        mine = interactions.filter(pc.is_in(interactions["user_id"], value_set=pa.array(users, pa.string())))
        for user, item in zip(mine["user_id"].to_pylist(), mine["item_id"].to_pylist(), strict=True):
            seen.setdefault(user, set()).add(item)
    out: dict[str, list] = {"user_id": [], "rank": [], "item_id": [], "score": []}
    for user in users:
        skip = seen.get(user, set())
        rank = 0
        for item, weight in candidates:
            if item in skip:
                continue
            rank += 1
            out["user_id"].append(user)
            out["rank"].append(rank)
            out["item_id"].append(item)
            out["score"].append(weight)
            if rank == k:
                break
    n = len(out["rank"])
    return pa.table(
        {
            "user_id": pa.array(out["user_id"], pa.string()),
            "rank": pa.array(out["rank"], pa.int32()),
            "item_id": pa.array(out["item_id"], pa.string()),
            "score": pa.array(out["score"], pa.float64()),
            "model_version": pa.nulls(n, pa.int64()),
            "strategy": pa.array([POPULAR] * n, pa.string()),
        }
    )
