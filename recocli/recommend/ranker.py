"""The ranker: the one function that decides every list a user sees or an evaluation scores.

A model version's scores blended with time-decayed popularity (recocli.models.prior) as a product
of experts, log_softmax(model scores) + weight · (log P_recent(item) − age weight · log(1 + the
item's age in days)); users the model knows nothing about get a popularity alone (its half-life
and age weight chosen on such users), and at weight inf (chosen when popularity wins on the newest
data: the simplest thing that wins) the others get the blend's popularity alone. Then the masks:
items the user has seen, the blocklist.
`reco recommend`, the demo, every `reco evaluate` protocol and the benches rank through `Ranker`.

Training keeps it current: `choose` scores each new batch with every (half-life, weight, age
weight) before anything learns from it (predict, then update) and keeps the best; `observe` adds
the batch to the decayed counts and the items' first event times in O(batch). All of it is saved
with the model version in the registry.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from lakehouse.errors import RecoError
from recocli.config import RankSettings
from recocli.models.base import Recommender
from recocli.models.padded import PAD
from recocli.models.prior import RankerState, best_setting, half_life_name, pair_name, rank_scores
from recocli.models.store import ModelVersion
from recocli.models.vocab import Vocabs
from recocli.recommend.history import score_users
from recocli.recommend.topk import masked_topk
from recocli.training.interactions import Interactions, as_compact

K = 10  # choices are made on NDCG@10
# Each choice pools the figures of earlier batches at this weight per batch since: the newest batch
# weighs most, and a micro-batch of a few users does not flip the choice on its own.
CHOICE_MEMORY = 0.5


def rank_grid(cfg: RankSettings) -> tuple[list[float], list[float], list[float]]:
    """The half-lives (seconds; inf = no decay), weights (inf = popularity alone) and age weights to
    choose among."""
    return [float(h) for h in cfg.half_lives], [float(w) for w in cfg.weights], list(cfg.age_weights)


def stable_order(users: list[str]) -> list[str]:
    """Users by a stable hash of their id: a fair sample when only the first few are scored."""
    return sorted(users, key=lambda u: hashlib.blake2b(u.encode(), digest_size=8).digest())


class Ranker:
    """A model version and its ranker state: scores, lists, and the per-batch updates."""

    def __init__(self, model: Recommender, vocabs: Vocabs, state: RankerState) -> None:
        self.model, self.vocabs, self.state = model, vocabs, state

    @classmethod
    def of(cls, version: ModelVersion) -> Ranker:
        if version.ranker is None:
            raise RecoError(
                f"model version {version.version} has no ranker (published before rankers): "
                "retrain with `reco train --full`"
            )
        return cls(version.model, version.vocabs, version.ranker)

    @classmethod
    def new(cls, model: Recommender, vocabs: Vocabs, cfg: RankSettings) -> Ranker:
        return cls(model, vocabs, RankerState.new(*rank_grid(cfg)))

    # ---- ranking ----

    def scores(self, users: list[str], interactions: pa.Table | None = None) -> tuple[Tensor, Tensor]:
        """Scores [B, model items] and whether the version ranks each user as one it knows (False:
        the popularity fallback of unknown users; a known user at weight inf gets the blend's
        popularity alone, as the version's choice). Histories come from `interactions` (every event
        so far, read at serving time), or else from what the model remembers."""
        raw, has = self.model_scores(users, interactions)
        return self.blended(raw, has, self.state.weight)[0], has

    def top_k(
        self,
        users: list[str],
        interactions: pa.Table | None,
        k: int,
        exclude: Tensor | None = None,
        blocked: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(values, item rows) [B, k] best first, less `exclude` [B, S] (PAD-padded item rows each
        user has seen) and `blocked` [items]; and whether each user is one the version knows."""
        scores, personal = self.scores(users, interactions)
        values, rows = masked_topk(scores, k, exclude, blocked)
        return values, rows, personal

    def model_scores(self, users: list[str], interactions: pa.Table | None) -> tuple[Tensor, Tensor]:
        """The model's raw scores [B, items] and whether it knows anything of each user."""
        if interactions is not None:
            return score_users(self.model, self.vocabs, interactions, users)
        rows = self.vocabs.users.rows(users)
        known = torch.from_numpy(rows >= 0)
        user_rows = torch.from_numpy(np.where(rows >= 0, rows, 0))
        scores = self.model.score(user_rows=user_rows)
        if self.model.kind == "sasrec":
            known &= (self.model.history(user_rows) != PAD).any(dim=1).cpu()
        return scores, known

    def blended(self, raw: Tensor, has: Tensor, weight: float) -> tuple[Tensor, Tensor]:
        """`model_scores` blended at `weight` (ablations; serving uses the chosen one) with the
        chosen popularity (half-life and age weight; rows the model does not know get theirs alone);
        and whether each row is personal (False for everyone at weight inf)."""
        n, state = raw.shape[1], self.state
        cold_prior = None if bool(has.all()) else state.cold_log_prior(n)
        scores = rank_scores(raw, state.log_prior(n), weight, has, cold_prior=cold_prior)
        return scores, torch.zeros_like(has) if math.isinf(weight) else has

    # ---- learning ----

    def observe(self, rows: Interactions) -> None:
        """Add the positives of `rows` to every half-life's decayed counts, and the first event
        times of items new to it (O(rows))."""
        data = as_compact(rows)
        item_rows = self.vocabs.items.rows(data.item_ids)
        every = item_rows[data.rows.items]
        self.state.saw(every[every >= 0], data.rows.ts[every >= 0])
        pos = data.rows.positives()
        items = item_rows[pos.items]
        known = items >= 0
        ts = pos.ts[known]
        weights = pos.weights.astype(np.float64)[known]
        for prior in self.state.priors.values():
            prior.grow(len(self.vocabs.items))
            prior.update(items[known], ts, weights)

    def choose(self, rows: pa.Table, max_users: int) -> None:
        """Score `rows` (not learned yet by the model nor the counts) with every blend: NDCG@10 of
        each user's list against the items they took in `rows` and had not taken before. Every user
        chooses the (half-life, weight, age weight), those the model does not know on the blend's
        popularity (more users, a steadier choice: choosing on known users alone served them worse
        on ml-100k); those users alone also choose the (half-life, age weight) of the popularity they
        get. Each pools with earlier figures (CHOICE_MEMORY) and keeps the best; without unknown
        users in `rows`, their choice stays."""
        batch = choice_targets(self, rows, max_users)
        if batch is None:
            return
        users, exclude, relevant, n_relevant = batch
        raw, has = self.model_scores(users, None)
        warm, cold = has.nonzero().flatten(), (~has).nonzero().flatten()
        warm_targets = exclude[warm], relevant[warm], n_relevant[warm.numpy()]
        cold_targets = exclude[cold], relevant[cold], n_relevant[cold.numpy()]
        log_p = torch.log_softmax(raw[warm].float(), dim=1)  # once for the whole grid
        blends: dict[tuple[float, ...], float] = {}
        alone: dict[tuple[float, ...], float] = {}
        for h in self.state.priors:
            for b in self.state.age_weights:
                log_prior = self.state.log_prior(raw.shape[1], h, b)
                # Unknown users get this popularity alone at every weight: scored once per (h, b).
                cold_sum = ndcg_sum(log_prior.repeat(len(cold), 1), *cold_targets)
                if len(cold):
                    alone[(h, b)] = cold_sum
                for w in self.state.weights:
                    scores = rank_scores(log_p, log_prior, w, has[warm], normalized=True)
                    blends[(h, w, b)] = ndcg_sum(scores, *warm_targets) + cold_sum
        state, on = self.state, dict(self.state.chosen_on)  # keeps the unknown users' figure
        state.figures, best, on["ndcg@10"] = pool(state.figures, blends, len(users), pair_name)
        state.half_life_s, state.weight, state.age_weight = best
        if alone:
            figures, best, on["cold_ndcg@10"] = pool(state.cold_figures, alone, len(cold), cold_name)
            state.cold_figures, (state.cold_half_life_s, state.cold_age_weight) = figures, best
        ts = rows["ts"].cast(pa.int64())
        state.chosen_on = on | {
            "users": len(users),
            "warm_users": int(has.sum()),
            "rows": rows.num_rows,
            "from_us": pc.min(ts).as_py(),
            "to_us": pc.max(ts).as_py(),
        }


def cold_name(half_life_s: float, age_weight: float) -> str:
    """A popularity alone: '365d', or '365d/age0.25' with an age weight."""
    return f"{half_life_name(half_life_s)}/age{age_weight:g}" if age_weight else half_life_name(half_life_s)


def ndcg_sum(scores: Tensor, exclude: Tensor, relevant: Tensor, n_relevant: np.ndarray) -> float:
    """The summed NDCG@10 of the lists `scores` [B, items] make, less `exclude` (0 for no rows)."""
    if not len(scores):
        return 0.0
    return float(ndcg_at(masked_topk(scores, K, exclude)[1], relevant, n_relevant).sum())


def pool(
    old: dict[str, dict[str, float]],
    sums: dict[tuple[float, ...], float],
    users: int,
    name: Callable[..., str],
) -> tuple[dict[str, dict[str, float]], tuple[float, ...], float]:
    """Each setting's NDCG@10 summed over `users` pooled with its `old` figure (by `name`), the old
    users weighing CHOICE_MEMORY each: (the new figures, the best setting, its figure)."""
    pooled = {}
    for setting, total in sums.items():
        was = old.get(name(*setting), {"ndcg@10": 0.0, "users": 0.0})
        weight = was["users"] * CHOICE_MEMORY
        pooled[setting] = ((was["ndcg@10"] * weight + total) / (weight + users), weight + users)
    best = best_setting({s: q for s, (q, _) in pooled.items()})
    figures = {name(*s): {"ndcg@10": round(q, 5), "users": round(n, 2)} for s, (q, n) in pooled.items()}
    return figures, best, round(pooled[best][0], 5)


def choice_targets(
    ranker: Ranker, rows: pa.Table, max_users: int
) -> tuple[list[str], Tensor, Tensor, np.ndarray] | None:
    """(users, seen item rows [B, S], relevant item rows [B, R] (-1: padding or an item the model
    lacks), counts of relevant) for the users with a positive in `rows` on an item they had not
    taken before (the model's remembered history); None when there is none."""
    pos = rows.filter(pc.equal(rows["label"], 1))
    users = stable_order(sorted(set(pos["user_id"].to_pylist())))[:max_users]
    if not users:
        return None
    user_rows = ranker.vocabs.users.rows(users)
    seen = ranker.model.history(torch.from_numpy(np.where(user_rows >= 0, user_rows, 0))).cpu()
    seen[torch.from_numpy(user_rows < 0)] = PAD
    slot = {u: n for n, u in enumerate(users)}
    wanted: list[dict[str, int]] = [{} for _ in users]
    seen_sets = [set(r[r >= 0].tolist()) for r in seen.numpy()]
    items = ranker.vocabs.items.rows(pos["item_id"])
    pairs = zip(pos["user_id"].to_pylist(), pos["item_id"].to_pylist(), items, strict=True)
    for user, item_id, item in pairs:
        s = slot.get(user)
        if s is not None and int(item) not in seen_sets[s]:
            wanted[s].setdefault(item_id, int(item))
    keep = [n for n, w in enumerate(wanted) if w]
    if not keep:
        return None
    width = max(len(wanted[n]) for n in keep)
    relevant = torch.full((len(keep), width), -1, dtype=torch.long)
    for row, n in enumerate(keep):
        relevant[row, : len(wanted[n])] = torch.tensor(list(wanted[n].values()))
    n_relevant = np.array([len(wanted[n]) for n in keep])
    return [users[n] for n in keep], seen[keep], relevant, n_relevant


def ndcg_at(top_rows: Tensor, relevant: Tensor, n_relevant: np.ndarray) -> np.ndarray:
    """NDCG of each list `top_rows` [B, k] against `relevant` [B, R] (-1: never a hit), binary gains."""
    k = top_rows.shape[1]
    hits = (top_rows[:, :, None] == relevant[:, None, :]).any(dim=2).numpy()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
    return (hits * discounts).sum(axis=1) / ideal
