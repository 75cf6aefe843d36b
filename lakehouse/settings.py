"""Settings files and RECO_* variables into typed dataclasses, and the units settings are written in.

The loading rules live here, at the bottom, so that every layer's settings load the same way: defaults,
then a TOML file, then RECO_* environment variables named after the TOML path
(`ingest.max_files_per_batch` is `RECO_INGEST_MAX_FILES_PER_BATCH`), then command-line overrides.
Every value is parsed once, here, into its field's type: `Duration` ("5m" → 300.0 seconds), `Size`
("128MB" → bytes), `Literal` choices, `tuple[...]` lists ("10,20" or a TOML array), finite numbers. A
dataclass with a `check()` method has it called after loading (constraints across fields). Any
mistake is a RecoError: one line naming the setting and where it came from.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lakehouse.errors import RecoError

ENV_PREFIX = "RECO"
# RECO_* variables that name no setting but are read by the loader itself.
LOADER_VARIABLES = frozenset({"RECO_CONFIG"})

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str | int) -> int:
    """Bytes from '512KB', '128MB', '2GB' (powers of 1024) or a bare number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise RecoError(f"not a size: {text!r} (examples: 512KB, 128MB, 2GB)")
        return text
    match = re.fullmatch(r"\s*(\d+)\s*([kmg]i?b?|b)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise RecoError(f"not a size: {text!r} (examples: 512KB, 128MB, 2GB)")
    unit = (match.group(2) or "b")[0].lower()
    return int(match.group(1)) * _SIZE_UNITS[unit]


def parse_duration(text: str | float | int) -> float:
    """Seconds from '250ms', '1s', '5m', '2h', '1d', '1w' or a bare number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if not math.isfinite(text) or text < 0:
            raise RecoError(f"not a duration: {text!r} (examples: 500ms, 1s, 5m, 2h, 1d)")
        return float(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", str(text))
    if not match:
        raise RecoError(f"not a duration: {text!r} (examples: 500ms, 1s, 5m, 2h, 1d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


class Duration(float):
    """Seconds, written in settings as '250ms', '1s', '5m', '2h', '1d', '1w' or a number of seconds;
    shown back the same way."""

    def __new__(cls, value: str | float) -> Duration:
        return super().__new__(cls, parse_duration(value))

    def __str__(self) -> str:
        for unit in ("w", "d", "h", "m", "s", "ms"):
            count = self / _DURATION_UNITS[unit]
            if count >= 1 and abs(count - round(count)) < 1e-9:
                return f"{round(count)}{unit}"
        return f"{float(self):g}s"

    __repr__ = __str__


class Size(int):
    """Bytes, written in settings as '512KB', '128MB', '2GB' or a number of bytes; shown back so."""

    def __new__(cls, value: str | int) -> Size:
        return super().__new__(cls, parse_size(value))

    def __str__(self) -> str:
        for unit, name in (("g", "GB"), ("m", "MB"), ("k", "KB")):
            if self and self % _SIZE_UNITS[unit] == 0:
                return f"{self // _SIZE_UNITS[unit]}{name}"
        return str(int(self))

    __repr__ = __str__


def read_toml(path: Path) -> dict[str, Any]:
    """A config file's tables, or one line saying why it cannot be read."""
    if path.is_dir():
        raise RecoError(f"config file {path} is a directory, not a TOML file")
    if not path.is_file():
        raise RecoError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecoError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecoError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise RecoError(f"config file {path} cannot be read: {exc.strerror}") from None


def apply_layers(
    settings: Any,
    data: Mapping[str, Any],
    source: str,
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    ignore_sections: frozenset[str] | None = None,
) -> Any:
    """`data` (from `source`), then RECO_* `env`, then dotted `overrides` (None values skipped) onto
    `settings`, then each section's check(). `ignore_sections`: top-level tables another layer owns
    (None: none are ignored; their RECO_* variables are then left alone too, otherwise a RECO_*
    variable that names no setting is an error, as an unknown key of the file is)."""
    if ignore_sections is not None:
        data = {k: v for k, v in data.items() if k not in ignore_sections or k in _names(settings)}
    apply_mapping(settings, data, source)
    known = apply_env(settings, env, ENV_PREFIX)
    if ignore_sections is None:
        unknown = sorted(
            v for v in env if v.startswith(f"{ENV_PREFIX}_") and v not in known | LOADER_VARIABLES
        )
        if unknown:
            raise RecoError(f"unknown setting in the environment: {unknown[0]} names no setting")
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_path(settings, dotted.split("."), value, source="command line")
    check(settings)
    return settings


def env_names(settings: Any, prefix: str = ENV_PREFIX) -> Iterator[str]:
    """Every RECO_* variable that names a setting of `settings` (a dataclass tree)."""
    for f in dataclasses.fields(settings):
        var = f"{prefix}_{f.name.upper()}"
        current = getattr(settings, f.name)
        if dataclasses.is_dataclass(current):
            yield from env_names(current, var)
        else:
            yield var


def check(settings: Any) -> None:
    """Call check() of every section (constraints across fields), deepest first."""
    for f in dataclasses.fields(settings):
        current = getattr(settings, f.name)
        if dataclasses.is_dataclass(current):
            check(current)
    if hasattr(settings, "check"):
        settings.check()


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


def apply_env(target: Any, env: Mapping[str, str], prefix: str, dotted: str = "") -> set[str]:
    """Apply the RECO_* variables that name settings of `target`; returns every name it knows."""
    known = set()
    for f in dataclasses.fields(target):
        var = f"{prefix}_{f.name.upper()}"
        current = getattr(target, f.name)
        if dataclasses.is_dataclass(current):
            known |= apply_env(current, env, var, f"{dotted}{f.name}.")
            continue
        known.add(var)
        if var in env:
            value = _coerce(env[var], _field_type(target, f.name), f"{dotted}{f.name}", var)
            setattr(target, f.name, value)
    return known


def set_path(target: Any, parts: list[str], value: Any, source: str) -> None:
    for i, part in enumerate(parts[:-1]):
        if part not in _names(target):
            raise RecoError(f"unknown setting '{'.'.join(parts[: i + 1])}' on the {source}")
        target = getattr(target, part)
    if parts[-1] not in _names(target) or dataclasses.is_dataclass(getattr(target, parts[-1])):
        raise RecoError(f"unknown setting '{'.'.join(parts)}' on the {source}")
    setattr(target, parts[-1], _coerce(value, _field_type(target, parts[-1]), ".".join(parts), source))


def describe(kind: Any) -> str:
    """A field type in words, for error messages and help texts."""
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return f"a comma-separated list of {describe(typing.get_args(kind)[0])}"
    if isinstance(kind, types.UnionType):
        return describe(next(a for a in typing.get_args(kind) if a is not type(None)))
    return {Duration: "a duration (500ms, 1s, 5m, 2h, 1d)", Size: "a size (512KB, 128MB, 2GB)"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )


def _field_type(target: Any, name: str) -> Any:
    return typing.get_type_hints(type(target))[name]


def _coerce(value: Any, kind: Any, name: str, source: str) -> Any:
    """`value` (TOML, an env var's text or a flag) as a `kind`, or one line naming the setting."""
    origin = typing.get_origin(kind)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise RecoError(f"setting '{name}' from {source} must be a table, got {value!r}")
        return {str(k): _scalar(v, str, f"{name}.{k}", source) for k, v in value.items()}
    if origin is tuple:
        item = typing.get_args(kind)[0]
        parts = [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
        try:
            if not isinstance(parts, list | tuple):
                raise RecoError(value)
            return tuple(_coerce(p, item, name, source) for p in parts)
        except RecoError:
            raise RecoError(
                f"setting '{name}' from {source} must be {describe(kind)}, got {value!r}"
            ) from None
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if value not in choices:
            raise RecoError(f"setting '{name}' from {source} must be {describe(kind)}, got {value!r}")
        return value
    if isinstance(kind, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    return _scalar(value, kind, name, source)


def _scalar(value: Any, kind: Any, name: str, source: str) -> Any:
    wrong = RecoError(f"setting '{name}' from {source} must be {describe(kind)}, got {value!r}")
    if isinstance(value, list | tuple | Mapping):
        raise wrong  # a list or a table where one value belongs
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if kind is str and not isinstance(value, str | int | float):
            raise ValueError(value)  # a TOML date or time where text belongs
        result = kind(value)
    except (TypeError, ValueError, RecoError):
        raise wrong from None
    infinite_ok = getattr(kind, "allows_infinity", False)  # e.g. a blend weight's inf: the prior alone
    if isinstance(result, float) and not math.isfinite(result) and not infinite_ok:
        raise RecoError(f"setting '{name}' from {source} must be a finite number, got {value!r}")
    return result


def _names(target: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(target)}
