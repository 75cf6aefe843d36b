"""A `reco serve` in this process, on a free loopback port, for the demo loop: its simulated users'
feedback goes in through POST /feedback, as a product's would."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from lakehouse.errors import RecoError
from recocli.config import Settings
from recocli.serve.app import Service, create_app

Send = Callable[[str, list[dict]], None]


@contextmanager
def local_service(settings: Settings) -> Iterator[Send]:
    """Yields send(kind, records): POSTs them in requests of at most serve.max_records, each 202."""
    token = secrets.token_hex(16)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(create_app(Service(settings, token)), log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RecoError("the demo's reco serve did not start")
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    size = settings.serve.max_records
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:

            def send(kind: str, records: list[dict]) -> None:
                for start in range(0, len(records), size):
                    response = http.post(f"/{kind}", json=records[start : start + size])
                    if response.status_code != 202:
                        raise RecoError(f"reco serve refused the demo's {kind}: {response.text[:300]}")

            yield send
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
