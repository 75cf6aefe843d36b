"""Recommend throughput: `reco recommend` (top-100, full catalog) against two peers in one process,
same users, same items, rank 64: Spark MLlib ALS `recommendForAllUsers(100)` (or
`recommendForUserSubset` on the same sampled users) and the `implicit` package's C++ ALS batch
`recommend` (seen items filtered, as ours).

Ours runs the whole command path: load the model version from the registry, read the chosen users'
rows of bronze, score them against every item in batched matrix products, leave out each user's
seen items, take top-K with torch.topk and build the gold rows (the Delta write is timed
separately). Then the `reco recommend` command itself runs in a child process on the same users,
for its peak memory (max RSS). Datasets: ml-latest-small (when ../shared/datasets/movielens is
there) and a generated catalog of 100,000 users × 50,000 items. The load average is printed: the
machine may be shared.

    .venv/bin/python bench/recommend_throughput.py            # both datasets
    .venv/bin/python bench/recommend_throughput.py --quick    # 20,000 × 10,000 generated only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.registry import ModelRegistry
from recocli.config import load_settings
from recocli.console import print_table
from recocli.models import build_model
from recocli.models.store import model_config, publish_version
from recocli.models.vocab import Vocabs, Vocabulary
from recocli.recommend.ranker import Ranker
from recocli.recommend.run import Request, publish, recommend

K, RANK = 100, 64
TARGET_RATIO = 5.0
MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "movielens" / "ml-latest-small"


def generated(users: int, items: int, per_user: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(users), per_user)
    item = (rng.zipf(1.3, size=len(user)) - 1) % items
    item[:items] = np.arange(items)  # every item of the catalog occurs
    return user, item


def movielens() -> tuple[np.ndarray, np.ndarray] | None:
    ratings = MOVIELENS / "ratings.csv"
    if not ratings.exists():
        return None
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(ratings)
    return table["userId"].to_numpy(), table["movieId"].to_numpy()


def write_bronze(warehouse: Warehouse, users: np.ndarray, items: np.ndarray) -> None:
    n = len(users)
    now = datetime.now(UTC)
    ts = pa.array(np.full(n, int(now.timestamp() * 1e6)) - np.arange(n)[::-1], pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )
    table = pa.table(
        {
            "event_id": pa.array(np.arange(n).astype(str)),
            "user_id": pa.array(users.astype(str)),
            "item_id": pa.array(items.astype(str)),
            "event_type": pa.array(["click"] * n),
            "value": pa.nulls(n, pa.float64()),
            "ts": ts,
            "session_id": pa.nulls(n, pa.string()),
            "context": pa.nulls(n, catalog.EVENTS.schema.field("context").type),
            "event_date": pa.array([now.date()] * n, pa.date32()),
            "ingested_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "batch_id": pa.array(np.zeros(n, dtype=np.int64)),
            "source_file": pa.array(["bench"] * n),
        }
    )
    delta.append_once(warehouse.uri(catalog.EVENTS), catalog.EVENTS, table, "bench", 0)


def publish_mf(warehouse: Warehouse, users: np.ndarray, items: np.ndarray, settings) -> None:
    """An mf model of rank 64 over exactly these users and items (weights random: scoring cost does
    not depend on them)."""
    cfg = dataclasses.replace(settings.model.mf, dim=RANK, history=0)
    vocabs = Vocabs(
        Vocabulary(np.unique(users).astype(str).tolist()), Vocabulary(np.unique(items).astype(str).tolist())
    )
    model = build_model("mf", len(vocabs.users), len(vocabs.items), cfg)
    ranker = Ranker.new(model, vocabs, settings.rank)  # the decayed counts: same cost whatever they hold
    meta = {"config": {"model": model_config(model)}}
    publish_version(ModelRegistry(warehouse), model, vocabs, meta, parent=None, ranker=ranker.state)


def run_ours(root: Path, users: np.ndarray, items: np.ndarray, sample: list[str] | None) -> dict:
    warehouse = Warehouse(root / "warehouse")
    settings = load_settings(overrides={"warehouse": str(warehouse.root)})
    write_bronze(warehouse, users, items)
    publish_mf(warehouse, users, items, settings)
    start = time.perf_counter()
    result = recommend(settings, Request(k=K, users=sample))
    scored = time.perf_counter() - start
    start = time.perf_counter()
    publish(settings, result)
    written = time.perf_counter() - start
    return {
        "users": result.users,
        "seconds": scored,
        "write_seconds": written,
        "rows": result.rows.num_rows,
        **command_memory(root, warehouse, sample),
    }


def command_memory(root: Path, warehouse: Warehouse, sample: list[str] | None) -> dict:
    """`reco recommend` as a user runs it, in a child process: its peak RSS and wall time (Python
    start and imports included), and the size of the model version (tables and vocabularies grow
    with the catalog's users and items; the rest should not)."""
    command = [sys.executable, "-m", "recocli", "recommend", "--warehouse", str(warehouse.root), "-k", str(K)]
    if sample is not None:
        (root / "users.txt").write_text("\n".join(sample))
        command += ["--users-file", str(root / "users.txt")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"reco recommend failed: {child.stderr.read().decode()[-2000:]}")
    model_bytes = sum(f.stat().st_size for f in warehouse.models.rglob("*") if f.is_file())
    return {
        "command_seconds": time.perf_counter() - start,
        "command_peak_mb": usage.ru_maxrss / 1024,
        "model_mb": model_bytes / 2**20,
    }


def run_als(spark, users: np.ndarray, items: np.ndarray, sample: list[str] | None) -> dict:
    from pyspark.ml.recommendation import ALS

    frame = spark.createDataFrame(
        pa.table(
            {"user": users.astype(np.int32), "item": items.astype(np.int32), "rating": np.ones(len(users))}
        )
    )
    model = ALS(rank=RANK, maxIter=2, implicitPrefs=True, userCol="user", itemCol="item", seed=0).fit(frame)
    model.userFactors.count()
    start = time.perf_counter()
    if sample is None:
        recs = model.recommendForAllUsers(K)
    else:
        subset = spark.createDataFrame(pa.table({"user": np.array(sample, dtype=np.int32)}))
        recs = model.recommendForUserSubset(subset, K)
    recs.write.format("noop").mode("overwrite").save()
    seconds = time.perf_counter() - start
    return {"users": len(sample) if sample is not None else len(np.unique(users)), "seconds": seconds}


def run_implicit(users: np.ndarray, items: np.ndarray, sample: list[str] | None) -> dict:
    """The `implicit` package's ALS (C++, all cores), rank 64, then its batch recommend of the same
    users with their seen items filtered; only the recommend is timed."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    user_ids, user_rows = np.unique(users, return_inverse=True)
    _, item_rows = np.unique(items, return_inverse=True)
    matrix = sp.csr_matrix(
        (np.ones(len(users), np.float32), (user_rows, item_rows)), shape=(len(user_ids), item_rows.max() + 1)
    )
    matrix.sum_duplicates()
    chosen = np.arange(len(user_ids)) if sample is None else np.searchsorted(user_ids, np.array(sample, int))
    with threadpool_limits(1, "blas"):  # implicit's advice: it threads itself, BLAS threads fight it
        model = AlternatingLeastSquares(factors=RANK, iterations=2, random_state=0)
        model.fit(matrix, show_progress=False)
        start = time.perf_counter()
        model.recommend(chosen, matrix[chosen], N=K, filter_already_liked_items=True)
        return {"users": len(chosen), "seconds": time.perf_counter() - start}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a 20,000 × 10,000 generated catalog only")
    parser.add_argument(
        "--sample-users",
        type=int,
        default=10_000,
        help="on the generated catalog, time all three on this many users (0: all; ALS then runs "
        "recommendForAllUsers, which takes about half an hour at 100,000 × 50,000 on 2 cores)",
    )
    args = parser.parse_args()
    from spark_jobs.session import build_session

    spark = build_session(load_settings().spark)
    datasets = []
    if not args.quick and (ml := movielens()) is not None:
        datasets.append(("ml-latest-small", *ml, None))
    size = (20_000, 10_000) if args.quick else (100_000, 50_000)
    users, items = generated(*size, per_user=10)
    sample = None
    if args.sample_users and args.sample_users < size[0]:
        sample = (
            np.random.default_rng(1).choice(size[0], args.sample_users, replace=False).astype(str).tolist()
        )
    datasets.append((f"generated {size[0]:,} users × {size[1]:,} items", users, items, sample))

    load_before = os.getloadavg()
    results = []
    for name, users, items, sample in datasets:
        root = Path(tempfile.mkdtemp(prefix="reco-bench-rec-"))
        try:
            ours = run_ours(root, users, items, sample)
            als = run_als(spark, users, items, sample)
            peer = run_implicit(users, items, sample)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        rates = {
            key: run["users"] / run["seconds"]
            for key, run in (("reco", ours), ("als", als), ("implicit", peer))
        }
        results.append(
            {
                "dataset": name,
                "users": ours["users"],
                "items": len(np.unique(items)),
                **{f"{key}_users_per_s": round(rate) for key, rate in rates.items()},
                "ratio": round(rates["reco"] / rates["als"], 2),
                "implicit_ratio": round(rates["reco"] / rates["implicit"], 2),
                "reco_seconds": round(ours["seconds"], 2),
                "reco_write_seconds": round(ours["write_seconds"], 2),
                "als_seconds": round(als["seconds"], 2),
                "implicit_seconds": round(peer["seconds"], 2),
                "command_seconds": round(ours["command_seconds"], 2),
                "command_peak_mb": round(ours["command_peak_mb"]),
                "model_mb": round(ours["model_mb"]),
            }
        )
    load = {"before": load_before, "after": os.getloadavg()}
    print_table(
        f"top-{K} for every user over the full catalog, rank {RANK} (load average {load_before[0]:.2f} "
        f"before, {load['after'][0]:.2f} after, {os.cpu_count()} cores)",
        ["dataset", "users", "items", "reco users/s", "ALS users/s", "ratio", "implicit users/s", "ratio",
         "Delta write s", "command s", "command peak MB", "model MB"],
        [
            [
                r["dataset"], r["users"], r["items"], r["reco_users_per_s"], r["als_users_per_s"], r["ratio"],
                r["implicit_users_per_s"], r["implicit_ratio"], r["reco_write_seconds"], r["command_seconds"],
                r["command_peak_mb"], r["model_mb"],
            ]
            for r in results
        ],
    )  # fmt: skip
    ratio = min(r["ratio"] for r in results)
    print(
        json.dumps(
            {
                "bench": "recommend_throughput",
                "results": results,
                "load_average": load,
                "implicit_ratio": min(r["implicit_ratio"] for r in results),
                "ratio": ratio,
                "target": TARGET_RATIO,
                "meets_target": ratio >= TARGET_RATIO,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
