"""Offline experiment (issue 18): what a decayed popularity should count, on the windows and users
of `reco evaluate --protocol served`, scored by its own functions (no model, no warehouse).

The protocol's popularity peers count positives (rating ≥ `train.rating_threshold`). Other
counts, each at the peers' half-lives, show whether a different popularity would serve users with
history (warm) better, the group where issue 18's targets are missed:

- `positives`: the peers themselves (the same figures as the protocol's table, to the digit);
- `later visits`: only positives rated more than `--gap` after their user's first rating (what
  returning users take, not the first sitting's classics);
- `first visits`: only the other positives;
- `every rating`: every interaction, liked or not (what is being watched);
- `hindsight`: not a count one can have but a yardstick, a popularity that knows what the crowd
  does next: for each scored user, how many of the other scored users like each item in the
  window (what they are scored on), ties broken by `positives` at each half-life.

    PYTHONPATH=. python bench/served_popularity_counts.py ../shared/datasets/movielens/ml-100k
    PYTHONPATH=. python bench/served_popularity_counts.py ../shared/datasets/movielens/ml-latest-small \
        --window 180d
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from lakehouse.settings import parse_duration
from recocli.config import load_settings
from recocli.lab.evaluate.peers import decayed_counts
from recocli.lab.evaluate.prequential import WindowTargets, evaluate_window
from recocli.lab.evaluate.served import served_events, window_split
from recocli.lab.evaluate.split import bootstrap_cut, prequential_windows
from recocli.training.interactions import from_bronze

K = 10
HINDSIGHT = "hindsight, ties by positives"


def likes_of_others(targets: WindowTargets, n_items: int) -> Tensor:
    """[B, n_items]: for each scored user, how many of the other scored users like each item next
    (their relevant items in the window): a popularity that knows the window, without the user's own."""
    rel = targets.relevant
    own = torch.zeros(len(targets.users), n_items)
    own.scatter_add_(1, rel.clamp(min=0), (rel >= 0).float())
    return own.sum(dim=0, keepdim=True) - own


def counted(history: pa.Table, gap_us: int) -> dict[str, pa.Table]:
    """The rows each count takes from `history` (interactions before a window, time-sorted)."""
    pos = pc.equal(history["label"], 1)
    ts = history["ts"].cast(pa.int64()).to_numpy()
    users = history["user_id"].to_numpy(zero_copy_only=False)
    _, inverse = np.unique(users, return_inverse=True)
    first = np.full(inverse.max() + 1 if len(inverse) else 0, np.iinfo(np.int64).max)
    np.minimum.at(first, inverse, ts)
    later = pa.array(ts - first[inverse] > gap_us)
    return {
        "positives": history.filter(pos),
        "later visits": history.filter(pc.and_(pos, later)),
        "first visits": history.filter(pc.and_(pos, pc.invert(later))),
        "every rating": history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--bootstrap", type=float, default=0.7)
    parser.add_argument("--window", default="30d")
    parser.add_argument("--gap", default="1d", help="a later visit: this long after the user's first rating")
    args = parser.parse_args()
    settings = load_settings(None)
    events, name = served_events(settings, args.data)
    events = events.take(pc.sort_indices(events, [("ts", "ascending"), ("event_id", "ascending")]))
    train = settings.train
    interactions = from_bronze(events, None, train.weights, train.rating_threshold)
    its = interactions["ts"].cast(pa.int64()).to_numpy()
    ts = events["ts"].cast(pa.int64()).to_numpy()
    windows = prequential_windows(ts, bootstrap_cut(ts, args.bootstrap), args.window)
    gap_us = int(parse_duration(args.gap) * 1e6)
    scores: dict[str, list[np.ndarray]] = {}
    warm: list[np.ndarray] = []
    for window in windows:
        history, items, targets = window_split(interactions, its, window)
        if not targets.users:
            continue
        warm.append(targets.warm)
        others = likes_of_others(targets, len(items))
        for count, rows in counted(history, gap_us).items():
            for peer, log_p in decayed_counts(rows, items, window.start).items():
                lists = {count: log_p.expand(len(targets.users), -1)}
                if count == "positives":  # ties among the others' likes broken by this popularity
                    lists[HINDSIGHT] = others + 0.5 * (log_p - log_p.min()) / (log_p.max() - log_p.min())
                half_life = peer.removeprefix("popularity ")
                for label, matrix in lists.items():
                    values = evaluate_window(matrix, targets, (K,))[f"ndcg@{K}"]
                    scores.setdefault(f"{label} {half_life}", []).append(values)
    is_warm = np.concatenate(warm)
    print(
        f"{name}: {len(windows)} windows of {args.window}, {len(is_warm)} scored users ({is_warm.sum()} warm)"
    )
    print(f"| popularity counts | NDCG@{K} | warm | cold |\n|---|---:|---:|---:|")
    for label, per_window in scores.items():
        v = np.concatenate(per_window)
        print(f"| {label} | {v.mean():.4f} | {v[is_warm].mean():.4f} | {v[~is_warm].mean():.4f} |")


if __name__ == "__main__":
    main()
