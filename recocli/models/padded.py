"""Ragged per-user item rows as padded matrices, and masking scores through them.

Every ragged row set (a user's latest history, everything they have seen) is a [users, width]
int64 matrix padded with PAD, so whole batches go through NumPy and torch without per-user loops.
Histories are left-padded (oldest first, the newest item always in the last column); sets of
items are right-padded.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

PAD = -1


def rank_from_end(groups: np.ndarray) -> np.ndarray:
    """For an array sorted by group: 0 for the last element of each group, 1 for the one before…"""
    n = len(groups)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(np.r_[groups[1:] != groups[:-1], True])
    group_end = np.repeat(ends, np.diff(np.r_[-1, ends]))
    return group_end - np.arange(n)


def latest_padded(
    groups: np.ndarray, values: np.ndarray, n_groups: int, width: int, fill: int | float = PAD
) -> np.ndarray:
    """[n_groups, width]: each group's latest `width` values, oldest first, left-padded with `fill`.

    `groups` (rows 0..n_groups-1) sorted, and in time order within each group; `values` alongside.
    """
    out = np.full((n_groups, width), fill, dtype=values.dtype)
    back = rank_from_end(groups)
    keep = back < width
    out[groups[keep], width - 1 - back[keep]] = values[keep]
    return out


def padded_sets(groups: np.ndarray, items: np.ndarray, n_groups: int, min_width: int = 0) -> np.ndarray:
    """[n_groups, S]: each group's items in the order given, right-padded with PAD to the longest
    group (at least `min_width`). `groups` in any order; duplicates are kept."""
    counts = np.bincount(groups, minlength=n_groups) if len(groups) else np.zeros(n_groups, np.int64)
    out = np.full((n_groups, max(int(counts.max(initial=0)), min_width)), PAD, dtype=np.int64)
    order = np.argsort(groups, kind="stable")
    groups, items = groups[order], items[order]
    col = np.arange(len(groups)) - (np.cumsum(counts) - counts)[groups]
    out[groups, col] = items
    return out


def fill_padded_(scores: Tensor, index: Tensor, value: float, keep: Tensor | None = None) -> Tensor:
    """In place: scores[b, index[b, j]] = value for every item row in `index` [B, S] (PAD skipped),
    except the rows in `keep` [B, R] (PAD or outside the catalog skipped), which keep their score.
    Indexes the entries directly, so no copy of the [B, I] matrix is made. Returns `scores`."""
    n_items = scores.shape[1]
    kept = None
    if keep is not None and keep.numel():
        keep = keep.to(scores.device)
        b_keep, j_keep = torch.nonzero((keep >= 0) & (keep < n_items), as_tuple=True)
        kept = (b_keep, keep[b_keep, j_keep])
        kept_values = scores[kept]
    if index is not None and index.numel():
        index = index.to(scores.device)
        b, j = torch.nonzero(index >= 0, as_tuple=True)
        scores[b, index[b, j]] = value
    if kept is not None:
        scores[kept] = kept_values
    return scores
