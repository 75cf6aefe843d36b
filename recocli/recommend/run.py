"""One recommendation run: load a model version, rank users in batches through its ranker
(recocli.recommend.ranker: model scores blended with the version's time-decayed popularity, which
alone serves cold and held-out users), write gold/recommendations.

Where the time goes at catalogue scale (bench/recommend_throughput.md): the matrix products and
top-K. Everything else reads only what the chosen users need (recommend.bronze) and stays in
Arrow, NumPy and batched tensors: no per-user Python, no [users, items] copy beyond the scores.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
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
from lakehouse.schemas import HOLDOUT, MODEL, POPULAR, RECOMMENDATIONS
from lakehouse.settings import parse_duration
from recocli.config import Settings
from recocli.models.base import Recommender
from recocli.models.prior import rank_scores
from recocli.models.store import ModelVersion, load_version
from recocli.models.vocab import Vocabs
from recocli.recommend import bronze
from recocli.recommend.history import known_users, score_users, seen_items
from recocli.recommend.ranker import Ranker
from recocli.recommend.topk import masked_topk


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


@dataclass
class TopK:
    """One batch's lists: item rows and scores [B, k] (-inf past a user's last candidate), and
    whether the model had anything on each user [B] (users without get the popular list)."""

    values: np.ndarray
    rows: np.ndarray
    has_signal: np.ndarray


_EMPTY = TopK(np.zeros((0, 0), np.float32), np.zeros((0, 0), np.int64), np.zeros(0, bool))


def choose_users(warehouse: Warehouse, request: Request, vocabs: Vocabs) -> list[str]:
    if request.users is not None:
        return list(dict.fromkeys(request.users))
    if request.active_since is not None:
        since = datetime.fromtimestamp(time.time() - parse_duration(request.active_since), UTC)
        return sorted(bronze.user_ids(warehouse, since).to_pylist())
    known = vocabs.users.id_array().to_pylist()
    return sorted(set(known) | set(bronze.user_ids(warehouse).to_pylist()))


def blocked_mask(warehouse: Warehouse, item_ids: pa.Array) -> torch.Tensor:
    blocklist = delta.read_table(warehouse.uri(catalog.BLOCKLIST), columns=["item_id"])
    if blocklist is None or blocklist.num_rows == 0:
        return torch.zeros(len(item_ids), dtype=torch.bool)
    mask = pc.is_in(item_ids, value_set=blocklist["item_id"].combine_chunks())
    return torch.from_numpy(mask.to_numpy(zero_copy_only=False).copy())


def scoring_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 matrix products on a GPU (tensor cores; the top-K barely moves); fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def top_k(
    model: Recommender,
    vocabs: Vocabs,
    interactions: pa.Table,
    users: list[str],
    k: int,
    blocked: torch.Tensor | None,
    exclude_seen: bool,
    prior: tuple[torch.Tensor, float] | None = None,
) -> TopK:
    """The scoring seam: scores of one batch of users over the whole catalog (score_users), blended
    with the ranker's `prior` (its popularity [items], weight: `ranker_prior`), their seen and blocked
    items masked, top-k taken on the scoring device; only [B, k] comes back."""
    device = model.hist_items.device
    with _precision(device):
        scores, has_signal = score_users(model, vocabs, interactions, users)
    scores = scores.float() if prior is None else rank_scores(scores, prior[0], prior[1], has_signal)
    exclude = seen_items(interactions, users, vocabs.items) if exclude_seen else None
    values, rows = masked_topk(scores, k, exclude, blocked)
    return TopK(values.cpu().numpy(), rows.cpu().numpy(), has_signal.cpu().numpy())


def ranker_prior(loaded: ModelVersion) -> tuple[torch.Tensor, float]:
    """The version's ranker as `top_k` blends it: its chosen popularity [items] (`log_prior`) and
    the chosen weight (a version published before rankers is refused in one line)."""
    state = Ranker.of(loaded).state
    return state.log_prior(loaded.model.n_items), state.weight


def by_user(interactions: pa.Table, users: list[str]) -> tuple[pa.Table, np.ndarray]:
    """The interactions of `users` grouped in their order (time order kept within each), and where
    each user's rows start ([len(users) + 1]): a batch of users reads a slice, not the whole table."""
    slot = pc.index_in(interactions["user_id"], value_set=pa.array(users, pa.string()))
    slot = slot.fill_null(-1).to_numpy(zero_copy_only=False)
    order = np.argsort(slot, kind="stable")
    order = order[slot[order] >= 0]
    bounds = np.searchsorted(slot[order], np.arange(len(users) + 1))
    return interactions.take(pa.array(order)), bounds


def recommend(settings: Settings, request: Request, engine: Engine | None = None) -> RunResult:
    """Top-K lists for the chosen users from the version's ranker; its decayed popularity for users the
    model knows nothing about (as chosen on such users) and for held-out users (the blend's).
    `engine` scores the model's lists (default: model_lists, in this process; recocli.engines.spark
    scores on Spark's executors)."""
    if request.k < 1:
        raise RecoError("k must be at least 1")
    started = time.perf_counter()
    warehouse = Warehouse(settings.warehouse)
    loaded = load_version(ModelRegistry(warehouse), request.model_version)
    state, n_items = Ranker.of(loaded).state, loaded.model.n_items
    device = scoring_device()
    loaded.model.to(device)
    chosen = choose_users(warehouse, request, loaded.vocabs)
    everyone = request.users is None and request.active_since is None
    interactions = bronze.interactions(warehouse, settings, None if everyone else chosen)
    held = {u for u in chosen if in_holdout(u, request.holdout)} if request.holdout > 0 else set()
    item_ids = loaded.vocabs.items.id_array()
    blocked = blocked_mask(warehouse, item_ids)

    model_rows, cold = (engine or model_lists)(
        loaded,
        interactions,
        [u for u in chosen if u not in held],
        request.k,
        blocked.to(device) if bool(blocked.any()) else None,
        item_ids,
        settings,
    )
    held_ids = pa.array(sorted(held), pa.string())
    known = known_users(loaded.model, loaded.vocabs, interactions, sorted(held)).cpu().numpy()
    control = held_ids.filter(pa.array(known, pa.bool_()))
    cold = pa.concat_arrays([held_ids.filter(pa.array(~known, pa.bool_())), cold])
    popular = [
        _popular_rows(settings, users, interactions, blocked, item_ids, log_prior, request.k, strategy)
        for users, strategy, log_prior in (
            (cold, POPULAR, state.cold_log_prior(n_items)),
            (control, HOLDOUT, state.log_prior(n_items)),
        )
    ]
    return RunResult(
        run_id=(run_id := new_run_id()),
        rows=_gold(pa.concat_tables([model_rows, *popular]), run_id),
        model_version=loaded.version,
        users=len(chosen),
        model_users=len(chosen) - len(cold) - len(control),
        popular_users=len(cold) + len(control),
        seconds=time.perf_counter() - started,
    )


def model_lists(
    loaded: ModelVersion,
    interactions: pa.Table,
    users: list[str],
    k: int,
    blocked: torch.Tensor | None,
    item_ids: pa.Array,
    settings: Settings,
) -> tuple[pa.Table, pa.Array]:
    """The local engine: the model's rows for `users`, batch by batch, and the users it had nothing on."""
    cfg, prior = settings.recommend, ranker_prior(loaded)
    parts, cold = [_model_rows(pa.array([], pa.string()), _EMPTY, item_ids, loaded.version)], []
    mine, bounds = by_user(interactions, users)
    for start in range(0, len(users), cfg.batch_users):
        batch = users[start : start + cfg.batch_users]
        lo, hi = bounds[start], bounds[start + len(batch)]
        rows = mine.slice(lo, hi - lo)
        top = top_k(loaded.model, loaded.vocabs, rows, batch, k, blocked, cfg.exclude_seen, prior)
        batch_ids = pa.array(batch, pa.string())
        parts.append(_model_rows(batch_ids, top, item_ids, loaded.version))
        cold.append(batch_ids.filter(pa.array(~top.has_signal)))
    return pa.concat_tables(parts), pa.concat_arrays(cold) if cold else pa.array([], pa.string())


Engine = Callable[
    [ModelVersion, pa.Table, list[str], int, "torch.Tensor | None", pa.Array, Settings],
    tuple[pa.Table, pa.Array],
]


def _gold(rows: pa.Table, run_id: str) -> pa.Table:
    """The run's rows with its id, each list's rec_id and the time, in the gold schema."""
    n, now = rows.num_rows, datetime.now(UTC)
    rows = rows.append_column("run_id", pa.repeat(pa.scalar(run_id), n))
    rows = rows.append_column("rec_id", pc.binary_join_element_wise(rows["run_id"], rows["user_id"], "/"))
    stamp = pa.scalar(now, RECOMMENDATIONS.field("generated_at").type)
    rows = rows.append_column("generated_at", pa.repeat(stamp, n))
    return rows.select(RECOMMENDATIONS.names).cast(RECOMMENDATIONS)


def publish(settings: Settings, result: RunResult) -> bool:
    """One commit to the history (readers see the whole run or none of it), then one that makes the
    lists their users' latest. A run with no rows commits nothing: returns False."""
    return write_run(Warehouse(settings.warehouse), result.rows)


def _model_rows(users: pa.Array, top: TopK, item_ids: pa.Array, version: int) -> pa.Table:
    """Gold rows (without run columns) of one batch: users with signal, finite scores only."""
    keep = np.isfinite(top.values) & top.has_signal[:, None]
    user_index, rank_index = np.nonzero(keep)
    return model_rows(
        users.take(pa.array(user_index)),
        rank_index + 1,
        item_ids.take(pa.array(top.rows[user_index, rank_index])),
        top.values[user_index, rank_index],
        version,
    )


def model_rows(
    users: pa.Array, ranks: np.ndarray, items: pa.Array, scores: np.ndarray, version: int
) -> pa.Table:
    """Gold rows (without run columns) of a model's lists, in the order given."""
    n = len(users)
    return pa.table(
        {
            "user_id": users.cast(pa.string()),
            "rank": pa.array(np.asarray(ranks).astype(np.int32)),
            "item_id": items,
            "score": pa.array(np.asarray(scores).astype(np.float64)),
            "model_version": pa.repeat(pa.scalar(version, pa.int64()), n),
            "strategy": pa.repeat(pa.scalar(MODEL), n),
        }
    )


def _popular_rows(
    settings: Settings,
    users: pa.Array,
    interactions: pa.Table,
    blocked: torch.Tensor,
    item_ids: pa.Array,
    log_prior: torch.Tensor,
    k: int,
    strategy: str,
) -> pa.Table:
    """The ranker's popularity list (`log_prior`: its decayed counts, as log P_recent, which is the
    score) for every cold or held-out user, less what that user has already seen, marked `strategy`."""
    cfg = settings.recommend
    if len(users) == 0:
        return _popular_table(users, np.zeros(0, np.int64), pa.array([], pa.string()), np.zeros(0), strategy)
    log_p = log_prior.numpy().astype(np.float64)
    order = np.argsort(-log_p, kind="stable")
    candidates, weights = item_ids.take(pa.array(order)), log_p[order]
    allowed = pc.invert(pc.is_in(candidates, value_set=item_ids.filter(pa.array(blocked.numpy()))))
    candidates, weights = candidates.filter(allowed), weights[allowed.to_numpy(zero_copy_only=False)]
    slot, column = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if cfg.exclude_seen and len(candidates):
        mine = interactions.filter(pc.is_in(interactions["user_id"], value_set=users))
        slot = pc.index_in(mine["user_id"], value_set=users).to_numpy(zero_copy_only=False)
        column = (
            pc.index_in(mine["item_id"], value_set=candidates).fill_null(-1).to_numpy(zero_copy_only=False)
        )
        slot, column = slot[column >= 0], column[column >= 0]
    # A user's k items lie within the first k + (how many candidates they saw) candidates.
    width = min(len(candidates), k + int(np.bincount(slot, minlength=1).max()))
    seen = np.zeros((len(users), width), dtype=bool)
    seen[slot[column < width], column[column < width]] = True
    # Each user's first k candidates not seen, in popularity order.
    rank = np.cumsum(~seen, axis=1)
    user_index, column = np.nonzero(~seen & (rank <= k))
    return _popular_table(
        users.take(pa.array(user_index)),
        rank[user_index, column],
        candidates.take(pa.array(column)),
        weights[column],
        strategy,
    )


def _popular_table(
    users: pa.Array, rank: np.ndarray, items: pa.Array, weights: np.ndarray, strategy: str
) -> pa.Table:
    n = len(users)
    return pa.table(
        {
            "user_id": users.cast(pa.string()),
            "rank": pa.array(rank.astype(np.int32)),
            "item_id": items,
            "score": pa.array(weights.astype(np.float64)),
            "model_version": pa.nulls(n, pa.int64()),
            "strategy": pa.repeat(pa.scalar(strategy), n),
        }
    )
