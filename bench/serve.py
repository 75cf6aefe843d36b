"""`reco serve` on localhost with real HTTP clients: GET latency at a fixed request rate, POST
/feedback throughput, read-your-writes delay (in the service, and through the lakehouse for another
reader with `reco ingest --train` running), each bounded in count and time.

The server is a real `reco serve` process on 127.0.0.1 over a warehouse holding ml-latest-small's
ratings in bronze/events and a sasrec of the default size (dim 64, 2 blocks, 50 items of history)
over its users and items (weights untrained: the cost of scoring does not depend on them). Clients
run on the same machine, sharing its cores with the server.

- GET: open loop at --rate requests/s over known users for --seconds, sent by 16 threads of a lean
  client in its own process (bench/serve_load.py); latency counted from each request's due time (a
  slow server cannot slow the schedule down and hide its queue; a late client counts against the
  figure too, and how late it sent is printed beside it). The server's own histogram over the same
  requests, and the load average, beside it.
- Read-your-writes: a user's list, then a click on its first item POSTed to /events, then GETs until
  that item has left the list; the time from the POST's start to that GET's answer.
- Through the lakehouse (--lakehouse-trials, 0 skips it): `reco ingest --train` runs on the service's
  landing folder, and a second `reco serve` on the same warehouse stands for every other reader; a
  click POSTed to the first, then GETs from the second until the item has left its list and the
  click is in bronze. --ingest-interval sets ingest's micro-batch interval.
- POST: batches of 100 feedback records from 8 concurrent clients for at most 10 s.

    .venv/bin/python bench/serve.py                  # 200 req/s for 15 s, 50 + 10 trials, POST 10 s
    .venv/bin/python bench/serve.py --seconds 5      # shorter
    .venv/bin/python bench/serve.py --data ../shared/datasets/movielens/ml-latest-small
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.registry import ModelRegistry
from recocli.config import load_settings
from recocli.console import print_table
from recocli.data.movielens import detect, read_ratings
from recocli.models import build_model
from recocli.models.store import model_config, publish_version
from recocli.models.vocab import Vocabs, Vocabulary
from recocli.recommend.ranker import Ranker
from recocli.training.incremental import table_versions

MOVIELENS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "movielens" / "ml-latest-small"
TOKEN = "bench-token"
TARGETS = {
    "get_p99_ms": 20.0,
    "get_rate": 200,
    "post_events_per_s": 5000,
    "ryw_p50_ms": 100.0,
    "lakehouse_ryw_p50_ms": 2000.0,
}


def prepare(root: Path, data: Path) -> list[str]:
    """bronze/events from ml-latest-small and a default-size sasrec over its ids; the user ids."""
    warehouse = Warehouse(root / "warehouse")
    ratings = read_ratings(detect(data))
    n, now = ratings.num_rows, datetime.now(UTC)
    rows = ratings.select(["event_id", "user_id", "item_id", "event_type", "value", "ts"])
    for name, column in {
        "session_id": pa.nulls(n, pa.string()),
        "context": pa.nulls(n, catalog.EVENTS.schema.field("context").type),
        "event_date": pc.cast(rows["ts"], pa.date32()),
        "ingested_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "batch_id": pa.array(np.zeros(n, dtype=np.int64)),
        "source_file": pa.array(["bench"] * n),
    }.items():
        rows = rows.append_column(name, column)
    delta.append_once(warehouse.uri(catalog.EVENTS), catalog.EVENTS, rows, "bench", 0)
    settings = load_settings(env={}, overrides={"warehouse": str(warehouse.root)})
    users = sorted(set(rows["user_id"].to_pylist()))
    vocabs = Vocabs(Vocabulary(users), Vocabulary(sorted(set(rows["item_id"].to_pylist()))))
    model = build_model("sasrec", len(vocabs.users), len(vocabs.items), settings.model.sasrec)
    ranker = Ranker.new(model, vocabs, settings.rank).state
    # The bronze versions it stands for: `reco ingest --train` then fine-tunes on what comes after.
    meta = {"config": {"model": model_config(model)}, "cursor": table_versions(warehouse)}
    publish_version(ModelRegistry(warehouse), model, vocabs, meta, parent=None, ranker=ranker)
    return users


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reco(*args: str) -> list[str]:
    return [sys.executable, "-m", "recocli", *args]


ENV = {**os.environ, "RECO_SERVE_TOKEN": TOKEN, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def start_server(root: Path, port: int, landing: str = "landing") -> subprocess.Popen:
    cmd = reco("serve", "--warehouse", str(root / "warehouse"), "--landing", str(root / landing))
    cmd += ["--port", str(port)]
    server = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"reco serve ended: {server.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("reco serve did not come up in 300 s")


def get_load(port: int, users: Path, rate: float, seconds: float) -> dict:
    """Open loop at `rate` GETs/s for `seconds` from bench/serve_load.py in its own process; latency
    from each request's due time, and how late the client sent (its own lateness, counted in)."""
    script = Path(__file__).with_name("serve_load.py")
    args = [sys.executable, str(script), "127.0.0.1", str(port), str(rate), str(seconds), str(users)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, check=True)
    got = json.loads(done.stdout)
    ms, late = np.array(got["latencies"]) * 1000, np.array(got["late"]) * 1000
    return {
        "requests": got["requests"],
        "errors": got["errors"],
        "rate": round(got["requests"] / got["seconds"], 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "late_p99_ms": round(float(np.percentile(late, 99)), 2),
    }


def sequential_get(base: str, users: list[str], count: int) -> dict:
    """One client, one request at a time: the cost of a lone request, no queueing."""
    rng = random.Random(2)
    latencies = []
    with httpx.Client(base_url=base, timeout=10) as http:
        for _ in range(count):
            started = time.perf_counter()
            assert http.get(f"/recommendations/{rng.choice(users)}", params={"k": 10}).status_code == 200
            latencies.append(time.perf_counter() - started)
    ms = np.array(latencies) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def run_threads(target, count: int) -> None:
    workers = [threading.Thread(target=target) for _ in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def post_load(base: str, seconds: float, clients: int = 8, batch: int = 100) -> dict:
    """`clients` threads POST batches of `batch` feedback records back to back for `seconds`."""
    now = datetime.now(UTC).isoformat()
    sent = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    workers = iter(range(clients))

    def client() -> None:
        worker = next(workers)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
            for n in range(10_000):  # bounded; the deadline ends it first
                if time.perf_counter() >= deadline:
                    return
                records = [
                    {"event_id": f"b{worker}-{n}-{m}", "rec_id": f"r{worker}-{n}", "user_id": f"u{m}",
                     "item_id": f"i{m}", "action": "impression", "position": m % 10 + 1, "ts": now}
                    for m in range(batch)
                ]  # fmt: skip
                response = http.post("/feedback", json=records)
                assert response.status_code == 202, response.text
                with lock:
                    sent[0] += batch

    start = time.perf_counter()
    run_threads(client, clients)
    elapsed = time.perf_counter() - start
    return {"events": sent[0], "seconds": round(elapsed, 2), "events_per_s": round(sent[0] / elapsed)}


def read_your_writes(base: str, users: list[str], trials: int) -> dict:
    rng = random.Random(1)
    delays, failures = [], 0
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http:
        for n in range(trials):
            user = rng.choice(users)
            item = http.get(f"/recommendations/{user}").json()["items"][0]["item_id"]
            click = {"event_id": f"ryw-{n}", "user_id": user, "item_id": item, "event_type": "click",
                     "ts": datetime.now(UTC).isoformat()}  # fmt: skip
            started = time.perf_counter()
            assert http.post("/events", json=click).status_code == 202
            for _ in range(100):  # at most 100 GETs
                if item not in [i["item_id"] for i in http.get(f"/recommendations/{user}").json()["items"]]:
                    delays.append(time.perf_counter() - started)
                    break
            else:
                failures += 1
    ms = np.array(delays) * 1000
    return {
        "trials": trials,
        "moved": len(delays),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "max_ms": round(float(ms.max()), 2) if len(ms) else None,
    }


def lakehouse_read_your_writes(root: Path, base: str, users: list[str], args) -> dict:
    """`reco ingest --train` running on the service's landing folder and a second `reco serve` (a
    replica with its own landing folder) on the same warehouse: a click POSTed to the first service,
    then GETs from the replica until the item has left its list and the click is in bronze/events
    (a list moved by a new model version alone does not count); time from the POST's start. Trials
    come 0-2 s apart, as clicks come at any moment of ingest's cycle (its micro-batches and, after
    each, the fine-tune)."""
    log = (root / "ingest.log").open("w")
    cmd = reco("ingest", "--train", "--json", "--warehouse", str(root / "warehouse"))
    cmd += ["--landing", str(root / "landing")]
    if args.ingest_interval:
        cmd += ["--interval", args.ingest_interval]
    ingest = subprocess.Popen(cmd, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    replica_port = free_port()
    replica = start_server(root, replica_port, "landing-replica")
    events = Warehouse(root / "warehouse").uri(catalog.EVENTS)
    rng = random.Random(3)
    delays, commits, failures = [], [], 0  # to the replica's list; to the commit in bronze/events
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with (
            httpx.Client(base_url=base, headers=auth, timeout=30) as primary,
            httpx.Client(base_url=f"http://127.0.0.1:{replica_port}", timeout=30) as other,
        ):
            started = time.perf_counter()  # ingest's start and backlog: the first service's pending drain
            first = {"event_id": "lake-warm-up", "user_id": users[0], "item_id": "1", "event_type": "view",
                       "ts": datetime.now(UTC).isoformat()}  # fmt: skip
            assert primary.post("/events", json=first).status_code == 202
            while primary.get("/healthz").json()["pending_events"] and time.perf_counter() - started < 600:
                if ingest.poll() is not None:
                    raise SystemExit(
                        f"reco ingest --train ended: {(root / 'ingest.log').read_text()[-2000:]}"
                    )
                time.sleep(0.5)
            warm_up = round(time.perf_counter() - started, 1)
            for n in range(args.lakehouse_trials):
                time.sleep(rng.uniform(0, 2))
                user = rng.choice(users)
                item = other.get(f"/recommendations/{user}").json()["items"][0]["item_id"]
                click = {"event_id": f"lake-{n}", "user_id": user, "item_id": item, "event_type": "click",
                         "ts": datetime.now(UTC).isoformat()}  # fmt: skip
                seen = delta.current_version(events)
                started, committed = time.perf_counter(), None
                assert primary.post("/events", json=click).status_code == 202
                while time.perf_counter() - started < 60:
                    if committed is None:  # read only the commits made since the last look
                        now = delta.current_version(events)
                        if now > seen and click["event_id"] in _event_ids(events, seen, now):
                            committed = time.perf_counter() - started
                        seen = now
                    listed = [i["item_id"] for i in other.get(f"/recommendations/{user}").json()["items"]]
                    if item not in listed and committed is not None:
                        delays.append(time.perf_counter() - started)
                        commits.append(committed)
                        break
                    time.sleep(0.02)
                else:
                    failures += 1
    finally:
        for process in (replica, ingest):
            process.terminate()
        for process in (replica, ingest):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()
    lines = (root / "ingest.log").read_text().splitlines()
    batches = [json.loads(t)["batch"] for t in lines if t.startswith('{"batch"')]
    tunes = [json.loads(t)["train"] for t in lines if t.startswith('{"train"')]
    seconds = [t["seconds"] for t in tunes if t.get("seconds") is not None]
    ms = np.array(delays) * 1000
    return {
        "trials": args.lakehouse_trials,
        "moved": len(delays),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "max_ms": round(float(ms.max()), 1) if len(ms) else None,
        "commit_p50_ms": round(float(np.percentile(commits, 50)) * 1000, 1) if commits else None,
        "warm_up_s": warm_up,
        "batches": len(batches),
        "batch_p50_s": round(float(np.median([b["duration_s"] for b in batches])), 2) if batches else None,
        "fine_tunes": len(tunes),
        "fine_tune_p50_s": round(float(np.median(seconds)), 2) if seconds else None,
        "ingest_interval": args.ingest_interval or str(load_settings(env={}).ingest.interval),
    }


def _event_ids(uri: str, after: int, upto: int) -> set[str]:
    return set(delta.read_changes(uri, after, upto, ["event_id"])["event_id"].to_pylist())


def measure(root: Path, port: int, users: list[str], args) -> dict:
    """The phases in turn; the server's own GET figures are read before anything else loads it."""
    base, users_file = f"http://127.0.0.1:{port}", root / "users.json"
    get_load(port, users_file, 50, 2)  # warm-up
    alone = sequential_get(base, users, 300)
    before = get_histogram(base)
    get = get_load(port, users_file, args.rate, args.seconds)
    get.update(server_side(before, get_histogram(base)), load_average_1m=round(os.getloadavg()[0], 1))
    ryw = read_your_writes(base, users, args.trials)
    lake = lakehouse_read_your_writes(root, base, users, args) if args.lakehouse_trials else None
    post = post_load(base, min(args.seconds, 10))
    return {"get": get, "alone": alone, "post": post, "ryw": ryw, "lake": lake}


def get_histogram(base: str) -> dict[str, float]:
    """The server's own count, sum and count within 20 ms of GET /recommendations so far."""
    route = 'method="GET",route="/recommendations/{user_id}"'
    values = {"count": 0.0, "sum": 0.0, "within": 0.0}
    for text in httpx.get(f"{base}/metrics").text.splitlines():
        if text.startswith(
            ("reco_serve_request_seconds_sum{" + route, "reco_serve_request_seconds_count{" + route)
        ):
            values[text.split("{")[0].rsplit("_", 1)[1]] = float(text.rsplit(" ", 1)[1])
        if text.startswith("reco_serve_request_seconds_bucket{" + route + ',le="0.02"}'):
            values["within"] = float(text.rsplit(" ", 1)[1])
    return values


def server_side(before: dict[str, float], after: dict[str, float]) -> dict:
    """Mean GET time and the share within 20 ms by the server's own clock, between two readings."""
    count = (after["count"] - before["count"]) or 1
    return {
        "server_mean_ms": round(1000 * (after["sum"] - before["sum"]) / count, 2),
        "server_within_20ms": round((after["within"] - before["within"]) / count, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--lakehouse-trials", type=int, default=10, help="0: no reco ingest --train phase")
    parser.add_argument("--ingest-interval", help="reco ingest --interval [default: ingest.interval]")
    parser.add_argument("--data", type=Path, default=MOVIELENS, help="the ml-latest-small folder")
    args = parser.parse_args()
    if not (args.data / "ratings.csv").exists():
        print(json.dumps({"bench": "serve", "skipped": f"{args.data} not found"}))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        users = prepare(root, args.data)
        users_file = root / "users.json"
        users_file.write_text(json.dumps(users))
        port = free_port()
        server = start_server(root, port)
        try:
            result = measure(root, port, users, args)
        finally:
            server.kill()
            server.wait()
    get, post, ryw, lake = result["get"], result["post"], result["ryw"], result["lake"]
    alone = result["alone"]
    rows = [
        [f"GET p50 / p99 at {get['rate']} req/s", f"{get['p50_ms']} / {get['p99_ms']} ms", "p99 ≤ 20 ms"],
        ["GET: client late to send, p99 (counted in)", f"{get['late_p99_ms']} ms", ""],
        ["GET errors", get["errors"], "0"],
        ["GET one at a time: p50 / p99", f"{alone['p50_ms']} / {alone['p99_ms']} ms", ""],
        [
            "GET server side: mean / share ≤ 20 ms",
            f"{get['server_mean_ms']} ms / {get['server_within_20ms']}",
            "",
        ],
        ["load average (1 min) after the GET load", get["load_average_1m"], ""],
        ["POST /feedback, batches of 100", f"{post['events_per_s']} events/s", "≥ 5,000"],
        ["read-your-writes p50", f"{ryw['p50_ms']} ms ({ryw['moved']}/{ryw['trials']} moved)", "≤ 100 ms"],
    ]
    if lake:
        rows.append(
            [
                f"through the lakehouse (replica, ingest --train, interval {lake['ingest_interval']}) p50",
                f"{lake['p50_ms']} ms ({lake['moved']}/{lake['trials']} moved; max {lake['max_ms']} ms)",
                "≤ 2,000 ms",
            ]
        )
        rows.append(
            ["  of which: POST to the click committed in bronze, p50", f"{lake['commit_p50_ms']} ms", ""]
        )
        rows.append(
            [
                "  ingest meanwhile: micro-batches (p50 s) / fine-tunes (p50 s)",
                f"{lake['batches']} ({lake['batch_p50_s']}) / "
                f"{lake['fine_tunes']} ({lake['fine_tune_p50_s']})",
                "",
            ]
        )
    print_table(
        "reco serve on 127.0.0.1, ml-latest-small sasrec (dim 64), client on the same machine",
        ["measure", "value", "target"],
        rows,
    )
    meets = (
        get["p99_ms"] <= TARGETS["get_p99_ms"]
        and get["errors"] == 0
        and get["rate"] >= 0.95 * args.rate
        and post["events_per_s"] >= TARGETS["post_events_per_s"]
        and ryw["moved"] == ryw["trials"]
        and (ryw["p50_ms"] or 1e9) <= TARGETS["ryw_p50_ms"]
        and (
            lake is None
            or (
                lake["moved"] == lake["trials"] and (lake["p50_ms"] or 1e9) <= TARGETS["lakehouse_ryw_p50_ms"]
            )
        )
    )
    line = {
        "bench": "serve",
        "get_rate": get["rate"],
        "get_p50_ms": get["p50_ms"],
        "get_p99_ms": get["p99_ms"],
        "get_late_p99_ms": get["late_p99_ms"],
        "get_errors": get["errors"],
        "get_server_mean_ms": get["server_mean_ms"],
        "get_server_within_20ms": get["server_within_20ms"],
        "get_load_average_1m": get["load_average_1m"],
        "post_events_per_s": post["events_per_s"],
        "ryw_p50_ms": ryw["p50_ms"],
        "ryw_moved": f"{ryw['moved']}/{ryw['trials']}",
        "lakehouse_ryw_p50_ms": lake and lake["p50_ms"],
        "lakehouse_ryw_max_ms": lake and lake["max_ms"],
        "lakehouse_ryw_moved": lake and f"{lake['moved']}/{lake['trials']}",
        "lakehouse_ingest_interval": lake and lake["ingest_interval"],
        "lakehouse_commit_p50_ms": lake and lake["commit_p50_ms"],
        "lakehouse_batch_p50_s": lake and lake["batch_p50_s"],
        "lakehouse_fine_tune_p50_s": lake and lake["fine_tune_p50_s"],
        "get_alone_p50_ms": alone["p50_ms"],
        "get_alone_p99_ms": alone["p99_ms"],
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "ratio": round(TARGETS["get_p99_ms"] / get["p99_ms"], 2) if get["p99_ms"] else None,
        "target": TARGETS,
        "meets_target": meets,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
