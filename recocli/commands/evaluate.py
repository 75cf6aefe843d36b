"""`reco evaluate`: our models against their peers on the same data, offline and in real time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from lakehouse.files import check_writable_folder
from recocli.commands.options import ConfigOption, JsonOption, WarehouseOption, default, settings_from
from recocli.console import err, out, print_json, print_table

if TYPE_CHECKING:
    from recocli.config import Settings
    from recocli.lab.evaluate.source import Source

PROTOCOLS = ("loo", "prequential", "served")
DEFAULT_MODELS = {"loo": "sasrec,mf,als,pop", "prequential": "sasrec,pop", "served": "ranker"}


def evaluate(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="loo (leave-last-out, full ranking), prequential (test-then-train windows) or served "
            "(reco recommend → score → commit → reco train, per window, in a temporary warehouse)."
        ),
    ] = "loo",
    data: Annotated[
        Path | None,
        typer.Option(
            help="A MovieLens folder (read as `reco data import` reads it) instead of the warehouse."
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: sasrec, mf, als (Spark MLlib, loo only), pop. "
            "[default: sasrec,mf,als,pop for loo; sasrec,pop for prequential]",
            show_default=False,
        ),
    ] = None,
    k: Annotated[
        str | None,
        typer.Option("--k", help=f"Cut-offs K, comma-separated {default('evaluate.k')}.", show_default=False),
    ] = None,
    bootstrap: Annotated[
        float | None,
        typer.Option(
            help="prequential and served: share of the events (in time) that bootstraps "
            f"{default('evaluate.bootstrap')}.",
            show_default=False,
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="prequential and served: window as event time (30d, 12h) or a number of events "
            f"{default('evaluate.window')}.",
            show_default=False,
        ),
    ] = None,
    retrain_every: Annotated[
        int | None,
        typer.Option(
            help="prequential: the retrain strategy retrains fully every N windows "
            f"{default('evaluate.retrain_every')}.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed: the same seed gives the same numbers.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write metrics.json, summary.md and PNG plots to this folder.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A setting for one model only, MODEL.SETTING=VALUE (repeatable), e.g. "
            "mf.train.mf.lr=0.003 or sasrec.model.sasrec.dropout=0.5: each model trains with its own config.",
            show_default=False,
        ),
    ] = None,
    sample_users: Annotated[
        int | None, typer.Option(min=1, help="Keep only this many users, drawn with the seed (quick runs).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Compare our models with popularity and Spark MLlib ALS on one split, in one run.

    **loo**: per user the last positive is the test item and the one before it the validation item;
    every item the user has not interacted with is a candidate (full ranking, no sampled negatives).
    HR@K, NDCG@K, Recall@K, MRR and catalog coverage; RMSE/MAE of an explicit ALS on held-out ratings.
    sasrec and mf rank through the ranker `reco recommend` serves, with its popularity as of each
    user's own last event (the [rank] grid chosen on the validation item), and are also shown alone
    (-noblend), next to that popularity alone (prior).

    **prequential**: bootstrap on the first part of time, then window by window rank first, score
    against what users did, then update. Strategies (each the ranker `reco recommend` serves):
    stale, incremental (what `reco train` does per micro-batch), retrain (full retrain every N
    windows), popular — plus the models alone (-noblend), popularity decayed at half-lives 1, 7,
    30, 90, 365 days and all time, warm and cold users apart, and the compute seconds of each.

    **served**: the commands themselves in a temporary warehouse: the events before --bootstrap
    committed and `reco train --full`, then per window `reco recommend` for its active users, scored
    against what they liked next, the window committed and `reco train`; against the first version
    never updated and popularity decayed at half-lives 1, 7, 30, 90, 365 days and all time.

    prequential and served print each strategy's NDCG@10 over the best decayed popularity (in
    hindsight), for all users and warm and cold users apart.
    """
    flags = {
        "evaluate.k": k,
        "evaluate.bootstrap": bootstrap,
        "evaluate.window": window,
        "evaluate.retrain_every": retrain_every,
        "train.seed": seed,
    }
    settings = settings_from(config, warehouse, **flags)
    per_model = model_overrides(set_ or [])
    if protocol not in PROTOCOLS:
        raise RecoError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if data is not None and not data.exists():
        raise RecoError(f"--data folder not found: {data}")
    if report is not None:
        check_writable_folder(report, "--report")
    if protocol == "served" and (models or per_model or sample_users):
        raise RecoError(
            "--protocol served ranks with model.kind for every user: drop --models, --set, --sample-users"
        )
    if data is None:
        Warehouse(settings.warehouse).require()

    from recocli.lab.evaluate import check_models
    from recocli.lab.evaluate.source import load

    ks = cutoffs(settings.evaluate.k)
    chosen = chosen_models(models or DEFAULT_MODELS[protocol], per_model)
    check_models(protocol, chosen)
    run_seed = settings.train.seed
    model_settings = settings_per_model(config, warehouse, flags, per_model)

    def log(message: str) -> None:
        if not json_output:
            err.print(message)

    if protocol == "served":
        from recocli.lab.evaluate.served import run_served, served_events

        events, name = served_events(settings, data)
        result = run_served(events, name, settings, log)
    else:
        source = load(settings, data, sample_users, run_seed)
        log(f"{source.name}: {source.interactions.num_rows} interactions")
        result = run_protocol(protocol, source, settings, chosen, ks, run_seed, log, model_settings)
    if per_model:
        result["model_settings"] = per_model
    show_result(result, report, f"{protocol} on {result['dataset']} (seed {run_seed})", json_output)


def cutoffs(ks: list[int]) -> tuple[int, ...]:
    """The cut-offs K of evaluate.k, each at least 1."""
    if not ks or min(ks) < 1:
        raise RecoError(f"--k must list positive cut-offs, got {','.join(map(str, ks))!r}")
    return tuple(ks)


def chosen_models(models: str, per_model: dict[str, dict[str, str]]) -> list[str]:
    """The models of --models, lower-cased; every model that --set names must be among them."""
    chosen = [m.strip().lower() for m in models.split(",") if m.strip()]
    if not chosen:
        raise RecoError("--models is empty")
    unused = sorted(set(per_model) - set(chosen))
    if unused:
        raise RecoError(f"--set names {unused[0]!r}, which is not among --models")
    return chosen


def settings_per_model(
    config: Path | None, warehouse: Path | None, flags: dict[str, Any], per_model: dict[str, dict[str, str]]
) -> dict[str, Settings]:
    """Each model named by --set: the run's settings with its own values on top."""
    model_settings = {}
    for name, values in per_model.items():
        try:
            model_settings[name] = settings_from(config, warehouse, **{**flags, **values})
        except (AttributeError, KeyError):
            raise RecoError(f"--set {name}.…: unknown setting among {', '.join(values)}") from None
    return model_settings


def run_protocol(
    protocol: str,
    source: Source,
    settings: Settings,
    chosen: list[str],
    ks: tuple[int, ...],
    run_seed: int,
    log: Callable[[str], None],
    model_settings: dict[str, Settings],
) -> dict[str, Any]:
    """The result of one protocol's run, as a dict (what the report and --json show)."""
    if protocol == "loo":
        from recocli.lab.evaluate.loo import run_loo

        return run_loo(source, settings, chosen, ks, run_seed, log, model_settings).as_dict()
    from recocli.lab.evaluate.prequential import run_prequential
    from recocli.progress import Bar

    with Bar("windows") as bar:

        def on_window(done: int, total: int) -> None:
            if bar.total != total:
                bar.set_total(total)
            bar.advance(1)

        return run_prequential(
            source, settings, chosen, ks, run_seed, log, on_window, model_settings
        ).as_dict()


def show_result(result: dict[str, Any], report: Path | None, title: str, json_output: bool) -> None:
    """Write the report folder (when asked), then print the result as JSON or as a table."""
    from recocli.lab.evaluate.report import ratios_line, table_columns, table_rows, write_report

    written = write_report(result, report) if report is not None else []
    if json_output:
        print_json({**result, "report": [str(p) for p in written]})
        return
    print_table(title, ["model", *table_columns(result)], table_rows(result))
    if result.get("ratios"):
        out.print(ratios_line(result["ratios"]))
    if result.get("ratings"):
        r = result["ratings"]
        out.print(
            f"ratings ({r['model']}): RMSE {r['rmse']:.4f}, MAE {r['mae']:.4f} on {r['predicted']} held out"
        )
    if written:
        out.print(f"report: {', '.join(str(p) for p in written)}")


def model_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """['mf.train.mf.lr=0.003'] → {'mf': {'train.mf.lr': '0.003'}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        model, _, path = key.strip().partition(".")
        if not sep or not model or "." not in path:
            raise RecoError(f"--set expects MODEL.SETTING=VALUE (e.g. mf.train.mf.lr=0.003), got {item!r}")
        out.setdefault(model.lower(), {})[path] = value.strip()
    return out
