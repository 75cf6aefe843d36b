"""The one place `reco serve` ranks a user's list: the functions `reco recommend` scores with
(recocli.recommend.history.score_users and seen_items, recocli.recommend.topk.masked_topk, the
popularity fallback of recocli.recommend.popular), applied to one user's interactions.

When recocli.recommend.ranker's Ranker (model + recency prior + fallback) lands, it replaces the
body of `Ranking.rank` and `Ranking.build` here; nothing else in recocli.serve scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lakehouse.catalog import Warehouse
from recocli.config import RecommendSettings
from recocli.models.store import ModelVersion
from recocli.recommend.history import score_users, seen_items
from recocli.recommend.popular import popular_items
from recocli.recommend.run import MODEL, POPULAR, blocked_mask
from recocli.recommend.topk import masked_topk


@dataclass(frozen=True)
class Ranked:
    strategy: str  # model | popular
    model_version: int | None  # None for the popular list (as in gold/recommendations)
    items: list[tuple[str, float]]  # (item_id, score), best first


class Ranking:
    """A model version (or none yet) with the blocklist and the popular list of one bronze snapshot."""

    def __init__(
        self,
        loaded: ModelVersion | None,
        popular: list[tuple[str, float]],
        blocked: torch.Tensor | None,
        cfg: RecommendSettings,
    ) -> None:
        self.loaded, self.popular, self.blocked, self.cfg = loaded, popular, blocked, cfg

    @property
    def model_version(self) -> int | None:
        return None if self.loaded is None else self.loaded.version

    @classmethod
    def build(
        cls, warehouse: Warehouse, loaded: ModelVersion | None, interactions: pa.Table, cfg: RecommendSettings
    ) -> Ranking:
        """As `reco recommend` sets up a run: blocked items, and the popular list (less blocked items)."""
        banned: set[str] = set()
        blocked = None
        if loaded is not None:
            item_ids = pa.array(loaded.vocabs.items.ids(range(len(loaded.vocabs.items))), pa.string())
            blocked = blocked_mask(warehouse, item_ids)
            banned = set(item_ids.filter(pa.array(blocked.numpy())).to_pylist())
        ranked, weights = popular_items(interactions, cfg.popular_window)
        popular = [(i, float(w)) for i, w in zip(ranked, weights, strict=True) if i not in banned]
        return cls(loaded, popular, blocked, cfg)

    def rank(self, users: list[str], interactions: pa.Table, k: int) -> list[Ranked]:
        """Top `k` for each of `users` (distinct) from `interactions` (their rows, oldest first within
        each user), in one batched matrix product as `reco recommend` scores: the model's list when it
        knows anything of the user, else the popular items the user has not seen."""
        out: dict[str, Ranked] = {}
        if self.loaded is not None:
            model, vocabs = self.loaded.model, self.loaded.vocabs
            scores, has_signal = score_users(model, vocabs, interactions, users)
            exclude = seen_items(interactions, users, vocabs.items) if self.cfg.exclude_seen else None
            values, rows = masked_topk(scores, k, exclude, self.blocked)
            values, rows = values.numpy(), rows.numpy()
            for n, user in enumerate(users):
                if bool(has_signal[n]):
                    keep = np.isfinite(values[n])
                    ids = vocabs.items.ids(rows[n][keep])
                    out[user] = Ranked(
                        MODEL, self.loaded.version, list(zip(ids, values[n][keep].tolist(), strict=True))
                    )
        cold = [user for user in users if user not in out]
        if cold:
            seen: dict[str, set[str]] = {user: set() for user in cold}
            if self.cfg.exclude_seen:
                mine = interactions.filter(pc.is_in(interactions["user_id"], pa.array(cold, pa.string())))
                for user, item in zip(mine["user_id"].to_pylist(), mine["item_id"].to_pylist(), strict=True):
                    seen[user].add(item)
            for user in cold:
                items = [(item, weight) for item, weight in self.popular if item not in seen[user]][:k]
                out[user] = Ranked(POPULAR, None, items)
        return [out[user] for user in users]
