"""`reco evaluate` end to end on a tiny generated MovieLens folder: metrics.json, summary, plots."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from evaluate_fixtures import write_planted_movielens
from helpers import reco_cmd

from lakehouse import catalog, delta
from lakehouse.catalog import Warehouse
from lakehouse.errors import RecoError
from recocli.config import load_settings
from recocli.data import movielens as ml
from recocli.lab.evaluate.loo import run_loo
from recocli.lab.evaluate.source import load

FAST = {
    "RECO_TRAIN_SASREC_EPOCHS": "3",
    "RECO_TRAIN_MF_EPOCHS": "3",
    "RECO_TRAIN_MIN_EPOCH_STEPS": "4",
    "RECO_TRAIN_THREADS": "1",
    "RECO_MODEL_SASREC_DIM": "16",
    "RECO_MODEL_SASREC_BLOCKS": "1",
    "RECO_MODEL_SASREC_MAX_LEN": "20",
    "RECO_MODEL_MF_DIM": "16",
    "RECO_MODEL_MF_MAX_LEN": "20",
}


def reco(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, **FAST}
    return subprocess.run(reco_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    return write_planted_movielens(tmp_path_factory.mktemp("ml") / "ml-planted")


def test_loo_report(movielens, tmp_path):
    report = tmp_path / "report"
    done = reco(
        "evaluate", "--protocol", "loo", "--data", str(movielens), "--models", "pop,mf,sasrec",
        "--k", "5,10", "--seed", "3", "--report", str(report), "--set", "mf.model.mf.loss=bce",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads((report / "metrics.json").read_text())
    assert result["protocol"] == "loo" and result["dataset"] == "ml-planted"
    # Our models through the ranker, each alone (-noblend), and the ranker's popularity alone.
    assert list(result["models"]) == ["pop", "mf", "mf-noblend", "sasrec", "sasrec-noblend", "prior"]
    assert set(result["blend"]) == {"mf", "sasrec", "prior"}
    assert result["model_settings"] == {"mf": {"model.mf.loss": "bce"}}
    assert result["data"]["tested_users"] == 90
    for name, values in result["models"].items():
        for metric in ("hr@5", "ndcg@5", "recall@5", "hr@10", "ndcg@10", "recall@10", "mrr", "coverage@10"):
            assert 0.0 <= values[metric] <= 1.0, (name, metric)
        assert values["ndcg@10"] <= values["hr@10"] and values["hr@5"] <= values["hr@10"]
        assert result["seconds"][name.removesuffix("-noblend")] >= 0
    # Planted tastes: the models find them, popularity cannot (its list is the same for everyone).
    assert result["models"]["mf"]["hr@10"] > result["models"]["pop"]["hr@10"]
    assert result["models"]["pop"]["coverage@10"] < result["models"]["mf"]["coverage@10"]
    assert (report / "metrics.png").stat().st_size > 1000
    summary = (report / "summary.md").read_text()
    assert "| sasrec |" in summary and "ndcg@10" in summary
    assert "sasrec" in done.stdout and "ndcg@10" in done.stdout  # the terminal table


def test_prequential_report(movielens, tmp_path):
    report = tmp_path / "report"
    done = reco(
        "evaluate", "--protocol", "prequential", "--data", str(movielens), "--models", "mf,pop",
        "--window", "400", "--retrain-every", "2", "--report", str(report), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    result = json.loads((report / "metrics.json").read_text())
    assert printed["models"] == result["models"]
    assert result["protocol"] == "prequential"
    assert {"stale", "incremental", "retrain", "popular", "chance"} <= set(result["models"])
    windows = result["strategies"]["windows"]
    assert len(windows) == result["data"]["windows"] >= 3
    assert all(w["events"] <= 450 for w in windows)
    inc = result["models"]["incremental"]
    assert inc["users"] == inc["warm_users"] + inc["cold_users"] > 0
    assert result["seconds"]["incremental"] > 0 and result["seconds"]["stale"] == 0
    assert (report / "ndcg_per_window.png").stat().st_size > 1000
    assert (report / "metrics.png").exists()
    best = max(v["ndcg@10"] for name, v in result["models"].items() if name.startswith("popularity "))
    assert result["ratios"]["incremental/best popularity"] == round(inc["ndcg@10"] / best, 3)
    assert "Ratios (NDCG@10): stale/best popularity" in (report / "summary.md").read_text()


def test_user_mistakes_are_one_line_errors(movielens, tmp_path):
    (tmp_path / "file").write_text("x")
    for args, message in [
        (("--protocol", "kfold"), "--protocol must be one of"),
        (("--data", str(tmp_path / "none")), "not found"),
        (("--data", str(movielens), "--models", "pop,knn", "--sample-users", "5"), "unknown model"),
        (("--data", str(movielens), "--protocol", "prequential", "--models", "als"), "loo only"),
        (("--data", str(movielens), "--k", "ten"), "comma-separated"),
        (("--data", str(movielens), "--models", "mf", "--set", "als.train.mf.lr=1"), "not among --models"),
        (("--data", str(movielens), "--models", "mf", "--set", "mf.train.nope=1"), "unknown setting"),
        (("--data", str(movielens), "--models", "mf", "--set", "mf.lr"), "MODEL.SETTING=VALUE"),
        (("--data", str(movielens), "--report", str(tmp_path / "file")), "is a file, not a folder"),
        (("--data", str(movielens), "--protocol", "served", "--seed", "-1"), "train.seed must be between 0"),
    ]:
        done = reco("evaluate", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr


def test_same_seed_same_numbers(movielens):
    settings = load_settings(env=FAST)
    source = load(settings, movielens, sample_users=40, seed=1)
    first = run_loo(source, settings, ["sasrec", "mf"], (10,), seed=5).models
    second = run_loo(source, settings, ["sasrec", "mf"], (10,), seed=5).models
    assert first == second


def test_bronze_tables_give_the_same_numbers_as_the_folder(movielens, tmp_path):
    settings = load_settings(env={**FAST, "RECO_WAREHOUSE": str(tmp_path / "wh")})
    with pytest.raises(RecoError, match="no bronze tables"):
        load(settings)
    events = ml.read_ratings(ml.detect(movielens))
    n = events.num_rows
    lineage = {
        "session_id": pa.nulls(n, pa.string()),
        "context": pa.nulls(n, pa.map_(pa.string(), pa.string())),
        "event_date": pc.cast(events["ts"], pa.date32()),
        "ingested_at": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
        "batch_id": pa.array([0] * n, pa.int64()),
        "source_file": pa.array(["test"] * n),
    }
    for name, column in lineage.items():
        events = events.append_column(name, column)
    delta.append_once(Warehouse(settings.warehouse).uri(catalog.EVENTS), catalog.EVENTS, events, "test", 0)
    from_bronze = run_loo(load(settings), settings, ["pop"], (10,), seed=0).as_dict()
    from_folder = run_loo(load(settings, movielens), settings, ["pop"], (10,), seed=0).as_dict()
    assert from_bronze["models"] == from_folder["models"]
    assert from_bronze["data"] == from_folder["data"]


@pytest.mark.parametrize(
    ("protocol", "models"), [("loo", "pop,sasrek"), ("prequential", "pop,mff"), ("prequential", "pop,als")]
)
def test_a_misspelt_model_fails_before_any_data_is_read_or_model_trained(movielens, protocol, models):
    done = reco("evaluate", "--data", str(movielens), "--protocol", protocol, "--models", models)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "interactions" not in done.stderr and "training" not in done.stderr, "work ran before the check"
    assert len(done.stderr.strip().splitlines()) == 1
