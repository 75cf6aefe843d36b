"""Group commit into landing files: requests accepted together land in one file, durably, before any
of them is answered.

Each file is written whole by lakehouse.landing.write_landing_file (hidden temp file, fsync, rename
into place), so ingest only ever sees complete files, a SIGKILL leaves nothing half-landed, and a
request answered 202 is on disk. Files are cut by time (at most one per `interval`) and size (sooner
once `max_bytes` is waiting): few files under load, no wait when idle.
"""

from __future__ import annotations

import asyncio
import queue
import secrets
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

from lakehouse.landing import write_landing_file

_STOP = object()


class LandingWriter:
    """One writer thread per landing folder (`kind`: events, feedback or served)."""

    def __init__(self, landing: str | Path, kind: str, interval_s: float, max_bytes: int) -> None:
        self.landing, self.kind = landing, kind
        self.interval_s, self.max_bytes = interval_s, max_bytes
        self.instance = secrets.token_hex(3)
        self.files_written = 0
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"landing-{kind}", daemon=True)
        self._thread.start()

    def submit(self, lines: list[str]) -> Future:
        """A future of the landed file's path, set once `lines` are fsync'd and renamed into place."""
        done: Future = Future()
        self._queue.put((lines, done))
        return done

    async def append(self, lines: list[str]) -> Path:
        """Land `lines` (JSON text, one record each); returns when they are durable."""
        return await asyncio.wrap_future(self.submit(lines))

    def close(self) -> None:
        """Land what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        last = 0.0
        carried = None
        while True:
            first = carried if carried is not None else self._queue.get()
            carried = None
            if first is _STOP:
                return
            wait = last + self.interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            group, size = [first], sum(len(line) for line in first[0])
            while size < self.max_bytes:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    carried = item
                    break
                group.append(item)
                size += sum(len(line) for line in item[0])
            last = time.monotonic()
            self._land(group)

    def _land(self, group: list[tuple[list[str], Future]]) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"serve-{stamp}-{self.instance}-{self.files_written:06d}.jsonl"
        try:
            path = write_landing_file(
                self.landing, self.kind, name, (ln for lines, _ in group for ln in lines)
            )
        except Exception as exc:  # the disk refused: every request of the group is answered with it
            for _, done in group:
                done.set_exception(exc)
            return
        self.files_written += 1
        for _, done in group:
            done.set_result(path)
