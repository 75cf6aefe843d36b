"""A progress bar on a terminal; plain, greppable lines (at most one per few seconds) otherwise."""

from __future__ import annotations

import time
from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from recocli.console import err


class Bar:
    """`with Bar("importing") as bar: bar.set_total(n); bar.advance(k)`; unit_bytes shows sizes.

    Drawn on stderr, so stdout stays clean for --json and pipes, and only from the first update on,
    so work that turns out to be unnecessary leaves no empty bar behind.
    """

    def __init__(
        self, what: str, total: float | None = None, unit_bytes: bool = False, every_s: float = 5.0
    ) -> None:
        self.what, self.total, self.unit_bytes, self.every_s = what, total, unit_bytes, every_s
        self.done = 0.0
        self._rich: Progress | None = None
        self._last = time.monotonic()

    def __enter__(self) -> Bar:
        return self

    def _started(self) -> Progress | None:
        if self._rich is None and err.is_terminal:
            counts = (DownloadColumn(), TransferSpeedColumn()) if self.unit_bytes else (MofNCompleteColumn(),)
            self._rich = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                *counts,
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
            )
            self._rich.start()
            self._task = self._rich.add_task(self.what, total=self.total)
        return self._rich

    def set_total(self, total: float | None) -> None:
        self.total = total
        if rich := self._started():
            rich.update(self._task, total=total)

    def advance(self, amount: float, note: str = "") -> None:
        self.done += amount
        if rich := self._started():
            rich.update(self._task, advance=amount, description=f"{self.what} {note}".strip())
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            unit = " bytes" if self.unit_bytes else ""
            of = f"/{int(self.total)}" if self.total else ""
            err.print(f"{self.what}: {int(self.done)}{of}{unit} {note}".rstrip(), soft_wrap=True)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._rich is not None:
            self._rich.stop()
