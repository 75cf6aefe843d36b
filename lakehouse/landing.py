"""The landing folder contract: JSON lines under <landing>/events/ and <landing>/feedback/.

Producers write a hidden temporary file (leading dot, which Spark ignores) and rename it into place,
so a file is only ever seen whole. Only regular files directly in those folders are read (and, with
ingest.follow_links = "inside_landing", links to files inside the landing folder); what Spark cannot
read safely is renamed or set aside by `prepare_landing` before Spark lists the folder
(docs/ingest.md, "Inputs: what ingest accepts and refuses"). <landing>/served/ holds the lists
`reco serve` showed (one JSON object per list: rec_id, user_id, model_version, strategy, served_at,
items), which ingest does not read and `reco report` joins feedback to.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.json as pa_json

from lakehouse.errors import RecoError
from lakehouse.files import atomic_file, check_writable_folder

KINDS = ("events", "feedback")
# Spark's file source takes a file's path as a glob (? * [ ] { } \\) and as a URI (a ':' fails with
# "Relative path in absolute URI"): such characters are percent-encoded in the name before Spark sees it.
UNSAFE_NAME_CHARS = "?*[]{}\\:"
REFUSED = "_refused"  # an underscore folder: Spark and landed_files skip it
LINK = "symbolic link (not followed)"
LINK_OUTSIDE = "symbolic link to outside the landing folder, or to no finished file in it (not followed)"
LINK_TO_LANDED = "symbolic link to a file ingest reads anyway (read once, as that file)"
FOLDER = "folder (only files directly in events/ are read)"
CLASH = "its safe name is taken by another file"
BLANK_CHECK_BYTES = 65_536


@dataclass(frozen=True)
class Refused:
    path: Path
    reason: str


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


def check_landing_target(landing: str | Path) -> None:
    """One line, creating nothing, unless the landing folder and its events/ and feedback/ are
    folders (or could be made) that this process can write: checked before a command's work."""
    for folder in landing_dirs(landing).values():
        check_writable_folder(folder, "landing folder")


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


def _visible(folder: Path) -> list[Path]:
    """Entries of `folder` that Spark lists (hidden and underscore names are in-flight or metadata)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "_")))


def landed_files(landing: str | Path, follow_links: bool = False) -> list[Path]:
    """Complete regular files in the landing folder, and the links ingest reads (`follow_links`:
    ingest.follow_links = "inside_landing"); other links are not files of the landing folder."""
    judge = _LinkJudge(landing, follow_links)
    folders = landing_dirs(landing).values()
    return sorted(
        p
        for f in folders
        for p in _visible(f)
        if (p.is_symlink() and judge.target(p)[0] is not None) or (p.is_file() and not p.is_symlink())
    )


class _LinkJudge:
    """Which links of the landing folder ingest reads, link by link in listing order. Never, unless
    `follow` (ingest.follow_links = "inside_landing"); then a link is read as its target when that
    resolves to a regular file inside the landing folder, under no hidden or underscore name (in-flight
    or set aside), and is not the same file as one of events/ or feedback/ or an earlier link's
    target: each file is read once."""

    def __init__(self, landing: str | Path, follow: bool) -> None:
        self.root, self.follow = Path(landing).expanduser().resolve(), follow
        self._taken: set[tuple[int, int]] | None = None

    def _files_read(self) -> set[tuple[int, int]]:
        """(device, inode) of every file ingest reads anyway, listed once, when a link first needs it."""
        if self._taken is None:
            files = (p for f in landing_dirs(self.root).values() for p in _visible(f))
            self._taken = {_inode(p) for p in files if p.is_file() and not p.is_symlink()}
        return self._taken

    def target(self, link: Path) -> tuple[Path | None, str]:
        """(the file to read `link` as, "") or (None, why it is not read)."""
        if not self.follow:
            return None, LINK
        try:
            target = link.resolve(strict=True)
        except (OSError, RuntimeError):  # dangling, or a loop
            return None, LINK_OUTSIDE
        if (
            not target.is_file()
            or not target.is_relative_to(self.root)
            or any(part.startswith((".", "_")) for part in target.relative_to(self.root).parts)
        ):
            return None, LINK_OUTSIDE
        if _inode(target) in self._files_read():
            return None, LINK_TO_LANDED
        self._files_read().add(_inode(target))
        return target, ""


def _inode(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def safe_name(name: str) -> str:
    """`name` with each character Spark cannot take in a path percent-encoded ('a:b' → 'a%3Ab')."""
    return "".join(f"%{ord(c):02X}" if c in UNSAFE_NAME_CHARS else c for c in name)


def prepare_landing(landing: str | Path, follow_links: bool = False) -> list[Refused]:
    """Make the landing folders safe for Spark to list, before it does: a file whose name Spark would
    glob or fail on is renamed to its safe name; a symbolic link is moved into `_refused/` (Spark
    would follow it anywhere), as is a file whose safe name is taken. With `follow_links`, a link that
    `_LinkJudge` lets ingest read is first replaced by its target's file (a hard link, else a copy),
    which Spark then reads as any other. Returns what was set aside."""
    refused = []
    judge = _LinkJudge(landing, follow_links)
    for folder in landing_dirs(landing).values():
        for path in _visible(folder):
            if path.is_symlink():
                target, reason = judge.target(path)
                if target is None:
                    refused.append(_set_aside(path, reason))
                    continue
                _replace_by_file(path, target)
            if path.is_file() and safe_name(path.name) != path.name:
                target = path.with_name(safe_name(path.name))
                if target.exists() or target.is_symlink():
                    refused.append(_set_aside(path, CLASH))
                else:
                    os.rename(path, target)
    return refused


def _replace_by_file(link: Path, target: Path) -> None:
    """Replace `link` (atomically) by the file it points to: a hard link, or a copy across file systems."""
    temp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        os.link(target, temp, follow_symlinks=False)
        os.replace(temp, link)
    except OSError:  # another file system, or a file the process may not hard-link
        temp.unlink(missing_ok=True)
        with atomic_file(link) as out, open(target, "rb") as source:
            shutil.copyfileobj(source, out)


def _set_aside(path: Path, reason: str) -> Refused:
    """Move `path` into `_refused/` beside it, under a name no earlier refusal holds (`name.1` …)."""
    aside = path.parent / REFUSED
    aside.mkdir(exist_ok=True)
    moved, n = aside / path.name, 0
    while moved.exists() or moved.is_symlink():
        n += 1
        moved = aside / f"{path.name}.{n}"
    os.rename(path, moved)
    return Refused(moved, reason)


def set_aside_files(landing: str | Path) -> list[Path]:
    """What `prepare_landing` has set aside and is still there: the entries of each `<kind>/_refused/`."""
    return [path for folder in landing_dirs(landing).values() for path in _visible(folder / REFUSED)]


def refused_files(landing: str | Path, follow_links: bool = False) -> list[Refused]:
    """What ingest does not read: entries set aside in `_refused/`, links it will set aside, subfolders."""
    refused = [Refused(path, LINK if path.is_symlink() else CLASH) for path in set_aside_files(landing)]
    judge = _LinkJudge(landing, follow_links)
    for folder in landing_dirs(landing).values():
        for path in _visible(folder):
            if path.is_symlink():
                target, reason = judge.target(path)
                if target is None:
                    refused.append(Refused(path, reason))
            elif path.is_dir():
                refused.append(Refused(path, FOLDER))
    return refused


def _is_blank(path: Path) -> bool:
    """No record in it: empty, or (when small) only whitespace; Spark takes it with nothing to write."""
    size = path.stat().st_size
    return size == 0 or (size <= BLANK_CHECK_BYTES and not path.read_bytes().strip())


def file_uri_path(uri: str) -> Path:
    """'file:/a/b%20c' (as Spark reports source files) → Path('/a/b c')."""
    return Path(unquote(urlparse(uri).path))


def pending_files(
    landing: str | Path, ingested_uris: Iterable[str], follow_links: bool = False
) -> list[Path]:
    """Landed files (and links ingest will read) with records that no committed batch has read yet."""
    done = {file_uri_path(uri) for uri in ingested_uris}
    return [path for path in landed_files(landing, follow_links) if path not in done and not _is_blank(path)]


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
