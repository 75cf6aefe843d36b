"""The ranker's popularity at each user's own time, for leave-last-out evaluation.

A MovieLens user active in 2000 rates what people watched around 2000, which a model fit on
the whole span does not know. Each user gets the popularity part of the ranker
(recocli.models.prior) as a deployed system would hold it at that user's "now" — their last
interaction in the history the stage may read: the exponentially decayed counts of the history's
positives at or before that time, nothing after (one-sided decay), and each item's age then.
One sweep per batch: users sorted by their time, positives added in time order to a single
RecencyPrior, a snapshot of log P_recent taken per user.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from recocli.models.prior import RecencyPrior, earliest, item_log_age
from recocli.models.vocab import Vocabulary


@dataclass
class Positives:
    """A history's positives on a catalog, in time order (items outside the catalog dropped)."""

    items: np.ndarray  # catalog rows
    ts: np.ndarray  # µs
    weights: np.ndarray

    @classmethod
    def of(cls, history: pa.Table, catalog: Vocabulary) -> Positives:
        pos = history.filter(pc.equal(history["label"], 1))
        items = catalog.rows(pos["item_id"])
        ts = pos["ts"].cast(pa.int64()).to_numpy()
        weights = pos["weight"].to_numpy().astype(np.float64)
        known = items >= 0
        order = np.argsort(ts[known], kind="stable")
        return cls(items[known][order], ts[known][order], weights[known][order])


def first_times(history: pa.Table, catalog: Vocabulary) -> Tensor:
    """Each catalog item's first event time (µs) in `history`, any label; -1 for none."""
    rows = catalog.rows(history["item_id"])
    ts = history["ts"].cast(pa.int64()).to_numpy()
    none = torch.full((len(catalog),), -1, dtype=torch.int64)
    return earliest(none, rows[rows >= 0], ts[rows >= 0])


def reference_times(history: pa.Table, users: list[str]) -> np.ndarray:
    """Each user's newest event time (µs) in `history`; -1 for a user without any."""
    grouped = history.select(["user_id", "ts"]).group_by("user_id").aggregate([("ts", "max")])
    newest = dict(
        zip(grouped["user_id"].to_pylist(), grouped["ts_max"].cast(pa.int64()).to_pylist(), strict=True)
    )
    return np.array([newest.get(u, -1) for u in users], dtype=np.int64)


def time_local_log_prior(
    positives: Positives, ref_us: np.ndarray, n_items: int, half_life_s: float
) -> Tensor:
    """[len(ref_us), n_items] log P_recent per user: the positives with ts ≤ that user's reference
    time, decayed with `half_life_s` to it (a user with no positive before it: the uniform prior)."""
    out = torch.empty(len(ref_us), n_items)
    prior = RecencyPrior(n_items, half_life_s)
    done = 0
    for row in np.argsort(ref_us, kind="stable"):
        ref = int(ref_us[row])
        upto = int(np.searchsorted(positives.ts, ref, side="right"))
        if upto > done:
            sl = slice(done, upto)
            prior.update(positives.items[sl], positives.ts[sl], positives.weights[sl])
            done = upto
        prior.advance(ref)
        out[row] = prior.log_prob(n_items)
    return out


def time_local_log_age(first_us: Tensor, ref_us: np.ndarray, n_items: int) -> Tensor:
    """[len(ref_us), n_items] log(1 + each item's age in days) at each user's reference time, as the
    ranker weighs it (an item first seen after that time counts as not seen yet: 0)."""
    return torch.stack([item_log_age(first_us, int(ref) if ref >= 0 else None, n_items) for ref in ref_us])
