"""Training on the warehouse: the cursor, the lock, the registry around the in-memory fits.

Full: read bronze/events and bronze/feedback at pinned Delta versions, fit a new model, publish it
with those versions as its cursor. Incremental (once a model exists): load the served version,
read only the rows committed after its cursor (Delta change data feed between the recorded and
the current versions, never timestamps), fine-tune on them with a replay sample of the model's
remembered histories, publish with the versions just read as the new cursor. Nothing is
published before the whole fit is done, so a killed run leaves the cursor where it was and the
rerun trains on the same rows: none skipped, none consumed twice by published versions.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from lakehouse import catalog, delta
from lakehouse.catalog import TableSpec, Warehouse
from lakehouse.errors import RecoError
from lakehouse.locks import exclusive_lock
from lakehouse.registry import ModelRegistry
from recocli.config import ModelKind, Settings
from recocli.models.store import ModelVersion, load_version, model_config, publish_version
from recocli.training.interactions import (
    EVENT_COLUMNS,
    FEEDBACK_COLUMNS,
    Interactions,
    TooLittleData,
    compact_from_bronze,
    from_bronze,
)

TRAIN_TABLES: tuple[tuple[TableSpec, list[str]], ...] = (
    (catalog.EVENTS, EVENT_COLUMNS),
    (catalog.FEEDBACK, FEEDBACK_COLUMNS),
)
LOCK_NAME = "train"
# [train] tables of one model kind each: a version records only its own kind's.
KIND_TABLES = typing.get_args(ModelKind)
# What a fine-tune reads from [train]; the rest of a version's config is its parent's.
FINETUNE_SETTINGS = (
    "finetune_lr", "finetune_epochs", "finetune_batch_size", "finetune_steps", "new_row_lr_scale",
    "replay_ratio", "replay_size", "rating_threshold", "min_count", "weights",
)  # fmt: skip

Say = Callable[[str], None]


@dataclass
class TrainResult:
    """What one `reco train` pass did. version None: nothing new, nothing published."""

    mode: str  # "full", "incremental" or "none"
    version: int | None
    parent: int | None
    cursor: dict[str, int]
    rows: dict[str, int] = field(default_factory=dict)
    interactions: int = 0
    seconds: float = 0.0
    device: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def table_versions(warehouse: Warehouse) -> dict[str, int]:
    """Current Delta version of each training table (-1: not created yet)."""
    out = {}
    for spec, _ in TRAIN_TABLES:
        version = delta.current_version(warehouse.uri(spec))
        out[spec.name] = -1 if version is None else version
    return out


def train_lock(warehouse: Warehouse):
    """One trainer at a time per warehouse (cron overlap, `reco ingest --train`, rollback)."""
    return exclusive_lock(warehouse.lock(LOCK_NAME), "reco train")


class WarehouseTrainer:
    """Trains the warehouse's model; keeps the served version in memory between runs, so that
    `reco ingest --train` does not reload it for every micro-batch."""

    def __init__(self, settings: Settings, say: Say | None = None, progress: bool | None = None) -> None:
        self.settings = settings
        self.warehouse = Warehouse(settings.warehouse)
        self.registry = ModelRegistry(self.warehouse)
        self.say = say or (lambda _text: None)
        self.progress = progress
        self._current: ModelVersion | None = None

    def run(self, full: bool = False) -> TrainResult:
        """One training pass under the warehouse's train lock (BusyError when another holds it)."""
        self.warehouse.require()  # before the lock, whose file would create it
        with train_lock(self.warehouse):
            return self._run(full)

    def _run(self, full: bool) -> TrainResult:
        started = time.perf_counter()
        latest = self.registry.latest()
        pinned = table_versions(self.warehouse)
        if full or latest is None:
            result = self._full(pinned, latest, explicit=full)
        else:
            result = self._incremental(pinned, latest)
        result.seconds = round(time.perf_counter() - started, 3)
        return result

    # ---- full ----

    def _full(self, pinned: dict[str, int], latest: int | None, explicit: bool) -> TrainResult:
        rows = {spec.name: 0 for spec, _ in TRAIN_TABLES}

        def batches(spec: TableSpec, columns: list[str]) -> Iterator[pa.RecordBatch]:
            """The pinned snapshot in record batches, counted as they pass."""
            if pinned[spec.name] >= 0:
                for batch in delta.version_batches(self.warehouse.uri(spec), pinned[spec.name], columns):
                    rows[spec.name] += batch.num_rows
                    yield batch

        train = self.settings.train
        interactions = compact_from_bronze(
            *(batches(spec, columns) for spec, columns in TRAIN_TABLES), train.weights, train.rating_threshold
        )
        if interactions.num_rows == 0:
            empty = TooLittleData(
                f"nothing to train on yet in {self.warehouse.root} (no usable events): run `reco ingest`"
            )
            return _not_yet(empty, explicit, latest, pinned, rows)
        from recocli.training.rank import fit_ranker  # torch and Lightning load only when there is work

        kind = self.settings.model.kind
        self.say(
            f"full training of {kind} on {interactions.num_rows:,} interactions ({_versions_text(pinned)})"
        )
        with tempfile.TemporaryDirectory(prefix="reco-training-log-") as log:
            try:
                ranker, metrics = fit_ranker(
                    kind, interactions, self.settings, progress=self.progress, log_dir=Path(log)
                )
            except TooLittleData as exc:
                return _not_yet(exc, explicit, latest, pinned, rows)
            model, vocabs = ranker.model, ranker.vocabs
            consumed = {name: [0, v] if v >= 0 else None for name, v in pinned.items()}
            config = {"model": model_config(model), "train": self._train_config(kind)}
            meta = self._metadata("full", config, pinned, consumed, rows, interactions, metrics)
            meta["replaces"] = latest
            version = publish_version(
                self.registry, model, vocabs, meta, parent=None, ranker=ranker.state, training_log=Path(log)
            )
        self._current = ModelVersion(version, model, vocabs, {**meta, "version": version}, ranker.state)
        return TrainResult(
            "full",
            version,
            None,
            pinned,
            rows,
            interactions.num_rows,
            device=metrics["device"],
            metrics=metrics,
        )

    # ---- incremental ----

    def _incremental(self, pinned: dict[str, int], latest: int) -> TrainResult:
        recorded = self.registry.metadata(latest).get("cursor", {})
        cursor = {name: int(recorded.get(name, -1)) for name in pinned}
        for name, version in pinned.items():
            if version < cursor[name]:
                raise RecoError(
                    f"{name} is at version {version}, behind model v{latest}'s cursor {cursor[name]}: "
                    "the table was replaced; retrain with `reco train --full`"
                )
        consumed = {n: [cursor[n] + 1, pinned[n]] if pinned[n] > cursor[n] else None for n in pinned}
        if not any(consumed.values()):
            return TrainResult(
                "none",
                None,
                latest,
                cursor,
                message=f"nothing new since v{latest} ({_versions_text(cursor)})",
            )
        tables = {}
        for spec, columns in TRAIN_TABLES:
            span = consumed[spec.name]
            tables[spec.name] = (
                None
                if span is None
                else delta.read_changes(self.warehouse.uri(spec), cursor[spec.name], span[1], columns)
            )
        rows = {name: (0 if t is None else t.num_rows) for name, t in tables.items()}
        interactions = self._interactions(tables)
        if interactions.num_rows == 0:
            # Nothing to learn (e.g. only impressions): the cursor stays, the rows are read again next time.
            message = f"{sum(rows.values()):,} rows since v{latest}, none usable for training: no new version"
            return TrainResult("none", None, latest, cursor, rows, message=message)
        current = self._load(latest)
        self.say(f"fine-tuning v{latest} on {interactions.num_rows:,} new interactions")
        report: dict[str, Any] = {}
        version = self._learn_and_publish(current, interactions, (pinned, consumed, rows), latest, report)
        return TrainResult(
            "incremental", version, latest, pinned, rows, interactions.num_rows,
            device=report.get("device", ""), metrics=report,
        )  # fmt: skip

    def _learn_and_publish(
        self,
        current: ModelVersion,
        interactions: pa.Table,
        spans: tuple[dict[str, int], dict[str, list[int] | None], dict[str, int]],
        latest: int,
        report: dict[str, Any],
    ) -> int:
        """The ranker's learn_batch on `interactions` (choose, fine-tune, count), then the next version
        published with its training curve; `spans`: (pinned, consumed, rows) for the metadata. A
        failure drops the half-trained model from memory (reloaded from the registry next time)."""
        from recocli.recommend.ranker import Ranker
        from recocli.training.rank import learn_batch

        ranker = Ranker.of(current)
        with tempfile.TemporaryDirectory(prefix="reco-training-log-") as log:
            try:
                learn_batch(ranker, interactions, self.settings, report=report, log_dir=Path(log))
                config = self._finetune_config(current)
                meta = self._metadata("incremental", config, *spans, interactions, report)
                version = publish_version(
                    self.registry, current.model, current.vocabs, meta, parent=latest,
                    ranker=ranker.state, training_log=Path(log),
                )  # fmt: skip
            except BaseException:
                self._current = None
                raise
        self._current = ModelVersion(
            version, current.model, current.vocabs, {**meta, "version": version}, ranker.state
        )
        return version

    def _load(self, version: int) -> ModelVersion:
        if self._current is None or self._current.version != version:
            self._current = load_version(self.registry, version)
        return self._current

    # ---- helpers ----

    def _interactions(self, tables: dict[str, pa.Table | None]) -> pa.Table:
        train = self.settings.train
        return from_bronze(
            tables[catalog.EVENTS.name], tables[catalog.FEEDBACK.name], train.weights, train.rating_threshold
        )

    def _train_config(self, kind: str) -> dict[str, Any]:
        """The training settings a full fit of `kind` used: the shared ones and that kind's own."""
        train = dataclasses.asdict(self.settings.train)
        return {**{k: v for k, v in train.items() if k not in KIND_TABLES}, kind: train[kind]}

    def _finetune_config(self, parent: ModelVersion) -> dict[str, Any]:
        """A fine-tuned version's config: its parent's (the model and how it was first trained stay
        what they were), with this run's fine-tune settings over it; `changed` lists those that differ."""
        recorded = parent.metadata.get("config", {})
        before = dict(recorded.get("train", {}))
        now = dataclasses.asdict(self.settings.train)
        train = {**before, **{name: now[name] for name in FINETUNE_SETTINGS}}
        changed = sorted(f"train.{name}" for name in FINETUNE_SETTINGS if before.get(name) != now[name])
        return {"model": model_config(parent.model), "train": train, "changed": changed}

    def _metadata(
        self,
        mode: str,
        config: dict[str, Any],
        cursor: dict[str, int],
        consumed: dict[str, list[int] | None],
        rows: dict[str, int],
        interactions: Interactions,
        metrics: dict[str, Any],
    ) -> dict[str, Any]:
        return {
            "mode": mode,
            "config": config,
            "cursor": cursor,
            "consumed": consumed,
            "rows": rows,
            "interactions": interactions.num_rows,
            "metrics": {k: v for k, v in metrics.items() if k not in ("device", "seconds")},
            "device": metrics.get("device", ""),
            "seconds": metrics.get("seconds"),
        }


def _not_yet(
    reason: TooLittleData, explicit: bool, latest: int | None, pinned: dict[str, int], rows: dict[str, int]
) -> TrainResult:
    """No first model yet: a scheduled run says why and publishes nothing; `--full` stops on it."""
    if explicit:
        raise reason
    return TrainResult("none", None, latest, pinned, rows, message=str(reason))


def _versions_text(versions: dict[str, int]) -> str:
    return ", ".join(f"{name}@{v}" for name, v in versions.items())


class TrainAfterBatch:
    """`reco ingest --train`: after a micro-batch that wrote events or feedback, one incremental
    pass in the same process (the model stays in memory between batches). A busy lock (a cron
    `reco train` running) skips the pass: the rows wait behind the cursor for the next one."""

    def __init__(self, settings: Settings, say: Say | None = None) -> None:
        self.trainer = WarehouseTrainer(settings, say=say, progress=False)

    def wants(self, tables_written: list[str]) -> bool:
        return any(spec.name in tables_written for spec, _ in TRAIN_TABLES)

    def __call__(self, tables_written: list[str]) -> TrainResult | None:
        """The pass's result; None when the batch wrote nothing to train on."""
        from lakehouse.errors import BusyError

        if not self.wants(tables_written):
            return None
        try:
            return self.trainer.run()
        except BusyError as exc:
            return TrainResult("busy", None, None, {}, message=f"fine-tune skipped: {exc}")
