"""Ranking metrics over full-catalog scores, exact under ties: the one definition that early stopping
(validation HR@10/NDCG@10 in training) and `reco evaluate` both use.

A model that gives several items the same score has not ranked them, so ties are broken at random
and every metric is its exact expectation over that draw (McSherry & Najork, ECIR 2008): an item
with `greater` candidates scoring strictly higher and `ties` others scoring the same sits at
position greater + j, j uniform on 0 … ties. So a scorer that gives every item the same score scores
exactly what a random ranking would — chance level — rather than 1.0 (optimistic ties) or 0.0
(pessimistic ties).

Conventions: positions count from 0; a relevant item at position p adds 1/log2(p + 2) to DCG@K
when p < K; IDCG@K counts min(#relevant, K) items; Recall@K = hits / min(#relevant, K); MRR is the
reciprocal rank of the best-ranked relevant item (no cut-off). Items masked out (seen, unknown:
score -inf) are no candidates; a relevant item without a finite score — a new item no model knows
— is a miss but still counts in #relevant. Users without relevant items get NaN (left out of means).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from recocli.models.padded import fill_padded_


def mask_scores(scores: Tensor, exclude: Tensor | None, keep: Tensor | None = None) -> Tensor:
    """A copy of `scores` [B, I] with the item rows in `exclude` [B, S] (PAD-padded) set to -inf,
    except those in `keep` [B, R] (the relevant items: a user's test item is never masked out)."""
    return fill_padded_(scores.float().clone(), exclude, float("-inf"), keep)


def positions(scores: Tensor, relevant: Tensor) -> tuple[Tensor, Tensor]:
    """For each relevant item row [B, R] (PAD = none): how many candidates score strictly higher
    (`greater`) and how many other candidates score the same (`ties`). Its position under random
    tie-breaking is uniform on greater … greater + ties. A relevant item that is PAD, outside the
    catalog or without a finite score gets greater = -1 (a miss)."""
    scores = scores.float()
    scores = torch.where(torch.isnan(scores), float("-inf"), scores)
    n_items = scores.shape[1]
    valid = (relevant >= 0) & (relevant < n_items)
    rel_scores = scores.gather(1, torch.where(valid, relevant, 0))
    valid &= torch.isfinite(rel_scores)
    ordered, _ = torch.sort(scores, dim=1)  # ascending; -inf (no candidate) first, never counted
    above = n_items - torch.searchsorted(ordered, rel_scores.contiguous(), right=True)
    at_least = n_items - torch.searchsorted(ordered, rel_scores.contiguous(), right=False)
    greater = torch.where(valid, above, -1)
    ties = torch.where(valid, at_least - above - 1, 0)
    return greater, ties


def _cumulative(values: np.ndarray) -> np.ndarray:
    return np.r_[0.0, np.cumsum(values)]


def _discounts(n: int) -> np.ndarray:
    """C[m] = Σ_{p<m} 1/log2(p+2), m = 0..n."""
    return _cumulative(1.0 / np.log2(np.arange(n) + 2.0))


def _log_choose(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    n, k = torch.from_numpy(np.asarray(n, np.float64)), torch.from_numpy(np.asarray(k, np.float64))
    return (torch.lgamma(n + 1) - torch.lgamma(k + 1) - torch.lgamma(n - k + 1)).numpy()


def ranking_metrics(
    greater: Tensor | np.ndarray,
    ties: Tensor | np.ndarray,
    ks: tuple[int, ...] = (10, 20),
    n_relevant: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-user HR@K, NDCG@K, Recall@K and MRR (exact expectations under random tie-breaking).

    `greater`/`ties` [B, R] from `positions` (greater < 0: a miss or no item); `n_relevant` [B]:
    how many relevant items each user has, missing ones included (default: the valid entries).
    """
    greater = np.asarray(greater, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    found = greater >= 0
    if n_relevant is None:
        n_relevant = found.sum(axis=1)
    n_relevant = np.asarray(n_relevant, dtype=np.int64)
    has = n_relevant > 0
    g = np.where(found, greater, 0)
    last = g + ties  # last possible position
    width = ties + 1.0
    out: dict[str, np.ndarray] = {}
    top = int(max(ks)) + 1
    disc = _discounts(top)
    for k in ks:
        lo, hi = np.minimum(g, k), np.minimum(last + 1, k)  # positions [lo, hi) fall inside the top k
        hits = np.where(found, (hi - lo) / width, 0.0)
        dcg = np.where(found, (disc[hi] - disc[lo]) / width, 0.0).sum(axis=1)
        idcg = disc[np.minimum(n_relevant, k)]
        out[f"ndcg@{k}"] = np.where(has, dcg / np.where(has, idcg, 1.0), np.nan)
        out[f"recall@{k}"] = np.where(
            has, hits.sum(axis=1) / np.maximum(np.minimum(n_relevant, k), 1), np.nan
        )
        out[f"hr@{k}"] = np.where(has, _hit_rate(found, g, last, k), np.nan)
    # MRR of the best-placed relevant item (exact when it shares its tie block with no other).
    best = np.where(found, g, np.iinfo(np.int64).max).argmin(axis=1) if g.size else np.zeros(0, np.int64)
    rows = np.arange(len(g))
    any_found = found.any(axis=1) if g.size else np.zeros(len(g), bool)
    if g.size:
        bg, bt = g[rows, best], ties[rows, best]
        harmonic = _cumulative(1.0 / np.arange(1, int((bg + bt).max(initial=0)) + 2))
        rr = np.where(any_found, (harmonic[bg + bt + 1] - harmonic[bg]) / (bt + 1.0), 0.0)
    else:
        rr = np.zeros(len(g))
    out["mrr"] = np.where(has, rr, np.nan)
    return out


def _hit_rate(found: np.ndarray, g: np.ndarray, last: np.ndarray, k: int) -> np.ndarray:
    """P(at least one relevant item lands in the top k). Only one tie block can straddle position k;
    its r relevant items among m tied ones get k - start of the block's slots at random."""
    sure = (found & (last < k)).any(axis=1)
    straddle = found & (g < k) & (last >= k)
    r = straddle.sum(axis=1)
    rows = straddle.any(axis=1) & ~sure
    start = np.where(straddle, g, 0).max(axis=1)
    m = np.where(straddle, last - g + 1, 0).max(axis=1)
    slots = k - start
    p_none = np.ones(len(g))
    idx = np.flatnonzero(rows)
    if len(idx):
        n, rr, s = m[idx].astype(float), r[idx].astype(float), slots[idx].astype(float)
        ok = n - rr >= s
        log_p = np.where(ok, _log_choose(n - rr, np.minimum(s, n - rr)) - _log_choose(n, s), -np.inf)
        p_none[idx] = np.exp(log_p)
    return np.where(sure, 1.0, np.where(rows, 1.0 - p_none, 0.0))


def hit_and_ndcg(scores: Tensor, targets: Tensor, seen: Tensor | None, k: int = 10) -> tuple[Tensor, Tensor]:
    """Per row: the expected HR@k and NDCG@k of one held-out item `targets` [B] in `scores` [B, I],
    the items in `seen` [B, S] (PAD-padded) masked out but never the target: the validation metric
    of training, the same figures `reco evaluate` reports for one relevant item per user."""
    relevant = targets[:, None]
    greater, ties = positions(mask_scores(scores, seen, keep=relevant), relevant)
    per_row = ranking_metrics(greater.cpu(), ties.cpu(), (k,), n_relevant=np.ones(len(targets), np.int64))
    hit, ndcg = per_row[f"hr@{k}"], per_row[f"ndcg@{k}"]
    return (
        torch.from_numpy(hit).to(scores.device, torch.float32),
        torch.from_numpy(ndcg).to(scores.device, torch.float32),
    )
