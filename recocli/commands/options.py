"""Options every command accepts, and the settings they produce."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from lakehouse.landing import require_landing
from recocli.config import Settings, load_settings

DEFAULTS = Settings()

WarehouseOption = Annotated[
    Path | None,
    typer.Option(
        "--warehouse",
        "-w",
        help="Warehouse folder [default: ./warehouse, or $RECO_WAREHOUSE].",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (see conf/reco.toml) [or $RECO_CONFIG].", show_default=False
    ),
]
Accelerator = StrEnum(
    "Accelerator", {name: name for name in ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")}
)
AcceleratorOption = Annotated[
    Accelerator | None,
    typer.Option(
        help="Lightning accelerator for training [default: auto, or train.accelerator].",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def default(dotted: str) -> str:
    """'[default: X]' for a help text, X the built-in default of setting `dotted` (written once, in
    recocli.config); lists are shown as they are typed on the command line (10,20)."""
    value = DEFAULTS
    for part in dotted.split("."):
        value = getattr(value, part)
    text = ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
    return f"[default: {text}]"


def settings_from(config: Path | None, warehouse: Path | None, **overrides: Any) -> Settings:
    """Settings from file and environment, with the command's flags (dotted names) on top."""
    return load_settings(config, overrides={"warehouse": warehouse and str(warehouse), **overrides})


def require_named_landing(settings: Settings) -> None:
    """A landing folder named by flag, env or config must exist, so that a typo does not read as
    "nothing there"; the default ./landing may be absent (a warehouse fed by `reco data import`)."""
    if settings.ingest.landing != DEFAULTS.ingest.landing:
        require_landing(settings.ingest.landing)
