"""`reco ingest`: the streaming job that lands events and feedback in Delta, exactly once."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lakehouse.settings import format_duration
from recocli.commands.options import (
    AcceleratorOption,
    ConfigOption,
    JsonOption,
    WarehouseOption,
    default,
    settings_from,
)
from recocli.console import out, print_json, print_table

if TYPE_CHECKING:
    from recocli.config import Settings
    from recocli.training.incremental import TrainAfterBatch
    from spark_jobs.batch import BatchReport
    from spark_jobs.ingest import IngestSummary


def ingest(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    landing: Annotated[
        Path | None,
        typer.Option(
            help=f"Landing folder: JSON lines under events/ and feedback/ {default('ingest.landing')}."
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Ingest everything landed so far, then exit (for cron).")
    ] = False,
    interval: Annotated[
        str | None,
        typer.Option(help=f"Micro-batch interval when running continuously {default('ingest.interval')}."),
    ] = None,
    max_bytes_per_batch: Annotated[
        str | None,
        typer.Option(
            help="Most landed bytes one micro-batch reads from each folder, e.g. 64MB; 0: no cap "
            f"{default('ingest.max_bytes_per_batch')}. Each batch passes through this process's memory."
        ),
    ] = None,
    max_files_per_batch: Annotated[
        int | None,
        typer.Option(min=1, help="Cap micro-batches by files instead of bytes [default: bytes]."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Spark checkpoint folder [default: WAREHOUSE/_checkpoints/QUERY_NAME]."),
    ] = None,
    query_name: Annotated[
        str | None,
        typer.Option(
            help="Name of the streaming query: its checkpoint and the app id of its Delta commits. A "
            "checkpoint belongs to one landing folder: give another folder its own name "
            "[default: reco_ingest].",
            show_default=False,
        ),
    ] = None,
    master: Annotated[str | None, typer.Option(help=f"Spark master {default('spark.master')}.")] = None,
    train: Annotated[
        bool,
        typer.Option(
            "--train",
            help="After each micro-batch that wrote events or feedback, fine-tune the model on it in this "
            "process and publish a new version (as `reco train`; the first one trains a new model).",
        ),
    ] = False,
    accelerator: AcceleratorOption = None,
    json_output: JsonOption = False,
) -> None:
    """Stream landed JSON lines into bronze/events, bronze/feedback and bronze/quarantine (Delta).

    Every line ends in exactly one place: a bronze table, the quarantine (with its reason) or the
    duplicate count. Killing the job at any moment and starting it again loses and duplicates
    nothing. Runs until Ctrl-C / SIGTERM (which finish the current batch and exit 0), or with
    --once until everything landed is in. Producers: write a hidden temp file, then rename it.
    """
    from spark_jobs.ingest import check_inputs, run_ingest  # starts a JVM: import only when ingesting

    settings = settings_from(
        config,
        warehouse,
        **{
            "ingest.landing": landing and str(landing),
            "ingest.interval": interval,
            "ingest.max_bytes_per_batch": max_bytes_per_batch,
            "ingest.max_files_per_batch": max_files_per_batch,
            "ingest.checkpoint": checkpoint and str(checkpoint),
            "ingest.query_name": query_name,
            "spark.master": master,
            "train.accelerator": accelerator and accelerator.value,
        },
    )

    check_inputs(settings)
    trainer = None
    if train:
        from recocli.training.incremental import TrainAfterBatch  # imports torch: only with --train

        trainer = TrainAfterBatch(settings)

    def on_start(writer: str) -> None:
        print_start(writer, settings, json_output)

    def on_batch(report: BatchReport) -> None:
        print_batch(report, json_output)
        if trainer is not None:
            train_after(trainer, report, json_output)

    summary = run_ingest(settings, once=once, on_start=on_start, on_batch=on_batch)
    print_summary(summary, settings, json_output)


def train_after(trainer: TrainAfterBatch, report: BatchReport, json_output: bool) -> None:
    """--train: fine-tune on what the batch wrote and say which version it published, if any."""
    from recocli.commands.train import describe

    result = trainer(report.tables_written)
    if result is None:
        return
    if json_output:
        print_json({"train": {"batch_id": report.batch_id, **result.as_dict()}})
    else:
        out.print(f"batch {report.batch_id}: fine-tune {result.seconds:.2f}s → {describe(result)}")


def print_start(writer: str, settings: Settings, json_output: bool) -> None:
    from spark_jobs.sources import describe_source

    source = describe_source(settings.ingest)
    if json_output:
        print_json({"writer": writer, "warehouse": settings.warehouse, "source": source})
    else:
        out.print(f"reco ingest: writer {writer}, {source} → {settings.warehouse}")


def print_batch(report: BatchReport, json_output: bool) -> None:
    if json_output:
        print_json({"batch": report.as_dict()})
        return
    lag = "-" if report.lag_s is None else format_duration(report.lag_s)
    replay = "" if report.committed_now else " (already committed before a restart)"
    out.print(
        f"batch {report.batch_id}: read {report.lines_read} → events {report.events_written}, "
        f"feedback {report.feedback_written}, quarantined {report.quarantined}, "
        f"duplicates {report.duplicates} in {report.duration_s:.2f}s, lag {lag}{replay}"
    )


def print_summary(summary: IngestSummary, settings: Settings, json_output: bool) -> None:
    totals = summary.totals()
    for refused in summary.refused:
        print(f"reco ingest: refused {refused.path}: {refused.reason}", file=sys.stderr)
    if json_output:
        print_json(
            {
                "summary": totals,
                "stopped_by_signal": summary.stopped_by_signal,
                "nothing_waited": summary.nothing_waited,
            }
        )
        return
    if summary.nothing_waited:
        out.print(f"reco ingest: nothing new in {settings.ingest.landing}, Spark not started")
        return
    print_table(
        "ingest summary",
        ["batches", "lines read", "events", "feedback", "quarantined", "duplicates", "seconds"],
        [
            [
                totals[k]
                for k in (
                    "batches",
                    "lines_read",
                    "events_written",
                    "feedback_written",
                    "quarantined",
                    "duplicates",
                    "duration_s",
                )
            ]
        ],
    )
