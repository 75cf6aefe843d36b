"""Per-user item rows from interactions: latest histories (for sasrec, and mf with a history term)
and everything seen (to exclude); and the model scores that read them, for recommend and evaluate.

Read at recommend time from the bronze tables, so events committed after the model's cursor count:
a user's new clicks change their sasrec list before any retraining, and new users with a few clicks
get model lists, not the popularity fallback.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from recocli.models.base import Recommender
from recocli.models.padded import PAD, latest_padded, padded_sets
from recocli.models.vocab import Vocabs, Vocabulary


def _grouped(interactions: pa.Table, users: list[str], items: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(slot of the user in `users`, item row), for interactions of those users with known items,
    in time order within each user."""
    slot = pc.index_in(interactions["user_id"], value_set=pa.array(users, pa.string()))
    slot = slot.fill_null(-1).to_numpy(zero_copy_only=False)
    item_rows = items.rows(interactions["item_id"])
    keep = (slot >= 0) & (item_rows >= 0)
    slot, item_rows = slot[keep], item_rows[keep]
    ts = interactions["ts"].cast(pa.int64()).to_numpy()[keep]
    order = np.lexsort((np.arange(len(slot)), ts, slot))
    return slot[order], item_rows[order]


def latest_histories(
    interactions: pa.Table, users: list[str], items: Vocabulary, max_len: int
) -> torch.Tensor:
    """[len(users), max_len] latest positive item rows per user, oldest first, PAD-left-padded."""
    positives = interactions.filter(pc.equal(interactions["label"], 1))
    slot, item_rows = _grouped(positives, users, items)
    return torch.from_numpy(latest_padded(slot, item_rows, len(users), max_len))


def seen_items(interactions: pa.Table, users: list[str], items: Vocabulary) -> torch.Tensor:
    """[len(users), S] every item row each user interacted with (positive or negative), PAD-padded."""
    return torch.from_numpy(padded_sets(*_grouped(interactions, users, items), len(users)))


def score_users(
    model: Recommender, vocabs: Vocabs, interactions: pa.Table, users: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores [B, model items] for these users and whether the model has anything on each.

    A model that reads histories (sasrec; mf with model.mf.history) gets each user's latest
    positives in `interactions`, so a model serves fresh histories even when its weights are old;
    mf needs the user's learned row.
    """
    histories = None
    if model.reads_histories:
        histories = latest_histories(interactions, users, vocabs.items, model.cfg.max_len)
    known = _known(model, vocabs, users, histories)
    if model.kind == "sasrec":
        return model.score(histories=histories), known
    rows = torch.from_numpy(vocabs.users.rows(users))
    return model.score(user_rows=torch.where(known, rows, 0), histories=histories), known


def known_users(model: Recommender, vocabs: Vocabs, interactions: pa.Table, users: list[str]) -> torch.Tensor:
    """[B] whether the model has anything on each user, as `score_users` decides it, without scoring
    (an A/B holdout is compared with the users the model would have served, not with new ones)."""
    histories = None
    if model.kind == "sasrec":
        histories = latest_histories(interactions, users, vocabs.items, model.cfg.max_len)
    return _known(model, vocabs, users, histories)


def _known(
    model: Recommender, vocabs: Vocabs, users: list[str], histories: torch.Tensor | None
) -> torch.Tensor:
    """sasrec knows a user by a latest positive of an item it knows; mf by the user's learned row."""
    if model.kind == "sasrec":
        return (histories != PAD).any(dim=1)
    return torch.from_numpy(vocabs.users.rows(users) >= 0)
