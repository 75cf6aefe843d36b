"""`reco recommend --engine spark`: scoring on local[2]'s executors gives the local engine's lists."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from helpers import run_reco

from lakehouse.landing import write_landing_file
from recocli.config import load_settings
from recocli.data.synthetic import World, generate_lines
from recocli.engines.spark import spark_scorer
from recocli.recommend.run import Request, recommend
from recocli.training.incremental import WarehouseTrainer
from spark_jobs.ingest import run_ingest

WORLD = World(users=40, items=80, clusters=4)


@pytest.fixture(scope="module")
def trained(spark, tmp_path_factory):
    """A warehouse with ingested generated events and a full-trained sasrec (version 1)."""
    root = tmp_path_factory.mktemp("recommend_spark")
    settings = load_settings(
        env={},
        overrides={
            "warehouse": str(root / "warehouse"),
            "ingest.landing": str(root / "landing"),
            "train.sasrec.epochs": 2,
            "train.sasrec.val_users": 20,
            "model.sasrec.dim": 16,
            "recommend.batch_users": 7,  # several batches per Arrow batch and a short last one
        },
    )
    start = datetime.now(UTC) - timedelta(days=3)
    lines, _ = generate_lines(1500, WORLD, seed=3, start=start, span=timedelta(days=2), feedback_share=0.0)
    write_landing_file(root / "landing", "events", "history.jsonl", lines["events"])
    run_ingest(settings, once=True)
    assert WarehouseTrainer(settings, progress=False).run(full=True).version == 1
    return root, settings


def test_spark_engine_writes_the_local_engines_lists(spark, trained):
    _, settings = trained
    request = Request(k=5, users=[f"u{n}" for n in range(WORLD.users)] + ["nobody", "u3"])
    local = recommend(settings, request)
    on_spark = recommend(settings, request, spark_scorer(spark))
    assert (on_spark.users, on_spark.model_users, on_spark.popular_users) == (
        local.users,
        local.model_users,
        local.popular_users,
    )
    assert local.popular_users >= 1  # "nobody" has no events: the popular list, from both engines
    columns = ["user_id", "rank", "item_id", "strategy", "model_version"]
    assert on_spark.rows.select(columns).to_pylist() == local.rows.select(columns).to_pylist()
    for mine, theirs in zip(on_spark.rows["score"].to_pylist(), local.rows["score"].to_pylist(), strict=True):
        assert math.isclose(mine, theirs, rel_tol=1e-5, abs_tol=1e-6)
    assert local.rows.num_rows >= 5 * WORLD.users


def test_an_unknown_engine_is_one_line_and_exit_2(trained):
    root, _ = trained
    bad = run_reco("recommend", "-w", str(root / "warehouse"), "--engine", "gpu")
    assert bad.returncode == 2 and "--engine must be one of local, spark" in bad.stderr
    assert "Traceback" not in bad.stderr
