"""`reco models list|show|rollback`: the versions in the warehouse's model registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lakehouse.catalog import Warehouse
from lakehouse.registry import CURVE, ModelRegistry
from recocli.commands.options import ConfigOption, JsonOption, WarehouseOption, settings_from
from recocli.console import out, print_json, print_table

app = typer.Typer(
    name="models",
    help="List, inspect and roll back the model versions in the warehouse's registry.",
    no_args_is_help=True,
)

VersionArgument = Annotated[int, typer.Argument(min=1, help="Model version number (see `reco models list`).")]


def _registry(config, warehouse) -> ModelRegistry:
    return ModelRegistry(Warehouse(settings_from(config, warehouse).warehouse).require())


def _cursor(meta: dict) -> str:
    return " ".join(f"{name.split('/')[-1]}@{v}" for name, v in meta.get("cursor", {}).items())


def _quality(meta: dict) -> str:
    metrics = meta.get("metrics", {})
    for key in ("val_hr10", "prequential_hr10"):
        if metrics.get(key) is not None:
            return f"{key.split('_')[0]} {metrics[key]:.3f}"
    return ""


def _ranker(meta: dict) -> str:
    """The ranker's choice: half-life × blend weight (inf: popularity alone), the age weight when
    there is one, and its NDCG@10; then the popularity of users the model does not know."""
    rank = meta.get("ranker")
    if not rank:
        return ""
    on, cold = rank.get("chosen_on", {}), rank.get("cold")
    age = f", age {rank['age_weight']:g}" if rank.get("age_weight") else ""
    text = f"{rank['half_life']} × {rank['weight']}{age} ({on.get('ndcg@10', '-')})"
    if cold:
        cold_age = f", age {cold['age_weight']:g}" if cold.get("age_weight") else ""
        text += f"; unknown users {cold['half_life']}{cold_age} ({on.get('cold_ndcg@10', '-')})"
    return text


def summary(meta: dict[str, Any], latest: int | None) -> dict[str, Any]:
    return {
        "version": meta["version"],
        "latest": meta["version"] == latest,
        "parent": meta.get("parent"),
        "kind": meta.get("kind"),
        "mode": meta.get("mode"),
        "created_at": meta.get("created_at"),
        "cursor": meta.get("cursor", {}),
        "rows": sum((meta.get("rows") or {}).values()),
        "interactions": meta.get("interactions"),
        "users": meta.get("n_users"),
        "items": meta.get("n_items"),
        "quality": _quality(meta),
        "ranker": _ranker(meta),
        "device": meta.get("device"),
        "seconds": meta.get("seconds"),
    }


@app.command("list")
def list_versions(
    warehouse: WarehouseOption = None, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Every version, oldest first; `*` marks the one served (latest)."""
    registry = _registry(config, warehouse)
    latest = registry.latest()
    rows = [summary(registry.metadata(v), latest) for v in registry.versions()]
    if json_output:
        print_json({"latest": latest, "versions": rows})
        return
    if not rows:
        out.print(f"no model versions in {registry.root}: train one with `reco train`")
        return
    columns = ["version", "parent", "kind", "mode", "created", "cursor", "rows", "users", "items", "quality"]
    print_table(f"models in {registry.root}", [*columns, "ranker", "device", "seconds"], map(_row, rows))


def _row(r: dict[str, Any]) -> list[Any]:
    return [
        f"{'*' if r['latest'] else ' '}v{r['version']}",
        f"v{r['parent']}" if r["parent"] else "-",
        r["kind"],
        r["mode"],
        r["created_at"],
        _cursor(r),
        r["rows"],
        r["users"],
        r["items"],
        r["quality"],
        r["ranker"],
        r["device"],
        r["seconds"],
    ]


@app.command("show")
def show(
    version: VersionArgument,
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Everything a version's metadata.json records (checksums verified), and a summary of its
    training curve (every epoch's losses and metrics are in its training_log/metrics.csv)."""
    registry = _registry(config, warehouse)
    meta = registry.verify(version)
    curve = registry.training_curve(version)
    if json_output:
        print_json({**meta, "training_curve": curve})
        return
    flat = [*_flatten(meta), *curve_summary(curve, registry.path(version) / CURVE)]
    print_table(
        f"model v{version}" + (" (latest)" if registry.latest() == version else ""), ["field", "value"], flat
    )


def curve_summary(curve: list[dict[str, float]], log: Path) -> list[list[Any]]:
    """[field, value] rows: epochs logged, the loss from first to last epoch, the best validation."""
    if not curve:
        return [["curve", "no training log (published before logs were kept, or no epoch ran)"]]
    rows: list[list[Any]] = [["curve.epochs", len(curve)]]
    losses = [e["train_loss"] for e in curve if "train_loss" in e]
    if losses:
        rows.append(["curve.train_loss", " → ".join(f"{v:.4f}" for v in (losses[0], losses[-1]))])
    for key in ("val_hr10", "val_ndcg10"):
        scored = [(e[key], int(e["epoch"])) for e in curve if key in e]
        if scored:
            best, epoch = max(scored)
            rows.append([f"curve.{key}", f"best {best:.4f} at epoch {epoch} (last {scored[-1][0]:.4f})"])
    rows.append(["curve.log", str(log)])
    return rows


def _flatten(data: dict[str, Any], prefix: str = ""):
    """[dotted key, value] rows of nested metadata; lists and cursors stay JSON."""
    for key, value in data.items():
        if isinstance(value, dict) and set(value) == {"ndcg@10", "users"}:  # a ranker choice's figure
            yield [f"{prefix}{key}", f"NDCG@10 {value['ndcg@10']} on {value['users']:g} users"]
        elif isinstance(value, dict) and value and key not in ("cursor", "consumed", "rows"):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield [f"{prefix}{key}", json.dumps(value) if isinstance(value, dict | list) else value]


@app.command("rollback")
def rollback(
    version: VersionArgument,
    warehouse: WarehouseOption = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Serve VERSION again: `latest` moves back, and the next incremental run continues from its cursor
    (re-reading the rows committed after it). Later versions stay listed."""
    from recocli.training.incremental import train_lock

    settings = settings_from(config, warehouse)
    root = Warehouse(settings.warehouse).require()
    registry = ModelRegistry(root)
    with train_lock(root):
        before = registry.latest()
        registry.rollback(version)
    meta = registry.metadata(version)
    if json_output:
        print_json({"latest": version, "was": before, "cursor": meta.get("cursor", {})})
        return
    out.print(f"latest is now v{version} (was v{before}); next `reco train` continues from {_cursor(meta)}")
