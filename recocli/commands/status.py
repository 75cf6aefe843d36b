"""`reco status`: what the warehouse holds and what is still waiting in the landing folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow.compute as pc
import typer

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.landing import pending_files, refused_files
from recocli.commands.options import (
    ConfigOption,
    JsonOption,
    WarehouseOption,
    default,
    require_named_landing,
    settings_from,
)
from recocli.console import out, print_json, print_table


def warehouse_status(warehouse: Warehouse, landing: str, follow_links: bool = False) -> dict:
    """Tables (version, rows, last commit), landed files not yet ingested and those it does not read
    (`follow_links`: ingest.follow_links = "inside_landing")."""
    tables = {}
    for spec in catalog.ALL_TABLES:
        stats = delta.table_stats(warehouse.uri(spec))
        tables[spec.name] = (
            None
            if stats is None
            else {
                "version": stats.version,
                "rows": stats.rows,
                "last_commit": stats.last_commit.isoformat(timespec="seconds") if stats.last_commit else None,
            }
        )
    metrics = delta.read_table(warehouse.uri(catalog.INGEST_METRICS), columns=["files"])
    ingested = pc.list_flatten(metrics["files"]).to_pylist() if metrics is not None else []
    pending = pending_files(landing, ingested, follow_links)
    refused = refused_files(landing, follow_links)
    return {
        "warehouse": str(warehouse.root),
        "tables": tables,
        "pending_files": [str(p) for p in pending],
        "refused_files": [{"path": str(r.path), "reason": r.reason} for r in refused],
        "model": model_status(warehouse, tables),
    }


def model_status(warehouse: Warehouse, tables: dict) -> dict | None:
    """The served model version and how far its cursor is behind each training table."""
    from lakehouse.registry import ModelRegistry
    from recocli.training.incremental import TRAIN_TABLES

    registry = ModelRegistry(warehouse)
    latest = registry.latest()
    if latest is None:
        return None
    meta = registry.metadata(latest)
    cursor = meta.get("cursor", {})
    behind = {}
    for spec, _ in TRAIN_TABLES:
        table = tables.get(spec.name)
        current = -1 if table is None else table["version"]
        behind[spec.name] = {
            "cursor": cursor.get(spec.name, -1),
            "table_version": current,
            "versions_behind": max(0, current - cursor.get(spec.name, -1)),
        }
    return {
        "version": latest,
        "kind": meta.get("kind"),
        "created_at": meta.get("created_at"),
        "versions": len(registry.versions()),
        "cursor": behind,
    }


def status(
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    landing: Annotated[Path | None, typer.Option(help=f"Landing folder {default('ingest.landing')}.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List the warehouse's Delta tables (version, rows, last commit) and files landed but not ingested."""
    settings = settings_from(config, warehouse, **{"ingest.landing": landing and str(landing)})
    require_named_landing(settings)
    report = warehouse_status(
        Warehouse(settings.warehouse).require(), settings.ingest.landing, settings.ingest.follows_links
    )
    if json_output:
        print_json(report)
        return
    rows = [
        [name, *(("-", "-", "not created") if t is None else (t["version"], t["rows"], t["last_commit"]))]
        for name, t in report["tables"].items()
    ]
    print_table(f"warehouse {report['warehouse']}", ["table", "version", "rows", "last commit"], rows)
    model = report["model"]
    if model is None:
        out.print("model: none yet (`reco train`)")
    else:
        lag = ", ".join(
            f"{name} cursor {c['cursor']} / table {c['table_version']} ({c['versions_behind']} behind)"
            for name, c in model["cursor"].items()
        )
        out.print(f"model: v{model['version']} ({model['kind']}, {model['created_at']}): {lag}")
    pending = report["pending_files"]
    if Path(settings.ingest.landing).expanduser().is_dir():
        out.print(f"landing {settings.ingest.landing}: {len(pending)} file(s) not yet ingested")
    else:
        out.print(f"landing {settings.ingest.landing}: no such folder (`reco init` creates it)")
    for path in pending[:10]:
        out.print(f"  {path}")
    if len(pending) > 10:
        out.print(f"  … and {len(pending) - 10} more")
    for refused in report["refused_files"]:
        out.print(f"  refused, not read: {refused['path']} ({refused['reason']})")
