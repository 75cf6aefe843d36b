"""`reco demo`: the main job end to end on generated data, no network and no data files needed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from recocli.config import load_settings
from recocli.console import out, print_table
from recocli.data.synthetic import generate_lines
from recocli.errors import RecoError
from recocli.landing import write_landing_file

MARKER = ".reco-demo"


def prepare_demo_dir(folder: Path) -> None:
    """Start from an empty demo folder; only a folder this command made is ever wiped."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise RecoError(f"{folder} exists and was not made by `reco demo`: choose another --dir")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).touch()


def demo(
    folder: Annotated[
        Path, typer.Option("--dir", help="Folder for the demo's landing and warehouse.")
    ] = Path("demo"),
    events: Annotated[int, typer.Option(min=100, help="Events to generate.")] = 20_000,
    files: Annotated[int, typer.Option(min=1, help="Landing files per kind.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Generate a small event stream (with broken lines and duplicates), ingest it, check the counts.

    Exits 1 when what landed in Delta differs from what the generator planted.
    """
    from spark_jobs.ingest import run_ingest  # starts a JVM

    prepare_demo_dir(folder)
    landing, warehouse = folder / "landing", folder / "warehouse"
    lines, expected = generate_lines(events, seed=seed, broken_share=0.02, duplicate_share=0.02)
    for kind, kind_lines in lines.items():
        chunk = -(-len(kind_lines) // files)
        for n in range(files):
            part = kind_lines[n * chunk : (n + 1) * chunk]
            if part:
                write_landing_file(landing, kind, f"demo-{n:03d}.jsonl", part)
    out.print(f"generated {expected.lines} lines into {landing}")

    settings = load_settings(overrides={"warehouse": str(warehouse), "ingest.landing": str(landing)})
    summary = run_ingest(
        settings,
        once=True,
        on_start=lambda writer: out.print(f"ingesting with Spark Structured Streaming, writer {writer}"),
        on_batch=lambda r: out.print(
            f"batch {r.batch_id}: {r.lines_read} lines → {r.events_written} events, "
            f"{r.feedback_written} feedback, {r.quarantined} quarantined, {r.duplicates} duplicates"
        ),
    )
    totals = summary.totals()
    checks = [
        ("lines read", expected.lines, totals["lines_read"]),
        ("events", expected.events, totals["events_written"]),
        ("feedback", expected.feedback, totals["feedback_written"]),
        ("quarantined", sum(expected.quarantine.values()), totals["quarantined"]),
        ("duplicates", expected.duplicates, totals["duplicates"]),
    ]
    print_table("demo: planted vs ingested", ["", "planted", "ingested"], checks)
    out.print(f"tables under {warehouse}; try: reco status --warehouse {warehouse} --landing {landing}")
    if any(planted != got for _, planted, got in checks):
        out.print("[bold red]demo FAILED: ingested counts differ from the planted ones[/]")
        raise typer.Exit(1)
    out.print("[green]demo OK[/]: every planted line is accounted for")
