"""Atomic file writes: a reader (Spark, a server, the next run) sees the old file or the new one whole.

The data goes to a hidden temporary file beside the target (leading dot: Spark and `landed_files`
skip it), is fsynced, renamed over the target, and the folder is fsynced so the rename survives a
power cut. A writer killed midway leaves at most a `.<name>.<pid>.tmp` file and the previous target.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


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
