"""In-memory training: a full fit with validation and early stopping, and the incremental fine-tune.

No warehouse here: interactions come in as Arrow tables (recocli.training.interactions.SCHEMA),
so `reco evaluate` can run prequential protocols on them directly; recocli.training.incremental
wraps these for the warehouse (cursor, replay, registry). Lightning's Trainer runs every loop
(devices, precision, early stopping); this module only decides what to train on.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pyarrow as pa
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, EarlyStopping, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.loggers.tensorboard import _TENSORBOARD_AVAILABLE

from lakehouse.errors import RecoError
from recocli.config import ModelKind, Settings, TrainSettings
from recocli.metrics import hit_and_ndcg
from recocli.models import build_model
from recocli.models.base import Recommender
from recocli.models.padded import PAD, latest_padded
from recocli.models.vocab import Vocabs
from recocli.training.datamodule import (
    Batch,
    InteractionDataModule,
    concat_examples,
    mf_examples,
    sasrec_examples,
    sort_by_user_time,
    user_time_order,
    validation_examples,
)
from recocli.training.interactions import Encoded, Interactions, TooLittleData, decode, encode

K = 10


def quiet_lightning() -> None:
    """Lightning's info lines and known-harmless warnings would drown the command's own output."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*does not have many workers.*",
        ".*LeafSpec.*",
        ".*GPU available but not used.*",
        ".*smaller than the logging interval.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def _uses_gpu(train: TrainSettings) -> bool:
    if train.accelerator in ("gpu", "cuda"):
        return True
    return train.accelerator == "auto" and torch.cuda.is_available()


def _devices(text: str) -> Any:
    """Lightning's devices from the setting: "auto", a count (-1: all) or a list "0,1"."""
    text = str(text).strip()
    if text == "auto":
        return text
    if "," in text:
        return [int(part) for part in text.split(",") if part.strip()]
    return int(text)


def _device_count(train: TrainSettings) -> int:
    try:
        devices = _devices(train.devices)
    except ValueError:
        return 1  # Lightning reports the bad value
    if isinstance(devices, list):
        return len(devices)
    if devices in ("auto", -1):
        return max(torch.cuda.device_count(), 1) if _uses_gpu(train) else 1
    return int(devices)


def fit_model(trainer: L.Trainer, model: Recommender, data: L.LightningDataModule) -> None:
    """`trainer.fit`, with Ctrl-C kept a KeyboardInterrupt: Lightning turns it into sys.exit(1), so an
    interrupted training would exit as a failure, not 130 (interrupted) as every other command."""
    try:
        trainer.fit(model, datamodule=data)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise


def make_trainer(
    train: TrainSettings,
    max_epochs: int,
    callbacks: list[Callback] | None = None,
    progress: bool = False,
    validate: bool = False,
    log_dir: Path | None = None,
) -> L.Trainer:
    """A Trainer with the configured accelerator/devices/strategy, bf16 mixed precision on GPU.
    `log_dir`: where every epoch's losses and metrics are logged (CSV, and TensorBoard when installed)."""
    quiet_lightning()
    torch.set_num_threads(train.threads if train.threads > 0 else os.cpu_count() or 1)
    precision = train.precision
    if precision == "auto":
        precision = "bf16-mixed" if _uses_gpu(train) else "32-true"
    # Plain "ddp" (also what "auto" picks for several devices) re-runs the whole command once per
    # device, which a job that holds the train lock and pins table versions cannot allow;
    # "ddp_spawn" runs only the fit in the extra processes and hands rank 0's weights back (only
    # this process publishes). Unused parameters allowed: a model's optional parts (mf without
    # history) get no gradient, which plain DDP refuses.
    several = _device_count(train) > 1
    spawn = "ddp_spawn_find_unused_parameters_true"
    strategy = spawn if several and train.strategy in ("auto", "ddp", "ddp_spawn") else train.strategy
    callbacks = list(callbacks or [])
    if several:
        callbacks.append(EndProcessGroup())
    if progress:
        callbacks.append(RichProgressBar(leave=False))
    try:
        return _trainer(train, strategy, precision, max_epochs, callbacks, progress, validate, log_dir)
    except (MisconfigurationException, ValueError, RuntimeError) as exc:
        raise RecoError(
            f"cannot train with accelerator={train.accelerator} devices={train.devices} "
            f"strategy={train.strategy}: {str(exc).splitlines()[0]}"
        ) from None


def _trainer(
    train: TrainSettings,
    strategy: str,
    precision: str,
    max_epochs: int,
    callbacks: list[Callback],
    progress: bool,
    validate: bool,
    log_dir: Path | None,
) -> L.Trainer:
    return L.Trainer(
        accelerator=train.accelerator,
        devices=_devices(train.devices),
        strategy=strategy,
        precision=precision,
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=epoch_loggers(log_dir) if log_dir is not None else False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        limit_val_batches=None if validate else 0,
        # The same seed gives the same model on a GPU too: atomics in CUDA's backward passes
        # otherwise reorder sums from run to run. CPU training is deterministic as it is, and is
        # left alone: the flag would also fill every new empty tensor, for nothing.
        deterministic=True if _uses_gpu(train) else None,
    )


def epoch_loggers(log_dir: Path) -> list[Logger]:
    """A CSV log of every epoch (`metrics.csv`: epoch, step, train_loss, val_hr10, val_ndcg10) in
    `log_dir`, and TensorBoard's event files beside it when tensorboard is installed."""
    loggers: list[Logger] = [CSVLogger(log_dir, name="", version="")]
    if _TENSORBOARD_AVAILABLE:
        loggers.append(TensorBoardLogger(log_dir, name="", version="tensorboard", default_hp_metric=False))
    return loggers


def device_name(trainer: L.Trainer) -> str:
    device = trainer.strategy.root_device
    name = str(device)
    if device.type == "cuda":
        name = f"{name} ({torch.cuda.get_device_name(device)})"
    if trainer.num_devices > 1:
        name = f"{trainer.num_devices}× {name}, {type(trainer.strategy).__name__}"
    return f"{name}, {trainer.precision}"


class KeepBest(Callback):
    """Remembers the weights of the best validation epoch and restores them when fitting ends
    (early stopping alone would leave the weights of the last, worse epochs)."""

    def __init__(self, monitor: str = "val_hr10") -> None:
        self.monitor = monitor
        self.best: float | None = None
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        value = float(value)
        if self.best is None or value > self.best:
            self.best, self.best_epoch = value, trainer.current_epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.state is not None:
            pl_module.load_state_dict(self.state)


class EndProcessGroup(Callback):
    """Ends the DDP process group in each worker once its fit is done. Left to interpreter
    shutdown, gloo's threads can still hold tensors there and abort a worker (SIGABRT) that had
    trained well, which fails the whole command (pytorch/pytorch#179291)."""

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _show_progress() -> bool:
    return sys.stdout.isatty()


def split_validation(enc: Encoded, n_users: int, seed: int) -> tuple[Encoded, Encoded]:
    """Hold out, for up to `n_users` random users, their last positive when it is a first-time item.

    Returns (training interactions, one target per held-out user sorted by user). Users with fewer
    than 3 positives keep everything for training.
    """
    pos_index = np.flatnonzero(enc.labels > 0)
    if n_users <= 0 or len(pos_index) == 0:
        return enc, Encoded.empty()
    pos = enc.take(pos_index)
    order = user_time_order(pos)
    users, items = pos.users[order], pos.items[order]
    last = np.flatnonzero(np.r_[users[1:] != users[:-1], True])
    first = np.r_[0, last[:-1] + 1]
    candidates = []
    for a, b in zip(first, last, strict=True):
        if b - a >= 2 and items[b] not in items[a:b]:
            candidates.append(b)
    rng = np.random.default_rng(seed)
    chosen = np.array(candidates, dtype=np.int64)
    if len(chosen) > n_users:
        chosen = rng.choice(chosen, n_users, replace=False)
    held = pos_index[order[chosen]]
    mask = np.ones(len(enc), dtype=bool)
    mask[held] = False
    targets = enc.take(held)
    return enc.take(mask), targets.take(np.argsort(targets.users, kind="stable"))


def examples(
    model: Recommender,
    enc: Encoded,
    is_target: np.ndarray | None = None,
    seed: int = 0,
    target_gap_s: float = 0.0,
) -> Batch:
    """Training examples for this model kind (sasrec: windows, each position learning the next
    item, or a later visit's with `target_gap_s`; mf: rows, explicit negatives too)."""
    if model.kind == "sasrec":
        return sasrec_examples(enc, model.cfg.max_len, is_target, target_gap_s, seed)
    return mf_examples(enc, model.history_len, is_target)


def fit_full(
    kind: ModelKind,
    interactions: Interactions,
    settings: Settings,
    seed: int | None = None,
    val: bool = True,
    progress: bool | None = None,
    log_dir: Path | None = None,
) -> tuple[Recommender, Vocabs, dict]:
    """Train a new model on `interactions`, with validation and early stopping when `val`.

    Returns the model (its histories hold every positive given), the vocabularies and metrics
    (best val_hr10 / val_ndcg10, epochs, examples, device, seconds).
    """
    started = time.perf_counter()
    train = settings.train
    seed = train.seed if seed is None else seed
    L.seed_everything(seed, workers=False, verbose=False)
    vocabs = Vocabs()
    enc = encode(interactions, vocabs, min_count=train.min_count)
    if not len(enc):
        raise TooLittleData(f"nothing to train {kind} on yet: every interaction is below train.min_count")
    model = build_model(kind, len(vocabs.users), len(vocabs.items), settings.model.of(kind))
    fit = train.of(kind)
    model.lr, model.weight_decay = fit.lr, fit.weight_decay
    fit_part, targets = split_validation(enc, fit.val_users if val else 0, seed)
    val_batch = validation_examples(fit_part, targets, model.cfg.max_len) if len(targets) else None
    train_batch = examples(model, fit_part)
    if not len(train_batch[0]):
        raise TooLittleData(
            f"too little to train {kind} on yet: no user has a positive after an earlier one to learn "
            f"from (interactions: {len(enc):,})"
        )
    data = InteractionDataModule(train_batch, val_batch, train.batch_size, seed, train.min_epoch_steps)
    callbacks: list[Callback] = []
    keep = KeepBest()
    if val_batch is not None:
        callbacks = [EarlyStopping("val_hr10", mode="max", patience=train.patience), keep]
    show = _show_progress() if progress is None else progress
    trainer = make_trainer(
        train, fit.epochs, callbacks, show, validate=val_batch is not None, log_dir=log_dir
    )
    model.train()
    fit_model(trainer, model, data)
    model.cpu().eval()
    positives = sort_by_user_time(enc.positives())
    model.remember(positives.users, positives.items, positives.ts, positives.weights)
    metrics: dict[str, Any] = {
        "examples": len(data.train[0]),
        "interactions": len(enc),
        "epochs": trainer.current_epoch,
        "train_loss": _float(trainer.callback_metrics.get("train_loss")),
        "device": device_name(trainer),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if val_batch is not None:
        # Measured here, on the weights kept (also right when DDP trained in other processes).
        hr, ndcg = evaluate_hits(model, val_batch)
        metrics.update(val_users=len(targets), best_epoch=keep.best_epoch, val_hr10=hr, val_ndcg10=ndcg)
    return model, vocabs, metrics


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 5)


def evaluate_hits(model: Recommender, batch: Batch, chunk: int = 1024) -> tuple[float, float]:
    """HR@10 and NDCG@10 over validation rows (user, history, target, seen)."""
    hits, ndcgs = [], []
    for start in range(0, len(batch[0]), chunk):
        users, histories, targets, seen = (t[start : start + chunk] for t in batch)
        hit, ndcg = hit_and_ndcg(model.score(users, histories), targets, seen, K)
        hits.append(hit)
        ndcgs.append(ndcg)
    if not hits:
        return 0.0, 0.0
    return float(torch.cat(hits).mean()), float(torch.cat(ndcgs).mean())


def build_histories(interactions: pa.Table, vocabs: Vocabs, max_len: int) -> torch.Tensor:
    """Each user's latest `max_len` positive item rows in time order, [n_users, max_len], PAD-left-padded.

    For scoring sasrec from interactions held elsewhere (e.g. `reco evaluate`): row u is user row u.
    """
    enc = sort_by_user_time(encode(interactions, vocabs).positives())
    return torch.from_numpy(latest_padded(enc.users, enc.items.astype(np.int64), len(vocabs.users), max_len))


def replay_from_memory(model: Recommender, rows: int, rng: np.random.Generator) -> Encoded:
    """About `rows` remembered positives: whole histories of random users (so sasrec replays
    sequences with their context, and mf replays the same rows as pairs)."""
    if rows <= 0:
        return Encoded.empty()
    lengths = (model.hist_items != PAD).sum(1).cpu().numpy()
    users = rng.permutation(np.flatnonzero(lengths))
    take = users[: int(np.searchsorted(np.cumsum(lengths[users]), rows)) + 1]
    return remembered(model, np.sort(take))


def replay_sample(model: Recommender, vocabs: Vocabs, rows: int, seed: int = 0) -> pa.Table:
    """A replay sample from the model's remembered histories, as an interaction table."""
    return decode(replay_from_memory(model, rows, np.random.default_rng(seed)), vocabs)


def prequential_hits(
    model: Recommender, new: Encoded, max_users: int = 2000, chunk: int = 1024
) -> float | None:
    """Before learning from `new`: the share of its positives that were in their user's top 10
    (no masking; ties counted in expectation, as recocli.metrics does). A test-then-train score of
    the model on the batch it is about to learn."""
    pos = new.positives()
    pos = pos.take(pos.users < model.n_users)
    if not len(pos):
        return None
    users = np.unique(pos.users)[:max_users]
    pos = pos.take(np.isin(pos.users, users))
    scores = model.score(torch.from_numpy(users))
    slot = torch.from_numpy(np.searchsorted(users, pos.users))
    items = torch.as_tensor(pos.items, dtype=torch.long)
    hits = [
        hit_and_ndcg(scores[slot[n : n + chunk]], items[n : n + chunk], None, K)[0]
        for n in range(0, len(items), chunk)
    ]
    return round(float(torch.cat(hits).mean()), 4)


def fine_tune(
    model: Recommender,
    vocabs: Vocabs,
    new_interactions: pa.Table,
    replay_interactions: pa.Table | None,
    settings: Settings,
    seed: int | None = None,
    report: dict | None = None,
    log_dir: Path | None = None,
) -> Recommender:
    """Learn from new interactions, in place: admit new ids, grow the tables, train a few passes
    at the small fine-tune lr on the new rows plus replay, remember the new positives.

    `replay_interactions`: history to mix in; None samples `replay_ratio` × new rows (at most
    `replay_size`) from the model's remembered histories; an empty table replays nothing. sasrec
    trains on each new positive with the user's remembered history as context, and on replayed
    users' sequences. `report`, when given, receives the metrics.
    """
    started = time.perf_counter()
    train = settings.train
    seed = train.seed if seed is None else seed
    L.seed_everything(seed, workers=False, verbose=False)
    rows_before = (len(vocabs.users), len(vocabs.items))
    new = encode(new_interactions, vocabs, min_count=train.min_count)
    model.fresh = {}
    model.grow(len(vocabs.users), len(vocabs.items))
    positives = new.positives()
    context = remembered(model, np.unique(new.users))
    company = Encoded.concat([context, positives])
    model.fold_in(company.users, company.items, rows_before[1])
    metrics: dict[str, Any] = {
        "new_rows": new_interactions.num_rows,
        "new_interactions": len(new),
        "new_users": len(vocabs.users) - rows_before[0],
        "new_items": len(vocabs.items) - rows_before[1],
        "prequential_hr10": prequential_hits(model, new),
    }
    replay = _replay(model, vocabs, replay_interactions, train, len(new), seed)
    metrics["replay_interactions"] = len(replay)
    gap = float(train.finetune_target_gap)
    parts = [_new_examples(model, new, context, gap, seed)]
    if len(replay):
        parts.append(examples(model, replay, seed=seed, target_gap_s=gap))
    data = concat_examples(parts)
    metrics["examples"] = len(data[0]) if data else 0
    if data:
        metrics.update(_fine_tune_passes(model, data, train, seed, log_dir))
    positives = sort_by_user_time(positives)
    model.remember(positives.users, positives.items, positives.ts, positives.weights)
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    if report is not None:
        report.update(metrics)
    return model


def _replay(
    model: Recommender,
    vocabs: Vocabs,
    replay_interactions: pa.Table | None,
    train: TrainSettings,
    n_new: int,
    seed: int,
) -> Encoded:
    """The history to mix in: the given table, or `replay_ratio` × `n_new` rows (at most
    `replay_size`) sampled from the model's remembered histories."""
    if replay_interactions is None:
        wanted = min(train.replay_size, round(train.replay_ratio * n_new))
        return replay_from_memory(model, wanted, np.random.default_rng(seed))
    return encode(replay_interactions, vocabs)


def _fine_tune_passes(
    model: Recommender, data: Batch, train: TrainSettings, seed: int, log_dir: Path | None = None
) -> dict[str, Any]:
    """A few passes at the fine-tune lr over `data`, fresh rows at their own lr scale; the model
    ends on the CPU in eval mode. Returns the last train loss and the device."""
    model.lr, model.weight_decay = train.finetune_lr, train.of(model.kind).weight_decay
    model.fresh_lr_scale = train.new_row_lr_scale
    trainer = make_trainer(train, train.finetune_epochs, progress=False, log_dir=log_dir)
    model.train()
    try:
        batch_size = max(train.finetune_batch_size, -(-len(data[0]) // max(train.finetune_steps, 1)))
        fit_model(trainer, model, InteractionDataModule(data, None, batch_size, seed))
    finally:
        model.fresh, model.fresh_lr_scale = {}, 1.0
    model.cpu().eval()
    return {"train_loss": _float(trainer.callback_metrics.get("train_loss")), "device": device_name(trainer)}


def _new_examples(
    model: Recommender, new: Encoded, context: Encoded, target_gap_s: float, seed: int
) -> Batch:
    """sasrec: the batch users' remembered histories (`context`) before their new positives, the
    targets on the new positives only (a later visit's, past `target_gap_s`, where there is one).
    mf: the new rows themselves (explicit negatives included), read after the remembered histories
    when it uses them (model.mf.history)."""
    if not len(new):
        return examples(model, new)
    if model.kind == "sasrec":
        new = new.positives()
    elif not model.reads_histories:
        return examples(model, new)
    merged = Encoded.concat([context, new])
    is_target = np.r_[np.zeros(len(context), dtype=bool), np.ones(len(new), dtype=bool)]
    return examples(model, merged, is_target, seed=seed, target_gap_s=target_gap_s)


def remembered(model: Recommender, users: np.ndarray) -> Encoded:
    """The remembered positives of these user rows, as interactions."""
    index = torch.from_numpy(np.asarray(users, dtype=np.int64))
    items = model.hist_items[index].cpu().numpy()
    u_idx, col = np.nonzero(items != PAD)
    return Encoded(
        users=index.numpy()[u_idx],
        items=items[u_idx, col],
        ts=model.hist_ts[index].cpu().numpy()[u_idx, col],
        weights=model.hist_weight[index].cpu().numpy()[u_idx, col],
        labels=np.ones(len(u_idx), dtype=np.int8),
    )


def copy_model(model: Recommender) -> Recommender:
    """An independent copy (e.g. a frozen baseline next to one that keeps learning)."""
    return copy.deepcopy(model)
