"""Masked top-K over a score matrix, one matrix product per batch of users (no per-user Python loop)."""

from __future__ import annotations

import torch
from torch import Tensor

PAD = -1


def masked_topk(
    scores: Tensor, k: int, exclude: Tensor | None = None, blocked: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Top-k (values, item rows) per row of `scores` [B, I].

    `exclude` [B, S] holds item rows to leave out per user (PAD-padded); `blocked` [I] is a bool mask
    of items nobody gets. Left-out items come back as -inf; callers drop those (a user who has seen
    almost everything gets fewer than k). k larger than the catalog is cut to the catalog.
    """
    n_items = scores.shape[1]
    scores = scores.clone()
    if blocked is not None and bool(blocked.any()):
        scores[:, blocked.to(scores.device)] = float("-inf")
    if exclude is not None and exclude.numel():
        exclude = exclude.to(scores.device)
        # PAD goes to an extra column that is cut off again.
        padded = torch.cat([scores, scores.new_full((len(scores), 1), float("-inf"))], dim=1)
        padded.scatter_(1, torch.where(exclude < 0, n_items, exclude), float("-inf"))
        scores = padded[:, :n_items]
    return torch.topk(scores, min(k, n_items), dim=1)
