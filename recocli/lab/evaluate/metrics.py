"""Metrics of `reco evaluate` beyond the ranking ones (recocli.metrics): per-user metrics of a
batch of scores with each user's top list, coverage, rating errors and means over users.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from recocli.metrics import mask_scores, positions, ranking_metrics
from recocli.models.padded import PAD
from recocli.recommend.topk import masked_topk


def coverage(top_items: np.ndarray, n_items: int) -> float:
    """Share of the catalog's `n_items` that appear in at least one list (`top_items`, -1 = none)."""
    if n_items <= 0:
        return 0.0
    items = np.unique(np.asarray(top_items).reshape(-1))
    return float(np.count_nonzero((items >= 0) & (items < n_items)) / n_items)


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    return float(np.sqrt(np.mean((predicted - actual) ** 2))) if len(actual) else math.nan


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    return float(np.mean(np.abs(predicted - actual))) if len(actual) else math.nan


def mean(values: np.ndarray) -> float | None:
    """Mean over the users that have a value (None when none has)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def padded(groups: list[np.ndarray] | list[list[int]]) -> Tensor:
    """[B, max len] int64 of ragged row lists, PAD-padded (at least one column)."""
    width = max([len(g) for g in groups] + [1])
    out = np.full((len(groups), width), PAD, dtype=np.int64)
    for n, group in enumerate(groups):
        out[n, : len(group)] = group
    return torch.from_numpy(out)


def evaluate_scores(
    scores: Tensor,
    relevant: Tensor,
    exclude: Tensor | None,
    ks: tuple[int, ...],
    n_relevant: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user metrics of full-catalog `scores` [B, I] against `relevant` [B, R], the items in
    `exclude` [B, S] left out (relevant ones never are), and each user's top max(ks) item rows
    (-1 where fewer candidates remain), for coverage."""
    if n_relevant is None:
        n_relevant = (relevant != PAD).sum(dim=1).numpy()
    masked = mask_scores(scores, exclude, keep=relevant)
    greater, ties = positions(masked, relevant)
    per_user = ranking_metrics(greater.numpy(), ties.numpy(), ks, n_relevant)
    values, rows = masked_topk(masked, max(ks))
    top = torch.where(torch.isfinite(values), rows, PAD).numpy()
    return per_user, top
