"""Freshness: how long a click takes to reach bronze, a model version and a user's list.

`reco ingest --train --interval 1s` runs continuously as a real process. For each probe, one user's
click lands at t0 (an atomic file in landing); the bench then polls, from this process, until
  - bronze: the click's event_id is in bronze/events,
  - model:  a published model version's cursor covers the Delta version holding it,
  - list:   `reco recommend --user` (the same code, in process) gives that user a list that differs
            from the one before the click and leaves the clicked item out.
Prints p50/p95 per stage over the probes, then one JSON line. The peer is a nightly batch pipeline,
whose lists are up to 24 h old (12 h on average); Monolith syncs parameters at minute level.

    .venv/bin/python bench/freshness.py --probes 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.delta import create_tables
from lakehouse.landing import write_landing_file
from lakehouse.registry import ModelRegistry
from recocli.config import load_settings
from recocli.console import print_table
from recocli.data.synthetic import World, generate_lines
from recocli.recommend.run import Request, recommend

NIGHTLY_S = 24 * 3600
TARGET_P50_S, TARGET_P95_S = 5.0, 15.0


def wait_for(check, timeout: float, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("gave up waiting")


def in_bronze(uri: str, event_id: str) -> int | None:
    """The table version at which the event is visible, or None."""
    table = delta.open_table(uri)
    if table is None:
        return None
    found = table.to_pyarrow_table(
        columns=["event_id"], filters=[("event_id", "=", event_id)], filesystem=delta.arrow_file_system(uri)
    )
    return table.version() if found.num_rows else None


def model_covering(registry: ModelRegistry, events_version: int) -> int | None:
    latest = registry.latest()
    if latest is None:
        return None
    cursor = registry.metadata(latest).get("cursor", {})
    return latest if cursor.get(catalog.EVENTS.name, -1) >= events_version else None


def user_list(settings, user: str) -> list[str]:
    return recommend(settings, Request(k=10, users=[user])).rows["item_id"].to_pylist()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--history", type=int, default=5000, help="events ingested before the probes")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="reco-fresh-"))
    warehouse, landing = root / "warehouse", root / "landing"
    settings = load_settings(overrides={"warehouse": str(warehouse), "ingest.landing": str(landing)})
    world = World(users=200, items=300, clusters=10)
    start = datetime.now(UTC) - timedelta(days=2)
    lines, _ = generate_lines(
        args.history, world, seed=3, start=start, span=timedelta(days=2), feedback_share=0
    )
    write_landing_file(landing, "events", "history.jsonl", lines["events"])
    create_tables(Warehouse(warehouse))  # as `reco init` would: ingest never creates a warehouse

    env = {**os.environ, "RECO_TRAIN_SASREC_EPOCHS": "10", "RECO_TRAIN_MF_EPOCHS": "10"}
    cmd = [
        sys.executable,
        "-m",
        "recocli",
        "ingest",
        "--train",
        "--interval",
        "1s",
        "--json",
        "-w",
        str(warehouse),
        "--landing",
        str(landing),
    ]
    log = (root / "ingest.log").open("wb")
    job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env, start_new_session=True)

    def first_version() -> int | None:
        if job.poll() is not None:  # the job ended: say why instead of waiting out the timeout
            tail = (root / "ingest.log").read_text()[-2000:]
            raise SystemExit(f"reco ingest --train exited {job.returncode}: {tail}")
        return registry.latest()

    registry = ModelRegistry(Warehouse(warehouse))
    uri = Warehouse(warehouse).uri(catalog.EVENTS)
    stages: dict[str, list[float]] = {"bronze": [], "model": [], "list": []}
    try:
        wait_for(first_version, timeout=600, every=0.5)
        print(f"model v{registry.latest()} trained on the history; probing", file=sys.stderr)
        rng = np.random.default_rng(0)
        for probe in range(args.probes):
            user = f"u{rng.integers(world.users)}"
            before = user_list(settings, user)
            clicked = before[0]  # a click on the top item must change the list
            event_id = f"probe-{probe}"
            record = {
                "event_id": event_id,
                "user_id": user,
                "item_id": clicked,
                "event_type": "click",
                "ts": datetime.now(UTC).isoformat(),
            }
            t0 = time.perf_counter()
            write_landing_file(landing, "events", f"probe-{probe:03d}.jsonl", [record])
            version = wait_for(lambda: in_bronze(uri, event_id), timeout=120)  # noqa: B023
            stages["bronze"].append(time.perf_counter() - t0)

            def changed(user=user, before=before, clicked=clicked) -> bool:
                after = user_list(settings, user)
                return after != before and clicked not in after

            wait_for(changed, timeout=120, every=0.0)
            stages["list"].append(time.perf_counter() - t0)
            wait_for(lambda: model_covering(registry, version), timeout=180, every=0.1)  # noqa: B023
            stages["model"].append(time.perf_counter() - t0)
            print(
                f"probe {probe}: bronze {stages['bronze'][-1]:.2f}s, list {stages['list'][-1]:.2f}s, "
                f"model {stages['model'][-1]:.2f}s",
                file=sys.stderr,
            )
            time.sleep(rng.uniform(0.2, 1.5))
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(timeout=120)
        shutil.rmtree(root, ignore_errors=True)

    def pct(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)), 2)

    print_table(
        f"click → fresh, over {args.probes} probes (reco ingest --train --interval 1s, 2-core CPU)",
        ["stage", "p50 s", "p95 s", "max s"],
        [[name, pct(v, 50), pct(v, 95), round(max(v), 2)] for name, v in stages.items()],
    )
    p50, p95 = pct(stages["list"], 50), pct(stages["list"], 95)
    print(
        json.dumps(
            {
                "bench": "freshness",
                "probes": args.probes,
                **{f"{name}_p50_s": pct(v, 50) for name, v in stages.items()},
                **{f"{name}_p95_s": pct(v, 95) for name, v in stages.items()},
                "nightly_batch_s": NIGHTLY_S,
                "ratio": round(NIGHTLY_S / p50),
                "target": {"list_p50_s": TARGET_P50_S, "list_p95_s": TARGET_P95_S},
                "meets_target": p50 < TARGET_P50_S and p95 < TARGET_P95_S,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
