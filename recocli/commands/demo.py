"""`reco demo`: the whole loop on a simulated world — no network, no data files needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakehouse.errors import RecoError
from lakehouse.files import check_writable_folder
from recocli.config import Settings, load_settings
from recocli.console import out, print_table

if TYPE_CHECKING:
    from recocli.lab.loop import LoopResult

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
        Path, typer.Option("--dir", help="Folder for the demo's data, tables and report.")
    ] = Path("demo"),
    rounds: Annotated[int, typer.Option(min=3, help="Rounds of the loop.")] = 8,
    events: Annotated[int, typer.Option(min=100, help="Behaviour events per round.")] = 3000,
    users: Annotated[int, typer.Option(min=20, help="Simulated users.")] = 400,
    items: Annotated[int, typer.Option(min=20, help="Simulated items at the start.")] = 300,
    k: Annotated[int, typer.Option(min=1, help="List length served.")] = 10,
    holdout: Annotated[
        float,
        typer.Option(
            min=0.05, max=0.5, help="Users served the popular list (those the model knows: the control)."
        ),
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 7,
    warehouse: Annotated[
        Path | None,
        typer.Option(
            "--warehouse",
            "-w",
            help="A new (absent or empty) warehouse folder for the demo's tables [default: DIR/warehouse].",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="A MovieLens folder: replay its ratings instead of simulating (half bootstrap, "
            "the rest in --rounds windows; lists answered by what users really rated next)."
        ),
    ] = None,
) -> None:
    """Run the loop on a RecSim-style simulated world: simulate → ingest (+ fine-tune) → recommend →
    simulated feedback → ingest … and print per-round CTR of the model's lists against a popularity
    holdout of users the model knows (users new to the model apart), and how long new events take to
    reach new lists.

    Exits 1 when the loop is broken: model lists do not beat the holdout or their CTR does not rise.
    Writes DIR/report/report.md with PNG charts; the warehouse is DIR/warehouse unless --warehouse
    names a new one (the commands after the demo take it as --warehouse).
    """
    from recocli.data.movielens import detect
    from recocli.lab.loop import run_loop, run_replay_loop, write_report

    check_writable_folder(folder, "--dir")
    if warehouse is not None:
        check_writable_folder(warehouse, "--warehouse")
        if warehouse.exists() and any(warehouse.iterdir()):
            raise RecoError(f"{warehouse} is not empty: the demo fills a new warehouse, name another one")
    if data is not None:
        detect(data)
    tables = (warehouse or folder / "warehouse").expanduser().resolve()
    settings = demo_settings(folder, tables, users, items, seed)
    prepare_demo_dir(folder)
    if data is not None:
        out.print(f"reco demo: replaying {data} in {rounds} windows after a bootstrap half → {folder}")
        result = run_replay_loop(settings, data, rounds=rounds, k=k, holdout=holdout, say=out.print)
    else:
        out.print(
            f"reco demo: {rounds} rounds × {events} events, {users} simulated users, {items}+ items, "
            f"{int(holdout * 100)}% of users held out on the popular list → {folder}"
        )
        result = run_loop(
            settings, rounds=rounds, events_per_round=events, k=k, holdout=holdout, say=out.print
        )
    report = write_report(result, folder / "report")
    (folder / "report" / "demo.json").write_text(json.dumps(result.as_dict(), indent=2))
    verdict = result.verdict()
    print_summary(result, verdict)
    out.print(f"report: {report}")
    out.print(
        f"next: the demo's warehouse is {tables}: reco status -w {tables}; reco models list -w {tables}; "
        f"reco report -w {tables}"
    )
    if not verdict["ok"]:
        out.print(f"[bold red]demo FAILED: the loop is broken[/] ({verdict})")
        raise typer.Exit(1)
    out.print(
        f"[green]demo OK[/]: model lists {100 * verdict['ctr_model']:.2f}% CTR vs holdout "
        f"{100 * verdict['ctr_holdout']:.2f}%; CTR {100 * verdict['ctr_first_round']:.2f}% in the first "
        f"answered round, {100 * verdict['ctr_later_rounds']:.2f}% in the later ones"
    )


def demo_settings(folder: Path, warehouse: Path, users: int, items: int, seed: int) -> Settings:
    """Settings whose landing folder and simulated world live in the demo folder (and, by default,
    the warehouse)."""
    return load_settings(
        overrides={
            "warehouse": str(warehouse),
            "ingest.landing": str(folder / "landing"),
            "simulate.state": str(folder / "simworld"),
            "simulate.users": users,
            "simulate.items": items,
            "simulate.seed": seed,
        }
    )


def print_summary(result: LoopResult, verdict: dict[str, Any]) -> None:
    """One row: what was ingested, how many versions, both CTRs and the median events→lists time."""
    total = result.rounds
    print_table(
        "demo summary",
        [
            "events ingested",
            "feedback ingested",
            "quarantined",
            "model versions",
            "CTR model",
            "CTR holdout",
            "CTR new users",
            "events→lists (median s)",
        ],
        [
            [
                sum(r.events for r in total),
                sum(r.feedback for r in total),
                sum(r.quarantined for r in total),
                total[-1].model_version,
                f"{100 * verdict.get('ctr_model', 0):.2f}%",
                f"{100 * verdict.get('ctr_holdout', 0):.2f}%",
                "–" if verdict.get("ctr_new_users") is None else f"{100 * verdict['ctr_new_users']:.2f}%",
                sorted(r.freshness_seconds for r in total)[len(total) // 2],
            ]
        ],
    )
