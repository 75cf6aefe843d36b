"""A mistyped warehouse or landing folder fails with one line (exit 2) and creates nothing;
`reco init` creates them explicitly."""

from __future__ import annotations

import json

from helpers import run_reco


def _one_line_exit_2(done, needle: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_missing_warehouse_or_landing_is_exit_2_and_nothing_is_created(tmp_path):
    typo = tmp_path / "typo"
    real = tmp_path / "real"
    assert run_reco("init", "-w", str(real / "warehouse"), "--landing", str(real / "landing")).returncode == 0
    w, lnd = ("-w", str(real / "warehouse")), ("--landing", str(real / "landing"))
    cases = {
        "landing": run_reco("ingest", "--once", *w, "--landing", str(typo)),
        "ingest warehouse": run_reco("ingest", "--once", "-w", str(typo), *lnd),
        "train": run_reco("train", "-w", str(typo)),
        "status": run_reco("status", "-w", str(typo)),
        "models list": run_reco("models", "list", "-w", str(typo)),
        "report": run_reco("report", "-w", str(typo)),
        "recommend": run_reco("recommend", "-w", str(typo)),
    }
    for what, done in cases.items():
        _one_line_exit_2(done, "landing folder" if what == "landing" else "no warehouse")
        assert "reco init" in done.stderr, what
    assert not typo.exists(), "a failed command created the mistyped folder (or a lock file in it)"


def test_init_creates_every_table_and_the_landing_folders_once(tmp_path):
    warehouse, landing = tmp_path / "w", tmp_path / "l"
    first = run_reco("init", "-w", str(warehouse), "--landing", str(landing), "--json")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)["tables_created"]
    assert "bronze/events" in created and "gold/latest_recommendations" in created
    assert (landing / "events").is_dir() and (landing / "feedback").is_dir()
    again = json.loads(run_reco("init", "-w", str(warehouse), "--landing", str(landing), "--json").stdout)
    assert again["tables_created"] == []
    status = json.loads(run_reco("status", "-w", str(warehouse), "--landing", str(landing), "--json").stdout)
    assert all(t is not None and t["rows"] == 0 for t in status["tables"].values())
    listed = run_reco("models", "list", "-w", str(warehouse))
    assert listed.returncode == 0 and "no model versions" in listed.stdout
