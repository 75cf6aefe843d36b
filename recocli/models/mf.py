"""Matrix factorisation: score(u, i) = p_u · q_i + b_u + b_i + b, the classic baseline.

Trained pointwise with binary cross-entropy: positives (label 1, weighted by event type), explicit
negatives from dislike / dismiss / low ratings (label 0, weighted), and `negatives` uniformly
sampled items per positive (model.mf.loss = "bce") (label 0) standing in for everything the user did not pick.
With model.mf.loss = "softmax" (the default) it learns instead as sasrec does: each positive against the whole
catalog (full softmax cross-entropy), explicit negatives unused.

With model.mf.history = N > 0 the user's vector is p_u + the mean context vector c_j of their N
latest positives before the scored event (Koren's SVD++, over recent items only): p_u is learned
from the past, while the history is read when scoring, so an item taken after the last fine-tune
already moves the user, as with sasrec.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recocli.config import MFSettings
from recocli.models.base import INIT_STD, Recommender, fold_in_rows
from recocli.models.padded import PAD


class MF(Recommender):
    kind = "mf"

    def __init__(self, n_users: int, n_items: int, cfg: MFSettings) -> None:
        super().__init__(n_users, cfg)
        d = cfg.dim
        self.user_vec = nn.Parameter(torch.randn(n_users, d) * INIT_STD)  # [U, d]
        self.item_vec = nn.Parameter(torch.randn(n_items, d) * INIT_STD)  # [I, d]
        self.user_bias = nn.Parameter(torch.zeros(n_users))  # [U]
        self.item_bias = nn.Parameter(torch.zeros(n_items))  # [I]
        self.bias = nn.Parameter(torch.zeros(1))
        self.history_len = min(cfg.history, cfg.max_len)
        if self.history_len:
            self.context_vec = nn.Parameter(torch.randn(n_items, d) * INIT_STD)  # [I, d]

    @property
    def n_items(self) -> int:
        return self.item_vec.shape[0]

    @property
    def reads_histories(self) -> bool:
        return self.history_len > 0

    def user_vectors(self, users: Tensor, histories: Tensor | None = None) -> Tensor:
        """[B, d]: p_u, plus the mean context vector of the latest `history_len` items of
        `histories` [B, L] (PAD-left-padded; the remembered histories when None)."""
        p = self.user_vec[users]
        if not self.history_len:
            return p
        recent = (self.history(users) if histories is None else histories)[:, -self.history_len :]
        real = (recent != PAD).float()  # [B, H]
        context = self.context_vec[recent.clamp_min(0)] * real[..., None]  # [B, H, d]
        return p + context.sum(1) / real.sum(1, keepdim=True).clamp_min(1.0)

    def _score(self, user_rows: Tensor | None, histories: Tensor | None) -> Tensor:
        if user_rows is None:
            raise ValueError("mf scores users: pass user_rows")
        p = self.user_vectors(user_rows, histories)  # [B, d]
        # One [B, I] result, the biases added into it: at catalogue scale each extra copy costs as
        # much as the product itself.
        scores = torch.addmm(self.item_bias, p, self.item_vec.T)
        return scores.add_((self.user_bias[user_rows] + self.bias)[:, None])

    def pair_logits(self, users: Tensor, items: Tensor, histories: Tensor | None = None) -> Tensor:
        """Scores of (users[j], items[j, ...]) pairs; `items` may carry extra trailing dims."""
        p = self.user_vectors(users, histories)
        p = p.view(*users.shape, *([1] * (items.dim() - users.dim())), -1)
        dot = (p * self.item_vec[items]).sum(-1)
        ub = self.user_bias[users].view(*users.shape, *([1] * (items.dim() - users.dim())))
        return dot + self.item_bias[items] + ub + self.bias

    def _grow_tables(self, n_users: int, n_items: int) -> None:
        for name in ("user_vec", "user_bias"):
            self._grow_param(name, n_users)
        for name in ["item_vec", "item_bias"] + (["context_vec"] if self.history_len else []):
            self._grow_param(name, n_items)

    def item_vectors(self) -> Tensor:
        return self.item_vec.data

    @torch.no_grad()
    def fold_in(self, users: np.ndarray, items: np.ndarray, first_new_item: int) -> None:
        """New items start where their users' other items are (vector and bias); new users (rows
        added by the last grow) at the mean vector of their items, scaled to a typical user's length."""
        both = torch.cat([self.item_vec.data, self.item_bias.data[:, None]], dim=1)
        fold_in_rows(both, users, items, first_new_item)
        self.item_vec.data.copy_(both[:, :-1])
        self.item_bias.data.copy_(both[:, -1])
        if self.history_len:
            fold_in_rows(self.context_vec.data, users, items, first_new_item)
        first_user = self.fresh.get("user_vec")
        if not first_user:
            return
        fresh = users >= first_user
        if not fresh.any():
            return
        sums = torch.zeros(self.n_users, self.cfg.dim).index_add_(
            0, torch.from_numpy(users[fresh]), self.item_vec.data[torch.from_numpy(items[fresh])]
        )
        rows = torch.from_numpy(np.unique(users[fresh]))
        mean = sums[rows]
        typical = self.user_vec.data[:first_user].norm(dim=1).mean()
        self.user_vec.data[rows] = mean * (typical / mean.norm(dim=1, keepdim=True).clamp_min(1e-8))

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        # [B] each; labels 1 = positive, 0 = explicit negative; with a history term, histories [B, H]
        users, items, weights, labels, *rest = batch
        histories = rest[0] if rest else None
        if self.cfg.loss == "softmax":  # each positive against the whole catalog, as sasrec
            pos = labels > 0
            hist = None if histories is None else histories[pos]
            logits = self.user_vectors(users[pos], hist) @ self.item_vec.T + self.item_bias  # [P, I]
            ce = F.cross_entropy(logits, items[pos], reduction="none")
            loss = (ce * weights[pos]).sum() / weights[pos].sum().clamp_min(1e-6)
            self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(users))
            return loss
        logits = self.pair_logits(users, items, histories)
        observed = F.binary_cross_entropy_with_logits(logits, labels.float(), weight=weights, reduction="sum")
        loss = observed / weights.sum().clamp_min(1e-6)
        positive = labels > 0
        k = self.cfg.negatives
        if k > 0 and positive.any():
            pos_users = users[positive]
            sampled = torch.randint(0, self.n_items, (len(pos_users), k), device=users.device)
            hist = None if histories is None else histories[positive]
            neg_logits = self.pair_logits(pos_users, sampled, hist)  # [P, k]
            loss = loss + F.binary_cross_entropy_with_logits(neg_logits, torch.zeros_like(neg_logits))
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(users))
        return loss
