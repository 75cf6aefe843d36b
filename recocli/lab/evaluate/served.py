"""`reco evaluate --protocol served`: the served path, window by window, as a user runs it.

A fresh warehouse gets the events before the bootstrap cut (one bronze commit) and a full
`reco train`; then for each window: `reco recommend` for the users who take something new in it
(through `recommend()`, the function the command runs), scored against what they liked next
(positives on items they had not taken), then the window is committed to bronze and `reco train`
fine-tunes (`WarehouseTrainer`, as `reco ingest --train` does). Peers on the same users: the
first version, never updated (`reco recommend --model-version 1`), and time-decayed popularity
counted up to the window's start at half-lives of 1, 7, 30, 90 and 365 days and all time, seen
items removed. Users with history before the window (warm) and without (cold) are reported
apart, each figure with its standard error over users.

Bronze is written with delta-rs in one commit per window (what Spark's ingest would commit; its
validation and dedup are measured elsewhere), so the run needs no JVM.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.registry import ModelRegistry
from recocli.config import Settings
from recocli.lab.evaluate.peers import decayed_popularity, over_best_popularity, ratio
from recocli.lab.evaluate.prequential import Log, WindowTargets, evaluate_window, iso, window_targets
from recocli.lab.evaluate.split import Window, bootstrap_cut, prequential_windows, windows_line
from recocli.models.vocab import Vocabulary
from recocli.recommend.run import Request, recommend
from recocli.training.incremental import WarehouseTrainer
from recocli.training.interactions import from_bronze

K = 10
SERVED, STALE = "served", "never updated"
APP_ID = "reco-evaluate-served"


@dataclass
class Scores:
    """Per-user NDCG@10 of each list source, pooled over windows, and which users were warm."""

    values: dict[str, list[np.ndarray]] = field(default_factory=dict)
    warm: list[np.ndarray] = field(default_factory=list)

    def add(self, name: str, values: np.ndarray) -> None:
        self.values.setdefault(name, []).append(values)

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        warm = np.concatenate(self.warm) if self.warm else np.zeros(0, dtype=bool)
        out = {}
        for name, parts in self.values.items():
            values = np.concatenate(parts)
            row: dict[str, float | int | None] = {}
            for group, keep in (("", slice(None)), ("warm_", warm), ("cold_", ~warm)):
                row[f"{group}ndcg@{K}"], row[f"{group}ndcg@{K}_se"] = mean_se(values[keep])
            row.update(users=len(values), warm_users=int(warm.sum()))
            out[name] = row
        return out


def mean_se(values: np.ndarray) -> tuple[float | None, float | None]:
    """Mean and its standard error (None without values; se None with one)."""
    if len(values) == 0:
        return None, None
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else None
    return float(values.mean()), se


def events_of(events: pa.Table, batch_id: int) -> pa.Table:
    """Events (EVENT_COLUMNS and event_id) as a bronze commit: lineage columns added."""
    ts = events["ts"]
    n = events.num_rows
    now = pa.array([datetime.now(UTC)] * n, catalog.EVENTS.schema.field("ingested_at").type)
    extra = {
        "session_id": pa.nulls(n, pa.string()),
        "context": pa.nulls(n, catalog.EVENTS.schema.field("context").type),
        "event_date": pc.cast(ts, pa.date32()),
        "ingested_at": now,
        "batch_id": pa.array([batch_id] * n, pa.int64()),
        "source_file": pa.array([APP_ID] * n, pa.string()),
    }
    for name, column in extra.items():
        if name not in events.column_names:
            events = events.append_column(name, column)
    return events


def commit(warehouse: Warehouse, events: pa.Table, batch_id: int) -> None:
    delta.append_once(
        warehouse.uri(catalog.EVENTS), catalog.EVENTS, events_of(events, batch_id), APP_ID, batch_id
    )


def list_scores(rows: pa.Table, users: list[str], items: Vocabulary) -> torch.Tensor:
    """Served lists as a score matrix [users, catalog]: K - rank on listed items, -inf elsewhere."""
    scores = torch.full((len(users), len(items)), float("-inf"))
    slot = {u: n for n, u in enumerate(users)}
    item_rows = items.rows(rows["item_id"])
    for user, rank, item in zip(
        rows["user_id"].to_pylist(), rows["rank"].to_pylist(), item_rows, strict=True
    ):
        if item >= 0 and user in slot:
            scores[slot[user], int(item)] = float(K + 1 - rank)
    return scores


def run_served(events: pa.Table, name: str, settings: Settings, log: Log = lambda m: None) -> dict:
    """The protocol on `events` (EVENT_COLUMNS + event_id, any order) in a temporary warehouse."""
    started = time.perf_counter()
    events = events.take(pc.sort_indices(events, [("ts", "ascending"), ("event_id", "ascending")]))
    train = settings.train
    interactions = from_bronze(events, None, train.weights, train.rating_threshold)
    ts = events["ts"].cast(pa.int64()).to_numpy()
    cut = bootstrap_cut(ts, settings.evaluate.bootstrap)
    windows = prequential_windows(ts, cut, settings.evaluate.window)
    log(f"{name}: {windows_line(windows, settings.evaluate.window)}")
    with tempfile.TemporaryDirectory(prefix="reco-served-") as tmp:
        local = replace(settings, warehouse=str(Path(tmp) / "warehouse"))
        warehouse = Warehouse(local.warehouse)
        commit(warehouse, events.slice(0, cut), 0)
        trainer = WarehouseTrainer(local, progress=False)
        log(f"{name}: full training on {cut} events before {iso(int(ts[cut]))}")
        trainer.run(full=True)
        result = _windows(events, interactions, windows, cut, local, trainer, log)
    result.update(
        protocol="served", dataset=name, ks=[K], seed=train.seed,
        config={"bootstrap": settings.evaluate.bootstrap, "window": settings.evaluate.window},
    )  # fmt: skip
    result["data"].update(events=events.num_rows, bootstrap_events=cut, bootstrap_until=iso(int(ts[cut])))
    result["seconds"]["total"] = round(time.perf_counter() - started, 1)
    return result


def _windows(
    events: pa.Table,
    interactions: pa.Table,
    windows: list[Window],
    cut: int,
    settings: Settings,
    trainer: WarehouseTrainer,
    log: Log,
) -> dict:
    """Recommend → score → commit → train, per window."""
    warehouse = Warehouse(settings.warehouse)
    its = interactions["ts"].cast(pa.int64()).to_numpy()
    scores, rows, seconds = Scores(), [], {"recommend": 0.0, "train": 0.0}
    for n, window in enumerate(windows):
        history, items, targets = window_split(interactions, its, window)
        row = {"window": n, "start": iso(window.start), "users": len(targets.users),
               "warm_users": int(targets.warm.sum()), "ranker": _ranker(warehouse)}  # fmt: skip
        if targets.users:
            clock = time.perf_counter()
            lists = {SERVED: recommend(settings, Request(k=K, users=targets.users)).rows}
            seconds["recommend"] += time.perf_counter() - clock
            lists[STALE] = recommend(settings, Request(k=K, users=targets.users, model_version=1)).rows
            found = {name: list_scores(r, targets.users, items) for name, r in lists.items()}
            found.update(decayed_popularity(history, items, window.start))
            for name, matrix in found.items():
                values = evaluate_window(matrix.expand(len(targets.users), -1), targets, (K,))[f"ndcg@{K}"]
                scores.add(name, values)
                row[name] = round(float(values.mean()), 4)
            scores.warm.append(targets.warm)
        rows.append(row)
        log(f"window {n}: {len(targets.users)} users, served {row.get(SERVED)}, ranker {row['ranker']}")
        commit(warehouse, events.slice(window.lo, window.rows), n + 1)
        clock = time.perf_counter()
        trainer.run()
        seconds["train"] += time.perf_counter() - clock
    models = scores.summary()
    return {
        "models": models,
        "ranker": ModelRegistry(warehouse).metadata().get("ranker", {}),
        "windows": rows,
        "ratios": _ratios(models),
        "data": {"windows": len(windows), "scored_user_windows": sum(r["users"] for r in rows)},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def window_split(
    interactions: pa.Table, its: np.ndarray, window: Window
) -> tuple[pa.Table, Vocabulary, WindowTargets]:
    """What comes before `window` (the interactions, time-sorted, `its` their times), its items,
    and whom the window scores against what."""
    lo = int(np.searchsorted(its, window.start, side="left"))
    hi = int(np.searchsorted(its, window.end, side="left"))
    history, now = interactions.slice(0, lo), interactions.slice(lo, hi - lo)
    items = Vocabulary()
    items.add(history["item_id"])
    return history, items, window_targets(now, history, items, set(history["user_id"].to_pylist()))


def _ranker(warehouse: Warehouse) -> dict:
    """The served version's choice: half-life, weight, age weight, and the NDCG@10 it was chosen on;
    for users it does not know, the popularity's half-life and age weight, and theirs."""
    meta = ModelRegistry(warehouse).metadata().get("ranker", {})
    cold, on = meta.get("cold") or {}, meta.get("chosen_on", {})
    return {k: meta.get(k) for k in ("half_life", "weight", "age_weight")} | {
        "on": on.get("ndcg@10"),
        "cold_half_life": cold.get("half_life"),
        "cold_age_weight": cold.get("age_weight"),
        "cold_on": on.get("cold_ndcg@10"),
    }


def _ratios(models: dict[str, dict]) -> dict[str, float | None]:
    """Served NDCG@10 over the best popularity peer (in hindsight) and over never updating."""
    out = over_best_popularity(models, [SERVED], K)
    for group in ("", "warm_", "cold_"):
        key = f"{group}ndcg@{K}"
        out[f"{group}served/never updated"] = ratio(
            models.get(SERVED, {}).get(key), models.get(STALE, {}).get(key)
        )
    return out


def served_events(settings: Settings, data: Path | None) -> tuple[pa.Table, str]:
    """The events to replay: a MovieLens folder's ratings, or the warehouse's bronze events."""
    from recocli.data import movielens

    if data is not None:
        folder = movielens.detect(data)
        return movielens.read_ratings(folder), f"ml-{folder.dataset}"
    warehouse = Warehouse(settings.warehouse)
    columns = ["event_id", "user_id", "item_id", "event_type", "value", "ts"]
    events = delta.read_table(warehouse.uri(catalog.EVENTS), columns=columns)
    if events is None or events.num_rows == 0:
        from lakehouse.errors import RecoError

        raise RecoError(f"no bronze events in {warehouse.root}: pass --data PATH of a MovieLens folder")
    return events, f"warehouse {warehouse.root.name}"
