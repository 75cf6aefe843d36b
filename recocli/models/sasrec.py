"""SASRec: a causal Transformer over a user's recent items predicts the next one.

Kang & McAuley, "Self-Attentive Sequential Recommendation" (2018), with the full-softmax
cross-entropy over the whole catalog that gives it its best full-ranking results (a sampled
softmax over `sampled_negatives` shared random items for catalogs too large for that). Item
embeddings are tied with the output layer, so a score is the dot product of the last hidden
state with the item's embedding. Pre-LayerNorm blocks, as in nanoGPT.

Explicit negatives (dislike, dismiss, low ratings) are not used by this loss: they never enter a
history nor become a target. The histories hold positives only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recocli.config import SASRecSettings
from recocli.models.base import INIT_STD, Recommender


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d % heads:
            raise ValueError(f"model.dim ({d}) must be a multiple of model.heads ({heads})")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        q, k, v = (t.view(B, T, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # [B,h,T,dh]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, d))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = CausalSelfAttention(d, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class SASRec(Recommender):
    kind = "sasrec"

    def __init__(self, n_users: int, n_items: int, cfg: SASRecSettings) -> None:
        super().__init__(n_users, cfg)
        d = cfg.dim
        # Row 0 is padding; item row r lives at r + 1 (so PAD = -1 maps to 0).
        self.item_vec = nn.Parameter(torch.randn(n_items + 1, d) * INIT_STD)  # [I+1, d]
        with torch.no_grad():
            self.item_vec[0].zero_()
        self.pos_vec = nn.Parameter(torch.randn(cfg.max_len, d) * INIT_STD)  # [L, d]
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.dropout) for _ in range(cfg.blocks))
        self.ln_f = nn.LayerNorm(d)

    @property
    def n_items(self) -> int:
        return self.item_vec.shape[0] - 1

    @property
    def reads_histories(self) -> bool:
        return True

    def hidden(self, seq: Tensor) -> Tensor:
        """Hidden states [B, L, d] of item-row sequences [B, L] (PAD-left-padded, L ≤ max_len)."""
        seq = seq[:, -self.cfg.max_len :]
        T = seq.shape[1]
        tokens = seq + 1  # PAD → 0
        x = F.embedding(tokens, self.item_vec, padding_idx=0) * self.cfg.dim**0.5
        x = self.drop(x + self.pos_vec[-T:])
        # Attend to earlier real items; every position may attend to itself (no empty rows).
        causal = torch.ones(T, T, dtype=torch.bool, device=seq.device).tril()
        keys = (tokens != 0)[:, None, None, :] | torch.eye(T, dtype=torch.bool, device=seq.device)
        mask = causal & keys  # [B, 1, T, T]
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def _score(self, user_rows: Tensor | None, histories: Tensor | None) -> Tensor:
        if histories is None:
            if user_rows is None:
                raise ValueError("sasrec scores histories: pass histories (or user_rows it remembers)")
            histories = self.history(user_rows)
        h = self.hidden(histories)[:, -1]  # [B, d]
        return h @ self.item_vec[1:].T  # [B, I]

    def _grow_tables(self, n_users: int, n_items: int) -> None:
        self._grow_param("item_vec", n_items + 1)

    def item_vectors(self) -> Tensor:
        return self.item_vec.data[1:]

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        inputs, targets, weights = batch  # [B, L] each; weight 0 = no target at that position
        h = self.hidden(inputs)
        at = weights > 0
        h, targets, weights = h[at], targets[at], weights[at]  # [M, d], [M], [M]
        items = self.item_vec[1:]
        n = self.cfg.sampled_negatives
        if n > 0:
            sampled = torch.randint(0, self.n_items, (n,), device=h.device)
            pos = (h * items[targets]).sum(-1, keepdim=True)  # [M, 1]
            neg = h @ items[sampled].T  # [M, n]
            neg = neg.masked_fill(sampled[None, :] == targets[:, None], float("-inf"))
            logits = torch.cat([pos, neg], dim=1)
            labels = torch.zeros_like(targets)
        else:
            logits, labels = h @ items.T, targets  # [M, I]
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        loss = (ce * weights).sum() / weights.sum().clamp_min(1e-6)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(targets))
        return loss
