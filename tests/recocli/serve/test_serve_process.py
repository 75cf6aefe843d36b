"""`reco serve` as a real process: it refuses to start open to the network, and a SIGKILL during a POST
load loses no 202'd record (each is in bronze once after `reco ingest --once`)."""

from __future__ import annotations

import random
import socket
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
from helpers import Process, feedback, ids, reco_cmd
from typer.testing import CliRunner

from lakehouse import catalog
from lakehouse.errors import RecoError
from recocli.cli import app
from recocli.config import load_settings
from spark_jobs.ingest import run_ingest

TOKEN = "kill-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base: str, process: Process, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.proc.poll() is None, f"reco serve ended: {process.stderr()}"
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError("reco serve did not come up")


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        ([], {}, "no write token"),
        (["--no-auth", "--host", "0.0.0.0"], {}, "--no-auth only on a loopback host"),
        ([], {"RECO_SERVE_TOKEN": "t", "RECO_SERVE_LANDING_INTERVAL": "soon"}, "must be a duration"),
        (["--landing", "{tmp}/file"], {"RECO_SERVE_TOKEN": "t"}, "file is a file, not a folder"),
    ],
)
def test_refuses_to_start_on_a_bad_setting(tmp_path, args, env, says):
    (tmp_path / "file").write_text("in the way")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(app, ["serve", "--warehouse", str(tmp_path / "w"), *args], env=env)
    assert isinstance(result.exception, RecoError) and says in str(result.exception)
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_sigkill_during_post_load_loses_no_accepted_record(spark, tmp_path):
    warehouse, landing, port = tmp_path / "warehouse", tmp_path / "landing", free_port()
    base = f"http://127.0.0.1:{port}"
    server = Process(
        reco_cmd("serve", "--warehouse", str(warehouse), "--landing", str(landing), "--port", str(port)),
        env={"RECO_SERVE_TOKEN": TOKEN},
    )
    try:
        wait_healthy(base, server)
        accepted: list[str] = []
        lock = threading.Lock()

        def post_until_refused(worker: int) -> None:
            now = datetime.now(UTC).isoformat()
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                for batch in range(2000):  # bounded: the kill comes long before
                    records = [feedback(f"{worker}-{batch}-{n}", ts=now) for n in range(20)]
                    try:
                        response = http.post("/feedback", json=records, timeout=10)
                    except httpx.TransportError:
                        return
                    assert response.status_code == 202, response.text
                    with lock:
                        accepted.extend(r["event_id"] for r in records)

        workers = [threading.Thread(target=post_until_refused, args=(w,)) for w in range(4)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60
        while len(accepted) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.uniform(0.1, 1.0))
        server.kill_group()
        for worker in workers:
            worker.join(timeout=30)
    finally:
        server.kill_group()
    assert len(accepted) >= 200
    settings = load_settings(env={}, overrides={"warehouse": str(warehouse), "ingest.landing": str(landing)})
    run_ingest(settings, once=True)
    landed = ids(warehouse, catalog.FEEDBACK)
    assert len(landed) == len(set(landed))  # each once
    assert set(accepted) <= set(landed)  # every 202'd record (a request cut before its 202 may land too)
