"""A small generated ratings dataset with planted taste clusters, written as a MovieLens folder
(ratings.csv + movies.csv, the ml-latest layout) for the `reco evaluate` tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_planted_movielens(
    folder: Path, users: int = 90, items: int = 120, per_user: int = 30, clusters: int = 4, seed: int = 0
) -> Path:
    """User u likes the items of cluster u % clusters (item i is in cluster i % clusters): most of
    their ratings are 4-5 stars on those, the rest 1-3 stars elsewhere. Times increase per user."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["userId,movieId,rating,timestamp"]
    t0 = 1_500_000_000
    for u in range(1, users + 1):
        cluster = u % clusters
        own = [i for i in range(1, items + 1) if i % clusters == cluster]
        other = [i for i in range(1, items + 1) if i % clusters != cluster]
        liked = rng.choice(own, int(per_user * 0.8), replace=False, p=_zipf(len(own)))
        disliked = rng.choice(other, per_user - len(liked), replace=False)
        picks = [(int(i), float(rng.choice([4.0, 4.5, 5.0]))) for i in liked]
        picks += [(int(i), float(rng.choice([1.0, 2.0, 3.0]))) for i in disliked]
        order = rng.permutation(len(picks))
        for n, j in enumerate(order):
            item, rating = picks[j]
            lines.append(f"{u},{item},{rating},{t0 + u * 37 + n * 3600 + int(rng.integers(0, 600))}")
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    movies = ["movieId,title,genres"] + [
        f"{i},Movie {i} ({1990 + i % 30}),Drama" for i in range(1, items + 1)
    ]
    (folder / "movies.csv").write_text("\n".join(movies) + "\n")
    return folder


def _zipf(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()
