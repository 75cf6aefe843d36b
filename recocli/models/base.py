"""What every model shares: built from config, scores the whole catalog, grows in place, and
remembers each user's recent positive items (the history SASRec reads and replay samples from).

Rows are the vocabularies' rows (recocli.models.vocab). Histories are item rows, oldest first,
left-padded with PAD (-1) to `max_len`; the newest item is always in the last column.
"""

from __future__ import annotations

from typing import ClassVar

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from recocli.config import MFSettings, SASRecSettings
from recocli.metrics import hit_and_ndcg
from recocli.models.padded import PAD, latest_padded

INIT_STD = 0.02


def grown(param: Tensor, rows: int) -> nn.Parameter:
    """`param` with rows appended (small random, zero for 1-D biases); old rows copied exactly."""
    extra = rows - param.shape[0]
    if extra < 0:
        raise ValueError(f"cannot shrink a table from {param.shape[0]} to {rows} rows")
    shape = (extra, *param.shape[1:])
    if param.dim() == 1:
        new = torch.zeros(shape, dtype=param.dtype, device=param.device)
    else:
        new = torch.randn(shape, dtype=param.dtype, device=param.device) * INIT_STD
    return nn.Parameter(torch.cat([param.detach(), new]), requires_grad=param.requires_grad)


@torch.no_grad()
def fold_in_rows(table: Tensor, users: np.ndarray, items: np.ndarray, first_new: int) -> None:
    """Set each new row (≥ first_new) of an item table to the mean row of the older items that the
    same users took, so a short fine-tune only has to refine it; rows with no such company stay.

    Σ over the new item's users of (sum, count) of their older items' rows, then one division.
    """
    new = items >= first_new
    if not new.any() or first_new == 0 or new.all():
        return
    ids, local = np.unique(users, return_inverse=True)
    old_users, old_items = torch.from_numpy(local[~new]), torch.from_numpy(items[~new])
    rows = table[:first_new].float().cpu()
    user_sum = torch.zeros(len(ids), table.shape[1]).index_add_(0, old_users, rows[old_items])
    user_count = torch.zeros(len(ids)).index_add_(0, old_users, torch.ones(len(old_users)))
    new_items, new_users = torch.from_numpy(items[new] - first_new), torch.from_numpy(local[new])
    n_new = table.shape[0] - first_new
    item_sum = torch.zeros(n_new, table.shape[1]).index_add_(0, new_items, user_sum[new_users])
    item_count = torch.zeros(n_new).index_add_(0, new_items, user_count[new_users])
    has = item_count > 0
    table[first_new:][has] = (item_sum[has] / item_count[has, None]).to(table.dtype).to(table.device)


class Recommender(L.LightningModule):
    """Base LightningModule: subclasses define their tables, `_score`, `_grow_tables`, `training_step`."""

    kind: ClassVar[str] = ""

    def __init__(self, n_users: int, cfg: SASRecSettings | MFSettings) -> None:
        super().__init__()
        self.cfg = cfg
        # Set by the trainer code before each fit (full training vs small fine-tune).
        self.lr = 1e-3
        self.weight_decay = 0.0
        shape = (n_users, cfg.max_len)
        self.register_buffer("hist_items", torch.full(shape, PAD, dtype=torch.long))
        self.register_buffer("hist_ts", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("hist_weight", torch.zeros(shape, dtype=torch.float32))
        # Rows added by grow() since the last clear: {parameter name: its first new row}. A fine-tune
        # moves them `fresh_lr_scale` times faster: they have nothing learned to forget.
        self.fresh: dict[str, int] = {}
        self.fresh_lr_scale = 1.0

    # ---- the interface ----

    @property
    def n_users(self) -> int:
        return self.hist_items.shape[0]

    @property
    def n_items(self) -> int:
        raise NotImplementedError

    @property
    def reads_histories(self) -> bool:
        """Whether scoring reads the users' latest positives (fresh at serving time)."""
        raise NotImplementedError

    @torch.no_grad()
    def score(self, user_rows: Tensor | None = None, histories: Tensor | None = None) -> Tensor:
        """Scores [B, n_items] over the whole catalog (higher is better), in eval mode.

        mf needs `user_rows`; sasrec reads `histories` [B, L] (item rows, PAD-left-padded) or, given
        `user_rows` only, the histories it remembers. The caller masks seen items and takes topk.
        """
        was_training = self.training
        self.eval()
        try:
            device = self.hist_items.device
            user_rows = None if user_rows is None else torch.as_tensor(user_rows, device=device).long()
            histories = None if histories is None else torch.as_tensor(histories, device=device).long()
            return self._score(user_rows, histories).float()
        finally:
            self.train(was_training)

    def _score(self, user_rows: Tensor | None, histories: Tensor | None) -> Tensor:
        raise NotImplementedError

    def grow(self, n_users: int, n_items: int) -> None:
        """Add rows for new users/items; every existing row stays bit-for-bit as it was."""
        if n_users > self.n_users:
            extra = n_users - self.n_users
            device = self.hist_items.device
            self.hist_items = torch.cat(
                [self.hist_items, torch.full((extra, self.cfg.max_len), PAD, dtype=torch.long, device=device)]
            )
            self.hist_ts = torch.cat([self.hist_ts, self.hist_ts.new_zeros((extra, self.cfg.max_len))])
            self.hist_weight = torch.cat(
                [self.hist_weight, self.hist_weight.new_zeros((extra, self.cfg.max_len))]
            )
        self._grow_tables(n_users, max(n_items, self.n_items))

    def _grow_tables(self, n_users: int, n_items: int) -> None:
        raise NotImplementedError

    def _grow_param(self, name: str, rows: int) -> None:
        old = getattr(self, name)
        if rows > old.shape[0]:
            self.fresh.setdefault(name, old.shape[0])
            setattr(self, name, grown(old, rows))

    def item_vectors(self) -> Tensor:
        """The item embedding rows [n_items, d], vocabulary row r at index r (a view)."""
        raise NotImplementedError

    def fold_in(self, users: np.ndarray, items: np.ndarray, first_new_item: int) -> None:
        """Start new items (rows ≥ first_new_item) where their users' other items are (fold_in_rows).
        `users`/`items`: positive pairs, the users' remembered history included."""
        fold_in_rows(self.item_vectors(), users, items, first_new_item)

    def history(self, user_rows: Tensor | np.ndarray) -> Tensor:
        """The remembered histories [B, max_len] of these users (item rows, PAD-left-padded)."""
        return self.hist_items[torch.as_tensor(user_rows, device=self.hist_items.device).long()]

    def remember(self, users: np.ndarray, items: np.ndarray, ts: np.ndarray, weights: np.ndarray) -> None:
        """Merge positive interactions into the users' histories: time order, the latest max_len kept.

        Ties in time keep the remembered items first, then the new ones in the order given.
        """
        if len(users) == 0:
            return
        width = self.cfg.max_len
        touched = np.unique(users)
        index = torch.from_numpy(touched)
        old_items = self.hist_items[index].cpu().numpy()
        old_ts = self.hist_ts[index].cpu().numpy()
        old_w = self.hist_weight[index].cpu().numpy()
        t_idx, col = np.nonzero(old_items != PAD)
        all_users = np.r_[touched[t_idx], users]
        all_items = np.r_[old_items[t_idx, col], items]
        all_ts = np.r_[old_ts[t_idx, col], ts]
        all_w = np.r_[old_w[t_idx, col], weights]
        order = np.lexsort((np.arange(len(all_users)), all_ts, all_users))
        all_users, all_items, all_ts, all_w = (a[order] for a in (all_users, all_items, all_ts, all_w))
        slot = np.searchsorted(touched, all_users)
        new_items = latest_padded(slot, all_items, len(touched), width)
        new_ts = latest_padded(slot, all_ts, len(touched), width, fill=0)
        new_w = latest_padded(slot, all_w, len(touched), width, fill=0)
        updates = ((self.hist_items, new_items), (self.hist_ts, new_ts), (self.hist_weight, new_w))
        for buffer, values in updates:
            buffer[index.to(buffer.device)] = torch.from_numpy(values).to(buffer.device, buffer.dtype)

    # ---- Lightning ----

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        """HR@10 and NDCG@10 of the held-out item over the whole catalog, the user's seen items masked."""
        users, histories, targets, seen = batch
        scores = self._score(users, histories).float()
        hr, ndcg = hit_and_ndcg(scores, targets, seen, k=10)
        self.log("val_hr10", hr.mean(), prog_bar=True, batch_size=len(users), sync_dist=True)
        self.log("val_ndcg10", ndcg.mean(), batch_size=len(users), sync_dist=True)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        """The optimizer's step, with the update of fresh rows scaled by `fresh_lr_scale`."""
        if not self.fresh or self.fresh_lr_scale == 1.0:
            optimizer.step(closure=optimizer_closure)
            return
        params = dict(self.named_parameters())
        before = {name: params[name].detach()[start:].clone() for name, start in self.fresh.items()}
        optimizer.step(closure=optimizer_closure)
        with torch.no_grad():
            for name, start in self.fresh.items():
                rows = params[name][start:]
                rows.copy_(before[name] + self.fresh_lr_scale * (rows - before[name]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
