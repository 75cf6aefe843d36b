"""The landing folder contract: JSON lines under <landing>/events/ and <landing>/feedback/.

Producers write a hidden temporary file (leading dot, which Spark ignores) and rename it into place,
so a file is only ever seen whole. <landing>/served/ holds the lists `reco serve` showed (one JSON
object per list: rec_id, user_id, model_version, strategy, served_at, items), which ingest does not
read and `reco report` joins feedback to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.json as pa_json

from lakehouse.errors import RecoError
from lakehouse.files import atomic_file

KINDS = ("events", "feedback")
SERVED = "served"
SERVED_SCHEMA = pa.schema(
    [
        pa.field("rec_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("model_version", pa.int64()),
        pa.field("strategy", pa.string()),
    ]
)


def landing_dirs(landing: str | Path) -> dict[str, Path]:
    root = Path(landing).expanduser().resolve()
    return {kind: root / kind for kind in KINDS}


def require_landing(landing: str | Path) -> Path:
    """The landing folder, when it exists: reading from a mistyped one must fail (exit 2) rather than
    create it and report nothing to do. Creating it is explicit (`reco init`)."""
    root = Path(landing).expanduser().resolve()
    if not root.is_dir():
        raise RecoError(
            f"no landing folder at {root}: give the right --landing, or create it with "
            f"`reco init --landing {root}`"
        )
    return root


def create_landing(landing: str | Path) -> list[Path]:
    """The landing folder and its events/ and feedback/ folders (kept when there)."""
    folders = list(landing_dirs(landing).values())
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def write_landing_file(landing: str | Path, kind: str, name: str, records: Iterable[dict | str]) -> Path:
    """Write records as one JSON-lines file, atomically (temp file, fsync, rename). `kind`: one of
    KINDS, or SERVED."""
    folder = landing_dirs(landing)[kind] if kind in KINDS else served_dir(landing)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    with atomic_file(final, "w") as out:
        for record in records:
            out.write(record if isinstance(record, str) else json.dumps(record, separators=(",", ":")))
            out.write("\n")
    return final


def landed_files(landing: str | Path) -> list[Path]:
    """Complete files in the landing folder (hidden and underscore files are in-flight or metadata)."""
    files = []
    for folder in landing_dirs(landing).values():
        if folder.is_dir():
            files += [p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_"))]
    return sorted(files)


def file_uri_path(uri: str) -> Path:
    """'file:/a/b%20c' (as Spark reports source files) → Path('/a/b c')."""
    return Path(unquote(urlparse(uri).path))


def pending_files(landing: str | Path, ingested_uris: Iterable[str]) -> list[Path]:
    """Landed files that no committed batch has read yet."""
    done = {file_uri_path(uri) for uri in ingested_uris}
    return [path for path in landed_files(landing) if path.resolve() not in done]


def served_dir(landing: str | Path) -> Path:
    return Path(landing).expanduser().resolve() / SERVED


def served_lists(landing: str | Path) -> pa.Table:
    """rec_id, user_id, model_version, strategy of every list recorded under <landing>/served/."""
    parts = []
    folder = served_dir(landing)
    if folder.is_dir():
        options = pa_json.ParseOptions(explicit_schema=SERVED_SCHEMA, unexpected_field_behavior="ignore")
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith((".", "_")):
                parts.append(pa_json.read_json(path, parse_options=options).select(SERVED_SCHEMA.names))
    return pa.concat_tables(parts) if parts else SERVED_SCHEMA.empty_table()
