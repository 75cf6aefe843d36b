"""The one place `reco serve` ranks a user's list: the version's ranker (recocli.recommend.ranker,
the function `reco recommend` ranks with: model + decayed popularity + fallback + masks), applied to
the users' newest interactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from lakehouse.catalog import Warehouse
from lakehouse.schemas import MODEL, POPULAR
from recocli.config import RecommendSettings
from recocli.models.store import ModelVersion
from recocli.recommend.history import seen_items
from recocli.recommend.ranker import Ranker
from recocli.recommend.run import blocked_mask


@dataclass(frozen=True)
class Ranked:
    strategy: str  # model | popular
    model_version: int | None  # None for the popular list (as in gold/recommendations)
    items: list[tuple[str, float]]  # (item_id, score), best first


class Ranking:
    """A model version's ranker (or none yet) with the blocklist of one bronze snapshot."""

    def __init__(
        self, loaded: ModelVersion | None, blocked: torch.Tensor | None, cfg: RecommendSettings
    ) -> None:
        self.loaded, self.blocked, self.cfg = loaded, blocked, cfg
        self.ranker = None if loaded is None else Ranker.of(loaded)

    @property
    def model_version(self) -> int | None:
        return None if self.loaded is None else self.loaded.version

    @classmethod
    def build(cls, warehouse: Warehouse, loaded: ModelVersion | None, cfg: RecommendSettings) -> Ranking:
        """As `reco recommend` sets up a run: the ranker and the blocked items."""
        blocked = None
        if loaded is not None:
            item_ids = pa.array(loaded.vocabs.items.ids(range(len(loaded.vocabs.items))), pa.string())
            blocked = blocked_mask(warehouse, item_ids)
        return cls(loaded, blocked, cfg)

    def rank(self, users: list[str], interactions: pa.Table, k: int) -> list[Ranked]:
        """Top `k` for each of `users` (distinct) from `interactions` (their rows, oldest first within
        each user), in one batched matrix product as `reco recommend` ranks: the ranker's list, marked
        popular for users the version does not know (no list before the first version)."""
        if self.ranker is None or self.loaded is None:
            return [Ranked(POPULAR, None, []) for _ in users]
        vocabs = self.loaded.vocabs
        exclude = seen_items(interactions, users, vocabs.items) if self.cfg.exclude_seen else None
        values, rows, known = self.ranker.top_k(users, interactions, k, exclude, self.blocked)
        values, rows = values.numpy(), rows.numpy()
        out = []
        for n in range(len(users)):
            keep = np.isfinite(values[n])
            items = list(zip(vocabs.items.ids(rows[n][keep]), values[n][keep].tolist(), strict=True))
            model = bool(known[n])
            out.append(Ranked(MODEL if model else POPULAR, self.loaded.version if model else None, items))
        return out
