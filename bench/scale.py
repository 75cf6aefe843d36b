"""Scale: does ingest's cost follow the dedup horizon or the table's history?

Builds one warehouse per size in `--existing` (bronze/events holding that many events, `--per-day`
events a day ending two days ago, so a bigger table is a longer history at the same rate), lands one
batch of `--batch` new events (the last two days, with duplicates and broken lines), and runs
`reco ingest --once` of it on a fresh copy of each warehouse, as its own process under
`/usr/bin/time -v`. Measures the ingest process's own peak RSS (Python, not the JVM), the peak of
the whole job (/usr/bin/time's figure, the JVM included) and the time from launch to the first
commit of bronze/events. Target: both within 15 % of each other between the smallest and largest
warehouse. `--before DIR` runs the same with the source tree in DIR as well (e.g. the commit
before this change, exported with `git archive`). Prints a table, then one JSON line.
Then, on another copy of each warehouse, `reco train --full` (mf, `--train-epochs` epochs in batches
of `--train-batch`): its peak RSS against rows; and with the model trained, `reco recommend` of
every user with `--engine local` and `--engine spark` (local[2]): users/s of the whole command.
`--parts` picks among ingest, train, recommend. `meets_target` judges ingest only.
`--dedup-only` times the dedup step alone, without Spark: the batch's ids judged against the
table by spark_jobs.dedup (the horizon) and by a set of every id (as before), each in its own process.

    .venv/bin/python bench/scale.py --existing 1000000,10000000 --batch 500000 [--before /tmp/old]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.landing import write_landing_file
from recocli.console import print_table
from recocli.data.synthetic import generate_lines

TARGET_SPREAD = 0.15
CHUNK_ROWS = 1_000_000
HERE = Path(__file__).resolve().parents[1]


def build_history(warehouse: Path, events: int, per_day: int, end: datetime) -> None:
    """`events` events at `per_day` a day up to `end`, written by an "import" app in chunks of a
    million rows (one file per date and chunk)."""
    uri = Warehouse(str(warehouse)).uri(catalog.EVENTS)
    step_us = 86_400_000_000 // per_day
    end_us = int(end.timestamp() * 1_000_000)
    rng = np.random.default_rng(0)
    for version, first in enumerate(range(0, events, CHUNK_ROWS)):
        n = np.arange(first, min(first + CHUNK_ROWS, events))
        ts = pa.array(end_us - (events - n) * step_us, pa.timestamp("us", tz="UTC"))
        rows = pa.table(
            {
                "event_id": pc.binary_join_element_wise("h-", pc.cast(pa.array(n), pa.string()), ""),
                "user_id": _prefixed("u", rng.integers(0, 100_000, len(n))),
                "item_id": _prefixed("i", rng.integers(0, 20_000, len(n))),
                "event_type": pa.repeat(pa.scalar("view"), len(n)),
                "value": pa.nulls(len(n), pa.float64()),
                "ts": ts,
                "session_id": pa.nulls(len(n), pa.string()),
                "context": pa.nulls(len(n), catalog.EVENTS.schema.field("context").type),
                "event_date": pc.cast(ts, pa.date32()),
                "ingested_at": pa.repeat(pa.scalar(end, pa.timestamp("us", tz="UTC")), len(n)),
                "batch_id": pa.repeat(pa.scalar(version, pa.int64()), len(n)),
                "source_file": pa.repeat(pa.scalar("history"), len(n)),
            }
        )
        delta.append_once(uri, catalog.EVENTS, rows, "history", version)


def _prefixed(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values), pa.string()), "")


def land(landing: Path, events: int, start: datetime) -> int:
    lines, expected = generate_lines(
        events, seed=7, start=start, broken_share=0.001, duplicate_share=0.005, feedback_share=0.1
    )
    for kind, texts in lines.items():
        size = -(-len(texts) // 8)
        for n in range(8):
            write_landing_file(landing, kind, f"part-{n:04d}.jsonl", texts[n * size : (n + 1) * size])
    return expected.lines


CHILD = (
    "import resource, runpy, sys\n"
    "sys.argv = ['reco', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('recocli', run_name='__main__')\n"
    "finally:\n"
    "    print('driver_peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def run_reco(code: Path, args: list[str], env: dict[str, str] | None = None) -> tuple[dict, dict]:
    """`reco ARGS` from source tree `code` as its own process under /usr/bin/time -v: its last JSON
    line and its figures (wall seconds, the process's own peak RSS, the whole job's)."""
    env = {**os.environ, "PYTHONPATH": str(code), **(env or {})}
    launched = time.time()
    done = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-c", CHILD, *args],
        env=env, capture_output=True, text=True, cwd=code,
    )  # fmt: skip
    wall = time.time() - launched
    if done.returncode != 0:
        raise SystemExit(f"reco {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    output = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    figures = {
        "launched": launched,
        "wall_s": round(wall, 1),
        "driver_peak_mb": round(int(_field(done.stderr, r"driver_peak_kb (\d+)")) / 1024),
        "job_peak_mb": round(int(_field(done.stderr, r"Maximum resident set size \(kbytes\): (\d+)")) / 1024),
    }
    return output, figures


def run_ingest(code: Path, warehouse: Path, landing: Path) -> dict:
    """`reco ingest --once` from source tree `code`, as its own process; its figures."""
    history_version = delta.current_version(Warehouse(str(warehouse)).uri(catalog.EVENTS))
    args = ["ingest", "--once", "--json", "--warehouse", str(warehouse), "--landing", str(landing)]
    output, figures = run_reco(code, args)
    launched = figures.pop("launched")
    commits = DeltaTable(Warehouse(str(warehouse)).uri(catalog.EVENTS)).history()
    first = min(c["timestamp"] for c in commits if c["version"] > history_version) / 1000
    summary = output["summary"]
    return {
        "first_commit_s": round(first - launched, 1),
        **figures,
        "events_written": summary["events_written"],
        "duplicates": summary["duplicates"],
    }


def run_train(code: Path, warehouse: Path, epochs: int, batch_size: int) -> dict:
    """`reco train --full` of mf for `epochs` in batches of `batch_size` (few steps: the memory is the
    point) from source tree `code`: interactions, seconds, peak RSS."""
    args = [
        "train",
        "--full",
        "--model",
        "mf",
        "--epochs",
        str(epochs),
        "--json",
        "--warehouse",
        str(warehouse),
    ]
    output, figures = run_reco(
        code, args, {"RECO_TRAIN_ACCELERATOR": "cpu", "RECO_TRAIN_BATCH_SIZE": str(batch_size)}
    )
    figures.pop("launched")
    return {"interactions": output["interactions"], **figures}


def run_recommend(warehouse: Path, engine: str) -> dict:
    """`reco recommend` of every user with `engine` (spark: local[2]): users, users/s of the command."""
    args = ["recommend", "--engine", engine, "--json", "--warehouse", str(warehouse)]
    output, figures = run_reco(HERE, args, {"RECO_SPARK_MASTER": "local[2]"})
    figures.pop("launched")
    return {"users": output["users"], "users_per_s": round(output["users"] / figures["wall_s"]), **figures}


DEDUP_CHILD = """
import json, sys, time
import numpy as np, pyarrow as pa
from lakehouse import delta
from spark_jobs.dedup import SeenIds
def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) // 1024
uri, mode, n, start_us = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ids = pa.chunked_array([pa.array([f"new-{i}" for i in range(n)])])
step = 172_800_000_000 // n  # two days
ts = pa.chunked_array([pa.array(start_us + np.arange(n) * step, pa.timestamp("us", tz="UTC"))])
before = rss_mb()
clock = time.perf_counter()
if mode == "horizon":
    held = SeenIds(uri, "bench", 7)
    fresh = held.first_sightings(ids, ts, 0)
else:
    held = set(delta.read_table(uri, columns=["event_id"]).column("event_id").to_pylist())
    fresh = np.array([not (i in held or held.add(i)) for i in ids.to_pylist()])
seconds = time.perf_counter() - clock
print(json.dumps({"seconds": round(seconds, 2), "held_ids": len(held), "grown_mb": rss_mb() - before}))
"""


def time_dedup(warehouse: Path, mode: str, batch: int, start: datetime) -> dict:
    """The dedup step alone (`horizon` or `every-id`) in its own process: seconds, ids and memory held."""
    uri = Warehouse(str(warehouse)).uri(catalog.EVENTS)
    args = [sys.executable, "-c", DEDUP_CHILD, uri, mode, str(batch), str(int(start.timestamp() * 1e6))]
    done = subprocess.run(args, env={**os.environ, "PYTHONPATH": str(HERE)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"dedup run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def dedup_only(work: Path, sizes: list[int], batch: int, per_day: int, now: datetime) -> int:
    results = {}
    for size in sizes:
        history = work / f"history-{size}"
        build_history(history, size, per_day, now - timedelta(days=2))
        for mode in ("horizon", "every-id"):
            results[f"{mode} {size}"] = time_dedup(history, mode, batch, now - timedelta(days=2))
            print(mode, size, results[f"{mode} {size}"], file=sys.stderr)
        shutil.rmtree(history)
    rows = [[key, str(r["seconds"]), str(r["held_ids"]), str(r["grown_mb"])] for key, r in results.items()]
    headers = ["judged by, existing events", "seconds", "ids held", "memory held MB"]
    print_table(f"dedup of {batch:,} new ids", headers, rows)
    grown = [results[f"horizon {size}"]["grown_mb"] for size in (sizes[0], sizes[-1])]
    spread_mb = round(spread([max(g, 1) for g in grown]), 3)
    print(
        json.dumps(
            {
                "bench": "scale_dedup",
                "results": results,
                "rss_spread": spread_mb,
                "target": {"spread": TARGET_SPREAD},
                "meets_target": spread_mb <= TARGET_SPREAD,
            }
        )
    )
    return 0


def _field(text: str, pattern: str) -> str:
    return re.search(pattern, text).group(1)


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / min(values)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--existing", default="1000000,10000000", help="events in bronze, comma-separated")
    parser.add_argument("--batch", type=int, default=500_000)
    parser.add_argument("--per-day", type=int, default=10_000)
    parser.add_argument("--before", type=Path, help="also run the source tree in this folder")
    parser.add_argument("--dedup-only", action="store_true", help="time the dedup step alone")
    parser.add_argument("--parts", default="ingest,train,recommend", help="what to run, comma-separated")
    parser.add_argument("--train-epochs", type=int, default=1, help="epochs of the measured mf training")
    parser.add_argument("--train-batch", type=int, default=4096, help="batch size of the measured training")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    args = parser.parse_args()
    sizes = [int(s) for s in args.existing.split(",")]
    parts = set(args.parts.split(","))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="reco-scale-"))
    shutil.rmtree(work, ignore_errors=True)
    now = datetime.now(UTC)
    if args.dedup_only:
        return dedup_only(work, sizes, args.batch, args.per_day, now)
    lines = land(work / "landing", args.batch, now - timedelta(days=2)) if "ingest" in parts else 0
    codes = {"after": HERE, **({"before": args.before.resolve()} if args.before else {})}
    results: dict[str, dict[int, dict]] = {name: {} for name in codes}
    load = [os.getloadavg()[0]]
    for size in sizes:
        print(f"building a warehouse of {size} events", file=sys.stderr)
        pristine = work / f"history-{size}"
        build_history(pristine, size, args.per_day, now - timedelta(days=2))
        for name, code in codes.items():
            results[name][size] = run_size(
                code, pristine, work / f"{name}-{size}", parts, args, name == "after"
            )
            print(f"{name} {size}: {results[name][size]}", file=sys.stderr)
        shutil.rmtree(pristine)
        load.append(os.getloadavg()[0])
    report(results, parts, lines, args.per_day, load)
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def run_size(
    code: Path, pristine: Path, copy: Path, parts: set[str], args: argparse.Namespace, now: bool
) -> dict:
    """Ingest of the landed batch into a copy of `pristine`; training on another copy, then (for the
    code of this tree only) recommend with both engines from the model trained."""
    figures: dict[str, dict] = {}
    if "ingest" in parts:
        shutil.copytree(pristine, copy)
        figures["ingest"] = run_ingest(code, copy, pristine.parent / "landing")
        shutil.rmtree(copy)
    if parts & {"train", "recommend"}:
        shutil.copytree(pristine, copy)
        figures["train"] = run_train(code, copy, args.train_epochs, args.train_batch)
        if "recommend" in parts and now:
            figures["recommend"] = {engine: run_recommend(copy, engine) for engine in ("local", "spark")}
        shutil.rmtree(copy)
    return figures


def report(
    results: dict[str, dict[int, dict]], parts: set[str], lines: int, per_day: int, load: list[float]
) -> None:
    """The tables, then the JSON line: `meets_target` judges ingest only (the issue's target)."""
    ingest = {n: {s: r["ingest"] for s, r in by.items() if "ingest" in r} for n, by in results.items()}
    if "ingest" in parts:
        keys = ("first_commit_s", "wall_s", "driver_peak_mb", "job_peak_mb")
        rows = [[n, f"{s:,}", *(str(r[k]) for k in keys)] for n, by in ingest.items() for s, r in by.items()]
        print_table(
            f"reco ingest --once of {lines:,} new lines, {per_day:,} existing events a day",
            ["code", "existing events", "to first commit s", "wall s", "driver peak MB", "job peak MB"],
            rows,
        )
    train = [
        [n, f"{t['interactions']:,}", str(t["wall_s"]), str(t["driver_peak_mb"])]
        for n, by in results.items()
        for t in (r["train"] for r in by.values() if "train" in r)
    ]
    if train:
        print_table("reco train --full (mf)", ["code", "interactions", "wall s", "peak MB"], train)
    recommend = [
        [f"{s:,}", e, f"{f['users']:,}", f"{f['users_per_s']:,}", str(f["wall_s"]), str(f["driver_peak_mb"])]
        for s, r in results["after"].items()
        for e, f in r.get("recommend", {}).items()
    ]
    if recommend:
        headers = ["existing events", "engine", "users", "users/s", "wall s", "driver peak MB"]
        print_table("reco recommend (every user, whole command)", headers, recommend)
    sizes = sorted(next(iter(results.values())))
    figures = {}
    if "ingest" in parts:
        after = [ingest["after"][size] for size in (sizes[0], sizes[-1])]
        figures = {
            "rss_spread": round(spread([r["driver_peak_mb"] for r in after]), 3),
            "first_commit_spread": round(spread([r["first_commit_s"] for r in after]), 3),
        }
    print(
        json.dumps(
            {
                "bench": "scale",
                "batch_lines": lines,
                "per_day": per_day,
                "load_average": [round(x, 1) for x in load],
                "results": {name: {str(k): v for k, v in by.items()} for name, by in results.items()},
                **figures,
                "target": {"spread": TARGET_SPREAD},
                "meets_target": bool(figures) and all(v <= TARGET_SPREAD for v in figures.values()),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
