"""The GET load of bench/serve.py, in a process of its own: an open-loop schedule of GETs sent by
threads with the standard library's HTTP/1.1 client (keep-alive), timed from each request's due time.

Its own process, importing nothing heavy, with its few objects frozen out of the garbage collector:
the client's pauses (the bench process holds torch and the model it made, and a full collection of
those stopped every client thread for 0.1 s and more) are not timed as the server's. Each latency
still runs from the due time, so a late client counts against the figure; how late it sent is
reported beside it.

    python bench/serve_load.py HOST PORT RATE SECONDS USERS_JSON [THREADS]   # prints one JSON line
"""

from __future__ import annotations

import gc
import http.client
import json
import queue
import random
import sys
import threading
import time
from urllib.parse import quote


def run(host: str, port: int, rate: float, seconds: float, users: list[str], threads: int = 16) -> dict:
    """Request n is due at start + n / rate for a random user; `threads` clients take them in turn."""
    rng = random.Random(0)
    count = int(rate * seconds)
    due: queue.SimpleQueue = queue.SimpleQueue()
    start = time.perf_counter() + 0.5
    for n in range(count):
        due.put((start + n / rate, f"/recommendations/{quote(rng.choice(users), safe='')}?k=10"))
    latencies: list[float] = []
    late: list[float] = []
    errors = [0]

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        while True:
            try:
                scheduled, path = due.get_nowait()
            except queue.Empty:
                break
            wait = scheduled - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
            if ok:
                latencies.append(time.perf_counter() - scheduled)
                late.append(sent - scheduled)
            else:
                errors[0] += 1
        conn.close()

    gc.collect()
    gc.freeze()
    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    return {"requests": count, "errors": errors[0], "seconds": elapsed, "latencies": latencies, "late": late}


def main(argv: list[str]) -> int:
    host, port, rate, seconds, users_json = argv[:5]
    threads = int(argv[5]) if len(argv) > 5 else 16
    with open(users_json) as f:
        users = json.load(f)
    print(json.dumps(run(host, int(port), float(rate), float(seconds), users, threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
