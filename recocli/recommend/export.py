"""Write a recommendation run to a file a serving system or analyst can load."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lakehouse.errors import RecoError
from lakehouse.files import atomic_file

FORMATS = ("parquet", "csv", "jsonl")


def export_format(path: Path, fmt: str | None) -> str:
    """The format asked for, or the one the file name says."""
    chosen = fmt or {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(
        path.suffix.lower()
    )
    if chosen not in FORMATS:
        raise RecoError(f"cannot tell the export format of {path}: pass --format {'|'.join(FORMATS)}")
    return chosen


def export_rows(rows: pa.Table, path: Path, fmt: str) -> None:
    """Write atomically (temp file, then rename) so a reader never picks up half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as out:
        if fmt == "parquet":
            pq.write_table(rows, out)
        elif fmt == "csv":
            pacsv.write_csv(rows, out)
        else:
            for record in rows.to_pylist():
                out.write((json.dumps(record, default=_iso) + "\n").encode())


def _iso(value: object) -> str:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot export {type(value).__name__}")
