"""Masked top-K over a score matrix, one batch of users at a time (no per-user Python loop)."""

from __future__ import annotations

import torch
from torch import Tensor

from recocli.models.padded import fill_padded_


def masked_topk(
    scores: Tensor, k: int, exclude: Tensor | None = None, blocked: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Top-k (values, item rows) per row of `scores` [B, I], which is masked in place (callers hand
    over scores of their own: a [B, I] copy per batch is what made recommending slow).

    `exclude` [B, S] holds item rows to leave out per user (PAD-padded); `blocked` [I] is a bool mask
    of items nobody gets. Left-out items come back as -inf; callers drop those (a user who has seen
    almost everything gets fewer than k). k larger than the catalog is cut to the catalog.
    """
    if blocked is not None:
        scores[:, blocked.to(scores.device)] = float("-inf")
    if exclude is not None:
        fill_padded_(scores, exclude, float("-inf"))
    return torch.topk(scores, min(k, scores.shape[1]), dim=1)
