"""`reco train`: fine-tune the model on what was committed since its cursor, or train it anew."""

from __future__ import annotations

from typing import Annotated

import typer

from lakehouse.errors import BusyError
from recocli.commands.options import (
    DEFAULTS,
    AcceleratorOption,
    ConfigOption,
    JsonOption,
    WarehouseOption,
    default,
    settings_from,
)
from recocli.console import err, out, print_json


def describe(result) -> str:
    """One line for a TrainResult (shared with `reco ingest --train`)."""
    if result.version is None:
        return result.message or "no new version"
    cursor = ", ".join(f"{name}@{v}" for name, v in result.cursor.items())
    parent = f" from v{result.parent}" if result.parent else ""
    rows = sum(result.rows.values())
    return (
        f"model v{result.version} ({result.mode}{parent}): {rows:,} rows, {result.interactions:,} "
        f"interactions in {result.seconds:.2f}s on {result.device}; cursor {cursor}"
    )


def train(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Train a new model on a pinned snapshot of the tables (validation, early stopping).",
        ),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help=f"Model kind for a full training: sasrec or mf {default('model.kind')}."
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Epochs of a full training [default: train.sasrec.epochs / train.mf.epochs, "
            f"{DEFAULTS.train.sasrec.epochs} / {DEFAULTS.train.mf.epochs}].",
        ),
    ] = None,
    accelerator: AcceleratorOption = None,
    devices: Annotated[
        str | None,
        typer.Option(help=f"Lightning devices: auto, a count or a list like 0,1 {default('train.devices')}."),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(help=f"Lightning strategy: auto, ddp (several GPUs), … {default('train.strategy')}."),
    ] = None,
    skip_if_busy: Annotated[
        bool,
        typer.Option(
            "--skip-if-busy", help="Exit 0 with a message when another trainer holds the lock (cron)."
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Fine-tune the latest model on the rows committed after its cursor, and publish a new version.

    Reads only the Delta versions after the ones the latest version recorded (its cursor), mixes in
    a replay sample of history, and publishes the next version with the versions it read as its
    cursor. Without a model yet, or with --full, trains a new one on a pinned snapshot of the
    tables. Nothing new: says so and exits 0 without a new version. One trainer per warehouse: a
    second one exits 3 at once (0 with --skip-if-busy). A killed run publishes nothing; rerun it.
    """
    from recocli.training.incremental import WarehouseTrainer  # imports torch: only when training

    flags = {
        "model.kind": model,
        "train.accelerator": accelerator and accelerator.value,
        "train.devices": devices,
        "train.strategy": strategy,
    }
    settings = settings_from(config, warehouse, **flags)
    if epochs is not None:  # the epochs of the kind being trained
        settings = settings_from(
            config, warehouse, **flags, **{f"train.{settings.model.kind}.epochs": epochs}
        )
    say = (lambda _text: None) if json_output else (lambda text: out.print(text))
    trainer = WarehouseTrainer(settings, say=say)
    try:
        result = trainer.run(full=full)
    except BusyError as exc:
        if not skip_if_busy:
            raise
        message = f"skipped: {exc}"
        if json_output:
            print_json({"skipped": True, "message": message})
        else:
            err.print(message)
        return
    if json_output:
        print_json(result.as_dict())
        return
    if result.device:
        out.print(f"device: {result.device}")
    out.print(describe(result))
