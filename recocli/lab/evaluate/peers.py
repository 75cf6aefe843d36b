"""The simple peers every model must beat, and the glue that puts any scorer on one catalog.

Popularity ranks items by summed positive weight (all history, or a trailing window of event
time, as `reco recommend`'s fallback does); decayed popularity weighs each positive down by its age
at a half-life (the peers of issue 18, 1 day to all time). Neither has user state, so every user
gets the same scores. Model scores come in a model's own vocabulary rows and are moved onto the
evaluation's common catalog, items the model does not know getting -inf (no candidate for it).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from recocli.models.prior import RecencyPrior, half_life_name
from recocli.models.vocab import Vocabulary
from recocli.recommend.popular import popular_items

PEER_HALF_LIVES_D = (1, 7, 30, 90, 365, math.inf)


def catalog_ids(catalog: Vocabulary) -> pa.Array:
    return pa.array(catalog.ids(range(len(catalog))), pa.string())


def popularity(interactions: pa.Table, catalog: Vocabulary, window_s: float | None = None) -> Tensor:
    """[len(catalog)] summed positive weight per item (in the trailing `window_s` of event time
    before the newest interaction, or all of it); items without any get 0 (they tie)."""
    if interactions.num_rows == 0:
        return torch.zeros(len(catalog))
    span_s = float(window_s) if window_s is not None else None
    if span_s is None:
        ts = interactions["ts"].cast(pa.int64())
        span_s = (pc.max(ts).as_py() - pc.min(ts).as_py()) / 1e6 + 1.0
    ids, weights = popular_items(interactions, span_s)
    out = torch.zeros(len(catalog), dtype=torch.float64)
    rows = catalog.rows(pa.array(ids, pa.string()))
    known = rows >= 0
    out[torch.from_numpy(rows[known])] = torch.from_numpy(np.asarray(weights, dtype=np.float64)[known])
    return out.float()


def decayed_popularity(history: pa.Table, items: Vocabulary, start_us: int) -> dict[str, Tensor]:
    """[1, len(items)] log P_recent per peer half-life ("popularity 7d", …), positives counted up to
    `start_us`; the scoring removes each user's seen items."""
    return decayed_counts(history.filter(pc.equal(history["label"], 1)), items, start_us)


def decayed_counts(counted: pa.Table, items: Vocabulary, start_us: int) -> dict[str, Tensor]:
    """The same of every row of `counted` (interactions, each with its weight), whatever its label."""
    rows, ts = items.rows(counted["item_id"]), counted["ts"].cast(pa.int64()).to_numpy()
    weights = counted["weight"].to_numpy()
    out = {}
    for days in PEER_HALF_LIVES_D:
        prior = RecencyPrior(len(items), days * 86400)
        prior.update(rows, ts, weights)
        prior.advance(start_us)
        out[f"popularity {half_life_name(days * 86400)}"] = prior.log_prob(len(items))[None, :]
    return out


def over_best_popularity(models: dict[str, dict], names: list[str], k: int = 10) -> dict[str, float | None]:
    """NDCG@k of each of `names` over the best decayed popularity in hindsight, for all users, warm
    users and cold users apart."""
    peers = [n for n in models if n.startswith("popularity ")]
    out: dict[str, float | None] = {}
    for group in ("", "warm_", "cold_"):
        key = f"{group}ndcg@{k}"
        best = max((models[p].get(key) or 0.0 for p in peers), default=0.0)
        for name in names:
            out[f"{group}{name}/best popularity"] = ratio(models.get(name, {}).get(key), best)
    return out


def ratio(value: float | None, base: float | None) -> float | None:
    """`value` over `base` to three decimals; None where either is missing or zero."""
    return round(value / base, 3) if value and base else None


def to_catalog(scores: Tensor, index: np.ndarray) -> Tensor:
    """Scores in a model's rows [B, I_model] → the catalog's rows [B, I_cat]; `index[c]` is the model
    row of catalog item c (-1: unknown to the model → -inf)."""
    index_t = torch.from_numpy(np.asarray(index, dtype=np.int64))
    out = scores[:, index_t.clamp_min(0)].float()
    if bool((index_t < 0).any()):
        out[:, index_t < 0] = float("-inf")
    return out
