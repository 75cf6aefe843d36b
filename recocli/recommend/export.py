"""Write a recommendation run to a file a serving system or analyst can load."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lakehouse.errors import RecoError
from lakehouse.files import atomic_file, check_writable_file

FORMATS = ("parquet", "csv", "jsonl")


def export_format(path: Path, fmt: str | None) -> str:
    """The format asked for, or the one the file name says."""
    if fmt is not None and fmt not in FORMATS:
        raise RecoError(f"--format {fmt} is not one of {', '.join(FORMATS)}")
    chosen = fmt or {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(
        path.suffix.lower()
    )
    if chosen is None:
        raise RecoError(
            f"cannot tell the export format of {path}: pass --format {', '.join(FORMATS[:-1])} or jsonl"
        )
    return chosen


def check_export_target(path: Path, fmt: str | None, force: bool) -> str:
    """The export's format, once its target is known to be writable: checked before anything is
    scored or committed, and creating nothing (a failed export used to come after the run's commit)."""
    check_writable_file(path, "export target")
    if path.exists() and not force:
        raise RecoError(f"export target {path} already exists: pass --force to overwrite it")
    return export_format(path, fmt)


def export_rows(rows: pa.Table, path: Path, fmt: str) -> None:
    """Write atomically (temp file, then rename) so a reader never picks up half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as out:
            if fmt == "parquet":
                pq.write_table(rows, out)
            elif fmt == "csv":
                pacsv.write_csv(rows, out)
            else:
                for record in rows.to_pylist():
                    out.write((json.dumps(record, default=_iso) + "\n").encode())
    except OSError as exc:
        raise RecoError(f"cannot write the export {path}: {exc.strerror or exc}") from None


def _iso(value: object) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")
