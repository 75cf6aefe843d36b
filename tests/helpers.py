"""Helpers shared by the tests: event builders, running `reco` as a real process, reading tables."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa

from lakehouse import catalog, delta
from lakehouse.catalog import TableSpec, Warehouse

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = REPO.parent / "shared" / "datasets" / "movielens"


def event(n: int | str, **fields) -> dict:
    base = {
        "event_id": f"e{n}",
        "user_id": "u1",
        "item_id": "i1",
        "event_type": "click",
        "ts": "2024-05-01T10:00:00Z",
    }
    return {**base, **fields}


def feedback(n: int | str, **fields) -> dict:
    base = {
        "event_id": f"f{n}",
        "rec_id": "r1",
        "user_id": "u1",
        "item_id": "i1",
        "action": "click",
        "position": 1,
        "model_version": 1,
        "ts": "2024-05-01T10:00:00Z",
    }
    return {**base, **fields}


def line(record: dict) -> str:
    return json.dumps(record)


def table(warehouse: Path, spec: TableSpec) -> pa.Table:
    data = delta.read_table(Warehouse(warehouse).uri(spec))
    assert data is not None, f"{spec.name} was not created"
    return data


def ids(warehouse: Path, spec: TableSpec = catalog.EVENTS) -> list[str]:
    return sorted(table(warehouse, spec)["event_id"].to_pylist())


def reco_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "recocli", *args]


def run_reco(
    *args: str, timeout: float = 300, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        reco_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


class Process:
    """A real `reco` (or other) process in its own process group, its stdout read line by line."""

    def __init__(self, cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for text in self.proc.stdout:
            self.stdout.append(text)
            self.lines.put(text)

    def wait_for(self, predicate, timeout: float = 120) -> str:
        """The first stdout line (from now on) matching predicate."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(f"process ended ({self.proc.returncode}): {self.stderr()}") from None
                continue
            if predicate(text):
                return text
        raise AssertionError(f"timed out waiting; stdout so far: {''.join(self.stdout)[-2000:]}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


def assert_readable_everywhere(warehouse: Path) -> list[list[dict]]:
    """Events, quarantine and metrics read the same by delta-rs (to_pylist), Polars and DuckDB (the
    delta extension of the duckdb-extension-delta package); each table's rows as Python objects."""
    import duckdb
    import duckdb_extension_delta
    import polars as pl
    from deltalake import DeltaTable

    extension = next(Path(duckdb_extension_delta.__path__[0]).rglob("delta.duckdb_extension"))
    con = duckdb.connect()
    con.sql(f"LOAD '{extension}'")
    tables = []
    for spec in (catalog.EVENTS, catalog.QUARANTINE, catalog.INGEST_METRICS):
        uri = Warehouse(warehouse).uri(spec)
        rows = DeltaTable(uri).to_pyarrow_table().to_pylist()
        assert pl.read_delta(uri).height == len(rows)
        assert con.sql(f"SELECT count(*) FROM delta_scan('{uri}')").fetchone()[0] == len(rows)
        tables.append(rows)
    return tables
