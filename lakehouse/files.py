"""Atomic file writes: a reader (Spark, a server, the next run) sees the old file or the new one whole.

The data goes to a hidden temporary file beside the target (leading dot: Spark and `landed_files`
skip it), is fsynced, renamed over the target, and the folder is fsynced so the rename survives a
power cut. A writer killed midway leaves at most a `.<name>.<pid>.tmp` file and the previous target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lakehouse.errors import RecoError


def fsync_path(path: Path) -> None:
    """Flush a file or a folder (its entries: renames, new files) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file to write `path` through; on a clean exit it replaces `path` atomically.

    `mode` is "wb" or "w" (then `encoding`, UTF-8 by default). On an error the temporary file is
    removed and `path` is left as it was.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_file writes with mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Replace `path` with `text`, atomically."""
    with atomic_file(path, "w", encoding) as out:
        out.write(text)


def check_writable_folder(folder: Path, what: str) -> None:
    """One line unless `folder` is a folder, or could be made one, that this process can write
    into; it creates nothing, so a command can check its outputs before any work starts."""
    if folder.exists() and not folder.is_dir():
        raise RecoError(f"{what} {folder} is a file, not a folder")
    base = folder
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise RecoError(f"{what} {folder}: {base} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as exc:
        raise RecoError(f"{what} {folder}: cannot write into {base}: {exc.strerror or exc}") from None


def check_writable_file(path: Path, what: str) -> None:
    """One line unless `path` names a file (new or not) in a folder this process can write into."""
    if path.is_dir():
        raise RecoError(f"{what} {path} is a folder: name a file to write")
    check_writable_folder(path.parent, f"{what}'s folder")
