"""`reco ingest` from the command line: what it checks and answers before Spark starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from helpers import REPO, event, ids, run_reco

from lakehouse.landing import write_landing_file


def _timed(*args: str):
    started = time.perf_counter()
    done = run_reco(*args)
    return done, time.perf_counter() - started


def test_once_with_nothing_landed_skips_spark_and_a_new_file_is_still_taken(tmp_path):
    warehouse, landing = tmp_path / "warehouse", tmp_path / "landing"
    assert run_reco("init", "-w", str(warehouse), "--landing", str(landing)).returncode == 0
    args = ("ingest", "--once", "-w", str(warehouse), "--landing", str(landing))
    idle, seconds = _timed(*args)
    assert idle.returncode == 0, idle.stderr
    assert "Spark not started" in idle.stdout
    assert seconds < 10, f"an idle cron run took {seconds:.1f}s"  # 3-4 s here (Spark: ~25 s)

    write_landing_file(landing, "events", "a.jsonl", [event(n) for n in range(5)])
    busy = run_reco(*args)
    assert busy.returncode == 0 and "Spark not started" not in busy.stdout, busy.stderr
    assert ids(warehouse) == [f"e{n}" for n in range(5)]

    again, seconds = _timed(*args)
    assert again.returncode == 0 and "Spark not started" in again.stdout, again.stderr
    print(f"idle --once after a run: {seconds:.2f}s")
    write_landing_file(landing, "feedback", "b.jsonl", ["{}"])
    quarantined = run_reco(*args)
    assert "Spark not started" not in quarantined.stdout, "a file landed since the last run is read"


def test_another_landing_folder_is_refused_before_spark_starts_and_runs_under_its_own_query(tmp_path):
    warehouse, landing, moved = tmp_path / "warehouse", tmp_path / "landing", tmp_path / "moved"
    assert run_reco("init", "-w", str(warehouse), "--landing", str(landing)).returncode == 0
    write_landing_file(landing, "events", "a.jsonl", [event(1)])
    assert run_reco("ingest", "--once", "-w", str(warehouse), "--landing", str(landing)).returncode == 0
    write_landing_file(moved, "events", "b.jsonl", [event(2)])
    refused, seconds = _timed("ingest", "--once", "-w", str(warehouse), "--landing", str(moved))
    assert refused.returncode == 2 and "--query-name" in refused.stderr and str(landing) in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, "Spark started (its JVM writes to stderr)"
    assert seconds < 10, f"refused after {seconds:.1f}s"
    own = run_reco("ingest", "--once", "-w", str(warehouse), "--landing", str(moved), "--query-name", "moved")
    assert own.returncode == 0, own.stderr
    assert ids(warehouse) == ["e1", "e2"]
    assert (warehouse / "_checkpoints" / "moved").is_dir()


def test_kafka_without_spark_s_kafka_package_is_one_line_naming_the_coordinate(tmp_path):
    import pyspark

    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    conf = tmp_path / "kafka.toml"
    conf.write_text('[ingest]\nsource = "kafka"\n[ingest.kafka]\nbootstrap_servers = "localhost:9"\n')
    done = run_reco(
        "ingest", "--once", "-w", str(warehouse), "-c", str(conf), "--landing", str(tmp_path / "none")
    )
    assert done.returncode == 2, done.stdout + done.stderr
    coordinate = f"--packages org.apache.spark:spark-sql-kafka-0-10_2.13:{pyspark.__version__}"
    errors = [text for text in done.stderr.splitlines() if text.strip()]
    assert coordinate in errors[-1] and "Traceback" not in done.stderr
    assert not any("at org.apache" in text for text in errors), "a Java stack reached the user"
    assert "landing" not in done.stdout, "the header names the landing folder of a Kafka ingest"


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--max-files-per-batch", "x"], {}, "invalid int value"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        ([], {"RECO_INGEST_FOLLOW_LINKS": "sometimes"}, "follow_links"),
        (["--warehouse", "{tmp}/missing"], {}, "no warehouse at"),
    ],
)
def test_spark_submit_entry_point_mistakes_are_one_line_exit_2(tmp_path, args, env, message):
    done = subprocess.run(
        [sys.executable, "-m", "spark_jobs.ingest", "--once", *(a.format(tmp=tmp_path) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **env},
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1, done.stderr[-2000:]
