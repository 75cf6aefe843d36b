"""Training examples for each model kind, and the LightningDataModule that serves them.

mf learns from (user, item, weight, label) rows. sasrec learns from windows of each user's
positives in time order: inputs [N, L] and next-item targets [N, L] with a weight per position
(0 = nothing to learn there, e.g. replayed context of a fine-tune). Validation rows are
(user, history [L], target item, seen items [S]) for HR@10 over the whole catalog, seen masked.
"""

from __future__ import annotations

import numpy as np
import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from recocli.models.padded import PAD, latest_padded, padded_sets, rank_from_end
from recocli.training.interactions import Encoded

Batch = tuple[Tensor, ...]


def user_time_order(enc: Encoded) -> np.ndarray:
    """Row order by (user, ts), stable: ties keep the order given."""
    return np.lexsort((np.arange(len(enc)), enc.ts, enc.users))


def sort_by_user_time(enc: Encoded) -> Encoded:
    return enc.take(user_time_order(enc))


def mf_examples(enc: Encoded, history_len: int = 0, is_target: np.ndarray | None = None) -> Batch:
    """(user, item, weight, label) per row where `is_target` (every row when None); with
    `history_len`, also the user's latest positives before that row [N, history_len]."""
    rows = enc if is_target is None else enc.take(is_target)
    columns = (
        torch.from_numpy(rows.users.astype(np.int64)),
        torch.from_numpy(rows.items.astype(np.int64)),
        torch.from_numpy(rows.weights.astype(np.float32)),
        torch.from_numpy(rows.labels.astype(np.int64)),
    )
    if not history_len:
        return columns
    histories = preceding_positives(enc, history_len)
    return (*columns, torch.from_numpy(histories if is_target is None else histories[is_target]))


def preceding_positives(enc: Encoded, length: int) -> np.ndarray:
    """[len(enc), length]: per row, the item rows of its user's latest positives strictly before it
    in (ts, given) order, oldest first, PAD-left-padded."""
    order = user_time_order(enc)
    users, items, positive = enc.users[order], enc.items[order], enc.labels[order] > 0
    before = np.cumsum(positive) - positive  # positives before each sorted row (all users)
    first = np.r_[True, users[1:] != users[:-1]]
    user_start = np.maximum.accumulate(np.where(first, before, 0))  # positives before the user's rows
    positive_items = items[positive]
    out = np.full((len(enc), length), PAD, dtype=np.int64)
    for back in range(length):
        index = before - 1 - back
        has = index >= user_start
        out[order[has], length - 1 - back] = positive_items[index[has]]
    return out


def later_rows(users: np.ndarray, ts: np.ndarray, gap_us: int, rng: np.random.Generator) -> np.ndarray:
    """Per row of rows sorted by (user, time): a random later row of the same user, more than
    `gap_us` after it; -1 where the user has none."""
    n = len(users)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    times = np.unique(ts)
    span = len(times) + 1
    users = users.astype(np.int64)
    keys = users * span + np.searchsorted(times, ts)  # sorted: user, then time rank
    after = np.searchsorted(times, ts + gap_us, side="right")  # the first time rank past the gap
    first = np.searchsorted(keys, users * span + after)
    end = np.searchsorted(keys, (users + 1) * span)
    pick = first + np.floor(rng.random(n) * np.maximum(end - first, 0)).astype(np.int64)
    return np.where(first < end, pick, -1)


def sequence_windows(
    users: np.ndarray,
    items: np.ndarray,
    weights: np.ndarray,
    is_target: np.ndarray,
    max_len: int,
    later: np.ndarray | None = None,
) -> Batch:
    """Next-item windows over sequences sorted by (user, time).

    Each consecutive pair (x_t → x_t+1) of a user is one position; a user's positions are cut into
    windows of `max_len` from the newest back, left-padded with PAD. With `later` (row → a later
    row of its user, -1: none; `later_rows`), a position's target is x_t's later row instead of
    x_t+1 where it has one. A position's weight is the target's weight where `is_target`, else 0;
    windows without any target are dropped.
    """
    src = np.flatnonzero(users[1:] == users[:-1])  # pair t: items[t] → items[t + 1]
    target = src + 1 if later is None else np.where(later[src] >= 0, later[src], src + 1)
    pair_users = users[src]
    back = rank_from_end(pair_users)
    window = back // max_len
    col = max_len - 1 - back % max_len
    starts = np.r_[True, (pair_users[1:] != pair_users[:-1]) | (window[1:] != window[:-1])]
    wid = np.cumsum(starts) - 1 if len(src) else np.zeros(0, np.int64)
    n = int(wid[-1]) + 1 if len(src) else 0
    inputs = np.full((n, max_len), PAD, dtype=np.int64)
    targets = np.full((n, max_len), PAD, dtype=np.int64)
    target_w = np.zeros((n, max_len), dtype=np.float32)
    inputs[wid, col] = items[src]
    targets[wid, col] = items[target]
    target_w[wid, col] = np.where(is_target[target], weights[target], 0.0)
    useful = target_w.sum(axis=1) > 0
    return (
        torch.from_numpy(inputs[useful]),
        torch.from_numpy(targets[useful]),
        torch.from_numpy(target_w[useful]),
    )


def sasrec_examples(
    enc: Encoded,
    max_len: int,
    is_target: np.ndarray | None = None,
    target_gap_s: float = 0.0,
    seed: int = 0,
) -> Batch:
    """Windows over the positives of `enc` (every position a target unless `is_target` says).

    `target_gap_s` > 0: each position learns a random later positive of its user more than that
    long after it (the next one where there is none): what a user takes on a later visit, which is
    what a served list is judged on, rather than the next click of the same sitting."""
    keep = enc.labels > 0
    pos = enc.take(keep)
    flags = np.ones(len(pos), dtype=bool) if is_target is None else is_target[keep]
    order = user_time_order(pos)
    pos, flags = pos.take(order), flags[order]
    later = None
    if target_gap_s > 0:
        later = later_rows(pos.users, pos.ts, int(target_gap_s * 1e6), np.random.default_rng(seed))
    return sequence_windows(pos.users, pos.items, pos.weights, flags, max_len, later)


def concat_examples(parts: list[Batch]) -> Batch:
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return ()
    return tuple(torch.cat(columns) for columns in zip(*parts, strict=True))


def validation_examples(history: Encoded, targets: Encoded, max_len: int) -> Batch:
    """Per target: its user, the user's latest `max_len` positives before it, all items they had.

    `history` holds the training positives; one target per user.
    """
    hist = sort_by_user_time(history.positives())
    users = targets.users
    slot = np.searchsorted(users, hist.users)
    found = (slot < len(users)) & (users[np.minimum(slot, len(users) - 1)] == hist.users)
    histories = latest_padded(slot[found], hist.items[found].astype(np.int64), len(users), max_len)
    pairs = np.unique(np.stack([slot[found], hist.items[found]], axis=1), axis=0)
    seen = padded_sets(pairs[:, 0], pairs[:, 1].astype(np.int64), len(users), min_width=1)
    return (
        torch.from_numpy(users.astype(np.int64)),
        torch.from_numpy(histories),
        torch.from_numpy(targets.items.astype(np.int64)),
        torch.from_numpy(seen),
    )


def _loader(data: Batch, batch_size: int, shuffle: bool, seed: int, min_batches: int = 1) -> DataLoader:
    dataset = TensorDataset(*data)
    if shuffle:
        # Small data: an epoch is several shuffled passes, so that it holds at least min_batches.
        size = max(len(dataset), min(min_batches * batch_size, len(dataset) * 1000))
        sampler = RandomSampler(dataset, num_samples=size, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(dataset)
    # Whole batches are sliced out of the tensors at once (no per-row collate).
    return DataLoader(dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None)


class InteractionDataModule(LightningDataModule):
    """In-memory tensors for one fit: training examples and optional validation rows."""

    def __init__(
        self, train: Batch, val: Batch | None, batch_size: int, seed: int = 0, min_batches: int = 1
    ) -> None:
        super().__init__()
        self.train, self.val, self.batch_size, self.seed = train, val, batch_size, seed
        self.min_batches = min_batches

    def train_dataloader(self) -> DataLoader:
        return _loader(self.train, self.batch_size, True, self.seed, self.min_batches)

    def val_dataloader(self) -> DataLoader:
        if not self.val:
            return []
        return _loader(self.val, max(self.batch_size, 256), shuffle=False, seed=self.seed)
