"""Settings files and RECO_* variables into typed dataclasses, and the units settings are written in.

The loading rules live here, at the bottom, so that every layer's settings load the same way: defaults,
then a TOML file, then RECO_* environment variables named after the TOML path
(`ingest.max_files_per_batch` is `RECO_INGEST_MAX_FILES_PER_BATCH`), then command-line overrides.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lakehouse.errors import RecoError

ENV_PREFIX = "RECO"


def read_toml(path: Path) -> dict[str, Any]:
    """A config file's tables, or one line saying why it cannot be read."""
    if not path.is_file():
        raise RecoError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RecoError(f"config file {path} is not valid TOML: {exc}") from None


def apply_layers(
    settings: Any,
    data: Mapping[str, Any],
    source: str,
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    ignore_sections: frozenset[str] | None = None,
) -> Any:
    """`data` (from `source`), then RECO_* `env`, then dotted `overrides` (None values skipped) onto
    `settings`. `ignore_sections`: top-level tables another layer owns (None: none are ignored)."""
    if ignore_sections is not None:
        data = {k: v for k, v in data.items() if k not in ignore_sections or k in _names(settings)}
    apply_mapping(settings, data, source)
    apply_env(settings, env, ENV_PREFIX)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_path(settings, dotted.split("."), value, source="command line")
    return settings


def parse_size(text: str | int) -> int:
    """Bytes from '512KB', '128MB', '2GB' (powers of 1024) or a bare number of bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise RecoError(f"not a size: {text!r} (examples: 512KB, 128MB, 2GB)")
    unit = (match.group(2) or "b")[0].lower()
    return int(match.group(1)) * {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]


def parse_duration(text: str | float | int) -> float:
    """Seconds from '250ms', '1s', '5m', '2h', '1d', '1w' or a bare number of seconds."""
    if isinstance(text, int | float):
        return float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", str(text))
    if not match:
        raise RecoError(f"not a duration: {text!r} (examples: 500ms, 1s, 5m, 2h, 1d)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def format_duration(seconds: float) -> str:
    """A duration for people: '850ms', '12.3s', '4m 05s', '3h 20m', '10665d 3h' (parse_duration's units)."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def apply_mapping(target: Any, data: Mapping[str, Any], source: str, prefix: str = "") -> None:
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise RecoError(f"unknown setting '{name}' in {source}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise RecoError(f"setting '{name}' in {source} must be a table")
            apply_mapping(current, value, source, prefix=f"{name}.")
        else:
            setattr(target, key, _coerce(value, _field_type(target, key), name, source))


def apply_env(target: Any, env: Mapping[str, str], prefix: str, dotted: str = "") -> None:
    for f in dataclasses.fields(target):
        var = f"{prefix}_{f.name.upper()}"
        current = getattr(target, f.name)
        if dataclasses.is_dataclass(current):
            apply_env(current, env, var, f"{dotted}{f.name}.")
        elif var in env:
            value = _coerce(env[var], _field_type(target, f.name), f"{dotted}{f.name}", var)
            setattr(target, f.name, value)


def set_path(target: Any, parts: list[str], value: Any, source: str) -> None:
    for part in parts[:-1]:
        target = getattr(target, part)
    setattr(target, parts[-1], _coerce(value, _field_type(target, parts[-1]), ".".join(parts), source))


def _field_type(target: Any, name: str) -> Any:
    return typing.get_type_hints(type(target))[name]


def _coerce(value: Any, kind: Any, name: str, source: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (dict, Mapping):
        if isinstance(value, str):
            raise RecoError(f"setting '{name}' from {source} must be a table, not a string")
        return {str(k): str(v) for k, v in dict(value).items()}
    if isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise RecoError(f"setting '{name}' from {source} must be {kind.__name__}, got {value!r}") from None


def _names(target: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(target)}
