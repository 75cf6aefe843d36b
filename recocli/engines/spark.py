"""`reco recommend --engine spark`: the local engine's scoring (recocli.recommend.run.score_batch) run
on Spark's executors, one Arrow batch of users at a time, with the model's weights, vocabularies and
blocklist broadcast (safetensors and Arrow IPC: nothing is pickled but the bytes). Each user reaches
its executor with all of its interactions (grouped by Spark), so a batch is scored as locally.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from recocli.config import ModelSettings, RecommendSettings
from recocli.models import build_model
from recocli.models.base import Recommender
from recocli.models.vocab import Vocabs, Vocabulary
from recocli.recommend.run import Scorer, score_batch

COLUMNS = ["user_id", "item_id", "ts", "label"]
OUTPUT = "user_id string, rank int, item_row long, score double, cold boolean"


def spark_scorer(spark: SparkSession) -> Scorer:
    """A scorer for recocli.recommend.run.recommend that scores on `spark`'s executors."""

    def score(
        model: Recommender,
        vocabs: Vocabs,
        interactions: pa.Table,
        users: list[str],
        k: int,
        blocked: torch.Tensor,
        cfg: RecommendSettings,
    ) -> tuple[list[dict[str, np.ndarray]], list[str]]:
        context = spark.sparkContext
        shared = context.broadcast(
            {
                "kind": model.kind,
                "sizes": (model.n_users, model.n_items),
                "config": dataclasses.asdict(model.cfg),
                "weights": save_tensors({n: t.contiguous() for n, t in model.state_dict().items()}),
                "users": _ipc(vocabs.users.to_arrow()),
                "items": _ipc(vocabs.items.to_arrow()),
                "blocked": blocked.numpy().tobytes(),
                "k": k,
                "batch_users": cfg.batch_users,
                "exclude_seen": cfg.exclude_seen,
            }
        )
        wanted = pa.array(users, pa.string())
        mine = interactions.select(COLUMNS).filter(pc.is_in(interactions["user_id"], value_set=wanted))
        events = (
            spark.createDataFrame(mine)
            .groupBy("user_id")
            .agg(F.collect_list(F.struct("item_id", "ts", "label")).alias("events"))
        )
        frame = spark.createDataFrame(pa.table({"user_id": wanted})).join(events, "user_id", "left")
        scored = frame.mapInArrow(lambda batches: _score_batches(batches, shared.value), OUTPUT).toArrow()
        shared.unpersist()
        # in the order of `users`, each list by rank, as the local engine writes them
        scored = scored.append_column("order", pc.index_in(scored["user_id"], value_set=wanted))
        scored = scored.sort_by([("order", "ascending"), ("rank", "ascending")])
        cold = scored.filter(scored["cold"])
        rows = scored.filter(pc.invert(scored["cold"]))
        part = {
            "user_id": np.asarray(rows["user_id"].to_pylist(), dtype=object),
            "rank": rows["rank"].to_numpy().astype(np.int64),
            "item_row": rows["item_row"].to_numpy(),
            "score": rows["score"].to_numpy(),
        }
        return [part], cold["user_id"].to_pylist()

    return score


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _table(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def _score_batches(batches: Iterator[pa.RecordBatch], shared: dict) -> Iterator[pa.RecordBatch]:
    """Executor side: rebuild the model once, then score each Arrow batch of (user, events) rows."""
    known = {f.name for f in dataclasses.fields(ModelSettings)}
    cfg = ModelSettings(**{k: v for k, v in shared["config"].items() if k in known})
    model = build_model(shared["kind"], *shared["sizes"], cfg)
    model.load_state_dict(load_tensors(shared["weights"]), strict=True)
    model.eval()
    vocabs = Vocabs(
        Vocabulary.from_arrow(_table(shared["users"])), Vocabulary.from_arrow(_table(shared["items"]))
    )
    blocked = torch.from_numpy(np.frombuffer(shared["blocked"], dtype=bool).copy())
    for batch in batches:
        users, events = batch.column("user_id"), batch.column("events")
        flat = pc.list_flatten(events)
        interactions = pa.table(
            {
                "user_id": users.take(pc.list_parent_indices(events)),
                "item_id": flat.field("item_id"),
                "ts": flat.field("ts"),
                "label": flat.field("label"),
            }
        )
        ids = users.to_pylist()
        for start in range(0, len(ids), shared["batch_users"]):
            chunk = ids[start : start + shared["batch_users"]]
            part, cold = score_batch(
                model, vocabs, interactions, chunk, shared["k"], blocked, shared["exclude_seen"]
            )
            yield pa.RecordBatch.from_pydict(
                {
                    "user_id": [*part["user_id"].tolist(), *cold],
                    "rank": [*part["rank"].tolist(), *[None] * len(cold)],
                    "item_row": [*part["item_row"].tolist(), *[None] * len(cold)],
                    "score": [*part["score"].tolist(), *[None] * len(cold)],
                    "cold": [False] * len(part["rank"]) + [True] * len(cold),
                },
                schema=pa.schema(
                    [
                        ("user_id", pa.string()),
                        ("rank", pa.int32()),
                        ("item_row", pa.int64()),
                        ("score", pa.float64()),
                        ("cold", pa.bool_()),
                    ]
                ),
            )
