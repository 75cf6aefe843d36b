"""Spark MLlib ALS as a peer for `reco evaluate` (it needs a JVM, so it lives here).

Only the factorisation runs in Spark. The learned factors come back as NumPy arrays and the
evaluation scores U·Vᵀ over the whole catalog and ranks it with the same masked top-K and metric
code as our own models, so the comparison differs in the model only (not in how MLlib's
recommendForUserSubset would rank or leave out seen items).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS
from pyspark.sql import SparkSession


@dataclass
class Factors:
    """Factors by row id: users[r] is the vector of user row r (zeros for a row ALS never saw)."""

    users: np.ndarray  # [n_users, rank] float32
    items: np.ndarray  # [n_items, rank] float32
    user_known: np.ndarray  # [n_users] bool
    item_known: np.ndarray  # [n_items] bool
    params: dict = field(default_factory=dict)
    seconds: float = 0.0

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """u·v for (users[j], items[j]) pairs (NaN where either is unknown)."""
        out = np.einsum("ij,ij->i", self.users[users], self.items[items]).astype(np.float64)
        out[~(self.user_known[users] & self.item_known[items])] = np.nan
        return out


@dataclass(frozen=True)
class Ratings:
    """(user row, item row, rating) triples, over row ids 0..n_users-1 and 0..n_items-1."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    n_users: int
    n_items: int


def _dense(frame: pd.DataFrame, n: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros((n, rank), dtype=np.float32)
    known = np.zeros(n, dtype=bool)
    if len(frame):
        ids = frame["id"].to_numpy(dtype=np.int64)
        out[ids] = np.stack(frame["features"].to_numpy()).astype(np.float32)
        known[ids] = True
    return out, known


def fit_als(
    spark: SparkSession,
    data: Ratings,
    rank: int = 32,
    reg: float = 0.1,
    alpha: float = 1.0,
    iters: int = 10,
    implicit: bool = True,
    seed: int = 0,
) -> Factors:
    """ALS on `data`. implicit: ratings are confidences (Hu, Koren & Volinsky 2008: c = 1 + alpha·r);
    explicit: ratings are the values to predict."""
    started = time.perf_counter()
    frame = pd.DataFrame(
        {
            "user": np.asarray(data.users, dtype=np.int32),
            "item": np.asarray(data.items, dtype=np.int32),
            "rating": np.asarray(data.ratings, dtype=np.float32),
        }
    )
    blocks = max(1, min(4, spark.sparkContext.defaultParallelism))
    triples = spark.createDataFrame(frame).repartition(blocks)
    als = ALS(
        rank=rank,
        maxIter=iters,
        regParam=reg,
        alpha=alpha,
        implicitPrefs=implicit,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
        seed=seed,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        coldStartStrategy="nan",
    )
    model = als.fit(triples)
    user_vecs, user_known = _dense(model.userFactors.toPandas(), data.n_users, rank)
    item_vecs, item_known = _dense(model.itemFactors.toPandas(), data.n_items, rank)
    params = {"rank": rank, "reg": reg, "alpha": alpha, "iters": iters, "implicit": implicit}
    return Factors(
        user_vecs, item_vecs, user_known, item_known, params, round(time.perf_counter() - started, 3)
    )


def grid_search(
    spark: SparkSession,
    data: Ratings,
    quality: Callable[[Factors], float],
    ranks: Sequence[int] = (32, 64),
    regs: Sequence[float] = (0.01, 0.1),
    alphas: Sequence[float] = (1.0, 10.0),
    iters: int = 10,
    seed: int = 0,
    on_fit: Callable[[dict, float], None] | None = None,
) -> tuple[Factors, list[dict]]:
    """Implicit ALS for every (rank, reg, alpha); the factors with the best `quality` (e.g. NDCG@10
    on the validation item) and one row per grid point (params, quality, seconds)."""
    best: Factors | None = None
    best_quality = -np.inf
    tried = []
    for rank, reg, alpha in itertools.product(ranks, regs, alphas):
        factors = fit_als(spark, data, rank, reg, alpha, iters, implicit=True, seed=seed)
        value = float(quality(factors))
        tried.append({**factors.params, "quality": value, "seconds": factors.seconds})
        if on_fit:
            on_fit(factors.params, value)
        if value > best_quality:
            best, best_quality = factors, value
    if best is None:
        raise ValueError("empty ALS grid")
    best.seconds = round(sum(t["seconds"] for t in tried), 3)
    return best, tried
