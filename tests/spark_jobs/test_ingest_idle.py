"""`reco ingest --once` with nothing landed since the last run answers without starting Spark."""

from __future__ import annotations

import time

from helpers import event, ids, run_reco

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
