"""`reco recommend --engine spark`: the local engine's scoring (recocli.recommend.run.top_k) run
on Spark's executors, one Arrow batch of users at a time, with the model's weights, vocabularies,
blocklist and ranker prior (log P_recent and the blend weight) broadcast (safetensors and Arrow IPC:
nothing is pickled but the bytes). Each user reaches
its executor with all of its interactions (grouped by Spark), so a batch is scored as locally.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from recocli.config import Settings
from recocli.models import build_model
from recocli.models.store import ModelVersion, model_config, recorded_model_settings
from recocli.models.vocab import Vocabs, Vocabulary
from recocli.recommend.run import Engine, TopK, model_rows, ranker_prior, top_k

COLUMNS = ["user_id", "item_id", "ts", "label"]
OUTPUT = "user_id string, rank int, item_row long, score double, cold boolean"
SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int32()),
        ("item_row", pa.int64()),
        ("score", pa.float64()),
        ("cold", pa.bool_()),
    ]
)


def spark_scorer(spark: SparkSession) -> Engine:
    """An engine for recocli.recommend.run.recommend that scores on `spark`'s executors."""

    def score(
        loaded: ModelVersion,
        interactions: pa.Table,
        users: list[str],
        k: int,
        blocked: torch.Tensor | None,
        item_ids: pa.Array,
        settings: Settings,
    ) -> tuple[pa.Table, pa.Array]:
        model, vocabs, cfg = loaded.model, loaded.vocabs, settings.recommend
        log_prior, weight = ranker_prior(loaded)
        shared = spark.sparkContext.broadcast(
            {
                "kind": model.kind,
                "sizes": (model.n_users, model.n_items),
                "config": model_config(model),
                "weights": save_tensors({n: t.cpu().contiguous() for n, t in model.state_dict().items()}),
                "users": _ipc(vocabs.users.to_arrow()),
                "items": _ipc(vocabs.items.to_arrow()),
                "blocked": None if blocked is None else blocked.cpu().numpy().tobytes(),
                "prior": save_tensors({"log_prior": log_prior.float().contiguous()}),
                "weight": weight,
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
        rows = scored.filter(pc.invert(scored["cold"]))
        lists = model_rows(
            rows["user_id"].combine_chunks(),
            rows["rank"].to_numpy(),
            item_ids.take(rows["item_row"].combine_chunks()),
            rows["score"].to_numpy(),
            loaded.version,
        )
        return lists, scored.filter(scored["cold"])["user_id"].combine_chunks()

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
    model = build_model(
        shared["kind"], *shared["sizes"], recorded_model_settings(shared["kind"], shared["config"])
    )
    model.load_state_dict(load_tensors(shared["weights"]), strict=True)
    model.eval()
    vocabs = Vocabs(
        Vocabulary.from_arrow(_table(shared["users"])), Vocabulary.from_arrow(_table(shared["items"]))
    )
    blocked = None
    if shared["blocked"] is not None:
        blocked = torch.from_numpy(np.frombuffer(shared["blocked"], dtype=bool).copy())
    prior = (load_tensors(shared["prior"])["log_prior"], shared["weight"])
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
            top = top_k(
                model, vocabs, interactions, chunk, shared["k"], blocked, shared["exclude_seen"], prior
            )
            yield _scored_batch(chunk, top)


def _scored_batch(users: list[str], top: TopK) -> pa.RecordBatch:
    """One chunk's lists as OUTPUT rows: a row per (user, rank) with a finite score, one `cold` row
    per user the model had nothing on."""
    keep = np.isfinite(top.values) & top.has_signal[:, None]
    user_index, rank_index = np.nonzero(keep)
    cold = [u for u, signal in zip(users, top.has_signal, strict=True) if not signal]
    n = len(user_index)
    return pa.RecordBatch.from_pydict(
        {
            "user_id": [*np.asarray(users, dtype=object)[user_index].tolist(), *cold],
            "rank": [*(rank_index + 1).tolist(), *[None] * len(cold)],
            "item_row": [*top.rows[user_index, rank_index].tolist(), *[None] * len(cold)],
            "score": [*top.values[user_index, rank_index].astype(np.float64).tolist(), *[None] * len(cold)],
            "cold": [False] * n + [True] * len(cold),
        },
        schema=SCHEMA,
    )
