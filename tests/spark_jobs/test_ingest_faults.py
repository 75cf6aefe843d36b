"""Real `reco ingest` processes: SIGKILL at random moments, the lock, SIGTERM/SIGINT, spark-submit."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import Process, event, ids, reco_cmd, run_reco, table

from lakehouse import catalog
from lakehouse.delta import committed_version
from lakehouse.landing import write_landing_file
from recocli.data.synthetic import generate_lines
from spark_jobs.spool import BatchSpool

pytestmark = pytest.mark.slow


def _land(landing: Path, seed: int, files: int, events: int) -> tuple[set[str], set[str], int, int]:
    """Land generated files; return the expected event and feedback ids, quarantine and line counts."""
    lines, expected = generate_lines(events, seed=seed, broken_share=0.02, duplicate_share=0.03)
    for kind, texts in lines.items():
        for n in range(files):
            write_landing_file(landing, kind, f"{seed}-{n:03d}.jsonl", texts[n::files])
    return expected.ids["events"], expected.ids["feedback"], sum(expected.quarantine.values()), expected.lines


def test_sigkill_at_random_moments_then_rerun_loses_and_duplicates_nothing(tmp_path):
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    warehouse.mkdir(), landing.mkdir()
    rng = random.Random(2024)
    args = (
        "ingest",
        "--once",
        "--max-files-per-batch",
        "1",
        "--warehouse",
        str(warehouse),
        "--landing",
        str(landing),
        "--json",
    )
    killed_mid_run, landed = 0, []
    for trial in range(5):
        # Each trial lands new files, so every run has work: a run with nothing new exits before
        # Spark starts, and a kill would land after it.
        landed.append(_land(landing, seed=11 + trial, files=4, events=2000))
        proc = Process(reco_cmd(*args))
        time.sleep(rng.uniform(2.0, 10.0))
        if proc.proc.poll() is None:
            killed_mid_run += 1
        proc.kill_group()
    assert killed_mid_run >= 3, "the kills should land while the job runs"
    event_ids, feedback_ids, quarantined, lines = zip(*landed, strict=True)
    everything = (set().union(*event_ids), set().union(*feedback_ids), sum(quarantined), sum(lines))
    _rerun_holds_every_line_once(args, warehouse, everything, files=8 * len(landed))


def _rerun_holds_every_line_once(args: tuple, warehouse: Path, landed: tuple, files: int) -> None:
    """Run `reco *args` to the end; then every landed line (`_land`'s answer) is in the tables once,
    and each of the `files` landed files was read by exactly one committed batch."""
    event_ids, feedback_ids, quarantined, lines = landed
    final = run_reco(*args)
    assert final.returncode == 0, final.stderr
    assert ids(warehouse) == sorted(event_ids)
    assert ids(warehouse, catalog.FEEDBACK) == sorted(feedback_ids)
    assert table(warehouse, catalog.QUARANTINE).num_rows == quarantined
    metrics = table(warehouse, catalog.INGEST_METRICS).to_pylist()
    batch_ids = [m["batch_id"] for m in metrics]
    assert len(batch_ids) == len(set(batch_ids)), "a batch was recorded twice"
    assert sum(m["lines_read"] for m in metrics) == lines
    read = [f for m in metrics for f in m["files"]]
    assert len(read) == len(set(read)) == files, "every file read by exactly one committed batch"


def test_second_ingest_is_refused_and_sigterm_finishes_cleanly(tmp_path):
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    warehouse.mkdir(), landing.mkdir()
    write_landing_file(landing, "events", "a.jsonl", [event(n) for n in range(50)])
    first = Process(
        reco_cmd(
            "ingest", "--warehouse", str(warehouse), "--landing", str(landing), "--interval", "0.5s", "--json"
        )
    )
    first.wait_for(lambda text: '"batch"' in text)
    versions_before = {spec.name: _version(warehouse, spec) for spec in catalog.INGEST_TABLES}

    second = run_reco(
        "ingest", "--once", "--warehouse", str(warehouse), "--landing", str(landing), timeout=120
    )
    assert second.returncode == 3
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    assert {spec.name: _version(warehouse, spec) for spec in catalog.INGEST_TABLES} == versions_before

    # The running job keeps streaming: a new file arrives in a later batch.
    write_landing_file(landing, "events", "b.jsonl", [event(n) for n in range(50, 80)])
    first.wait_for(lambda text: '"batch"' in text and '"events_written": 30' in text)
    first.signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 0
    summary = [json.loads(t) for t in first.stdout if t.startswith('{"summary"')]
    assert summary and summary[0]["stopped_by_signal"] is True
    assert ids(warehouse) == sorted(f"e{n}" for n in range(80))


def test_sigint_while_files_keep_arriving_exits_0_and_a_rerun_takes_the_rest(tmp_path):
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    warehouse.mkdir(), landing.mkdir()
    proc = Process(
        reco_cmd(
            "ingest", "--warehouse", str(warehouse), "--landing", str(landing), "--interval", "0.2s", "--json"
        )
    )
    proc.wait_for(lambda text: '"writer"' in text)
    for n in range(30):
        write_landing_file(landing, "events", f"f{n:02d}.jsonl", [event(f"{n}-{k}") for k in range(20)])
        if n == 15:
            proc.signal(signal.SIGINT)
        time.sleep(0.1)
    assert proc.wait(timeout=120) == 0
    metrics = table(warehouse, catalog.INGEST_METRICS).to_pylist()
    # Every committed batch is complete: its rows and its metrics row agree.
    assert table(warehouse, catalog.EVENTS).num_rows == sum(m["events_written"] for m in metrics)
    rerun = run_reco("ingest", "--once", "--warehouse", str(warehouse), "--landing", str(landing))
    assert rerun.returncode == 0, rerun.stderr
    assert ids(warehouse) == sorted(f"e{n}-{k}" for n in range(30) for k in range(20))


def test_runs_unchanged_under_spark_submit(tmp_path):
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    warehouse.mkdir(), landing.mkdir()
    write_landing_file(landing, "events", "a.jsonl", [event(n) for n in range(25)])
    conf = tmp_path / "job.toml"
    conf.write_text(
        f'warehouse = "{warehouse}"\n[ingest]\nlanding = "{landing}"\n[spark]\nmaster = "local[1]"\n'
    )
    spark_submit = Path(sys.executable).parent / "spark-submit"
    job = Path(__file__).resolve().parents[2] / "spark_jobs" / "ingest.py"
    done = subprocess.run(
        [str(spark_submit), "--master", "local[2]", str(job), "--config", str(conf), "--once"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "writer: delta-rs" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1])["summary"]["events_written"] == 25
    assert ids(warehouse) == sorted(f"e{n}" for n in range(25))


def test_emptied_checkpoint_is_refused_instead_of_skipping_batches(tmp_path):
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    warehouse.mkdir(), landing.mkdir()
    write_landing_file(landing, "events", "a.jsonl", [event(1)])
    assert run_reco("ingest", "--once", "-w", str(warehouse), "--landing", str(landing)).returncode == 0
    shutil.rmtree(warehouse / "_checkpoints")
    write_landing_file(landing, "events", "b.jsonl", [event(2)])
    again = run_reco("ingest", "--once", "-w", str(warehouse), "--landing", str(landing))
    assert again.returncode == 2
    assert "checkpoint" in again.stderr and "Traceback" not in again.stderr
    assert ids(warehouse) == ["e1"]


def test_a_batch_too_large_for_the_driver_is_explained_and_a_rerun_with_room_takes_it(tmp_path):
    """Spark refuses a batch whose results outgrow spark.driver.maxResultSize (here 1 MiB; 1 GiB by
    default, which 7M uncapped lines exceeded). The batch stays planned with its files, so the error
    says how to run it; a rerun with the default limit ingests it, every line once."""
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    warehouse.mkdir(), landing.mkdir()
    write_landing_file(landing, "events", "big.jsonl", [event(n, session_id="s" * 200) for n in range(20000)])
    tight = tmp_path / "tight.toml"
    tight.write_text(
        '[ingest]\nmax_bytes_per_batch = "0"\n[spark]\nconf = { "spark.driver.maxResultSize" = "1m" }\n'
    )
    args = ("ingest", "--once", "-w", str(warehouse), "--landing", str(landing))
    failed = run_reco(*args, "--config", str(tight))
    assert failed.returncode == 2
    assert "error: batch 0 failed in Spark" in failed.stderr and "spark.driver.maxResultSize" in failed.stderr
    assert "Traceback" not in failed.stderr and len(failed.stderr.splitlines()) < 12, failed.stderr
    assert ids(warehouse) == []
    rerun = run_reco(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert ids(warehouse) == sorted(f"e{n}" for n in range(20000))


def test_kill_between_delta_commit_and_spark_commit_is_resumed(tmp_path):
    """The Delta commit landed but Spark's `commits/0` did not (the kill fell in between): the rerun
    replays batch 0, skips it as committed, then ingests the new file."""
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    warehouse.mkdir(), landing.mkdir()
    write_landing_file(landing, "events", "a.jsonl", [event(1), event(2)])
    assert run_reco("ingest", "--once", "-w", str(warehouse), "--landing", str(landing)).returncode == 0
    checkpoint = warehouse / "_checkpoints" / "reco_ingest"
    for name in ("0", ".0.crc"):
        (checkpoint / "commits" / name).unlink(missing_ok=True)
    write_landing_file(landing, "events", "b.jsonl", [event(3)])
    again = run_reco("ingest", "--once", "-w", str(warehouse), "--landing", str(landing))
    assert again.returncode == 0, again.stderr[-3000:]
    assert ids(warehouse) == ["e1", "e2", "e3"]


def test_sigkill_after_spark_recorded_a_batch_before_its_delta_commit_loses_nothing(tmp_path):
    """The window the spool is for: Spark has recorded batch N as done (`commits/N`) while its Delta
    commit still runs on the commit thread (the batch is in the spool). Real kills in that window,
    then a rerun: every line is in once."""
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    warehouse.mkdir(), landing.mkdir()
    args = ("ingest", "--once", "--max-files-per-batch", "1", "-w", str(warehouse), "--landing", str(landing))
    checkpoint = warehouse / "_checkpoints" / "reco_ingest"
    hits, landed = 0, []
    # The window is 25-50 ms per batch here and can close on a busy machine (Spark's record then comes
    # after the commit): each trial lands new files, so a trial that ran to the end leaves work for
    # the next, until two kills have landed in it.
    while hits < 2 and len(landed) < 8:
        landed.append(_land(landing, seed=12 + len(landed), files=6, events=30000))
        proc = Process(reco_cmd(*args))
        while proc.proc.poll() is None:
            if any((checkpoint / "commits" / str(n)).exists() for n in _spooled(checkpoint)):
                proc.kill_group()
                break
            time.sleep(0.002)
        proc.kill_group()
        recorded = {int(p.name) for p in (checkpoint / "commits").glob("[0-9]*")}
        in_delta = committed_version(str(warehouse / catalog.INGEST_METRICS.name), "reco_ingest")
        hits += any(n in recorded and (in_delta is None or n > in_delta) for n in _spooled(checkpoint))
    assert hits >= 2, (
        f"in {len(landed)} trials, the kills should land after Spark's record and before the Delta commit"
    )
    event_ids, feedback_ids, quarantined, lines = zip(*landed, strict=True)
    everything = (set().union(*event_ids), set().union(*feedback_ids), sum(quarantined), sum(lines))
    _rerun_holds_every_line_once(args, warehouse, everything, files=12 * len(landed))
    assert list((checkpoint / "spool").glob("*")) == []


def _spooled(checkpoint: Path) -> set[int]:
    return set(BatchSpool(checkpoint / "spool").pending())


def _version(warehouse: Path, spec) -> int:
    from deltalake import DeltaTable

    return DeltaTable(str(warehouse / spec.name)).version()
