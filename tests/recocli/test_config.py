import dataclasses
import math
import tomllib
from pathlib import Path

import pytest
from helpers import REPO, run_reco

from lakehouse.errors import RecoError
from lakehouse.settings import Duration, Size, env_names, parse_duration, parse_size
from recocli.config import Settings, load_settings
from recocli.models.store import recorded_model_settings
from spark_jobs.settings import load_job_settings


def _paths(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("conf", "options"):
            out |= _paths(value, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def test_conf_reco_toml_equals_the_builtin_defaults():
    assert load_settings(REPO / "conf" / "reco.toml", env={}) == Settings()


def test_conf_reco_toml_lists_every_setting():
    """The file is the defaults' documentation: no setting left out of it."""
    written = _paths(tomllib.loads((REPO / "conf" / "reco.toml").read_text()))
    assert written == _paths(dataclasses.asdict(Settings()))


def test_cluster_example_loads_and_selects_kafka():
    settings = load_settings(REPO / "conf" / "cluster.toml", env={})
    assert settings.ingest.source == "kafka"
    assert settings.ingest.kafka.max_offsets_per_batch == 500000
    assert settings.spark.conf == {"spark.sql.shuffle.partitions": "64"}


def test_file_then_env_then_flags(tmp_path: Path):
    conf = tmp_path / "c.toml"
    conf.write_text('warehouse = "/from/file"\n[ingest]\ninterval = "5s"\nmax_files_per_batch = 7\n')
    env = {"RECO_INGEST_INTERVAL": "9s", "RECO_INGEST_KAFKA_MAX_OFFSETS_PER_BATCH": "12"}
    settings = load_settings(conf, env=env, overrides={"warehouse": "/from/flag", "ingest.landing": None})
    assert settings.warehouse == "/from/flag"
    assert settings.ingest.interval == 9.0
    assert settings.ingest.max_files_per_batch == 7
    assert settings.ingest.kafka.max_offsets_per_batch == 12
    assert settings.ingest.landing == "./landing"


def test_values_are_parsed_once_into_their_types(tmp_path: Path):
    conf = tmp_path / "c.toml"
    conf.write_text(
        '[ingest]\nmax_bytes_per_batch = "2MB"\nmax_future = "2h"\n'
        "[evaluate]\nk = [5, 10]\n"
        '[rank]\nhalf_lives = ["7d", 3600, "all"]\n'
    )
    env = {
        "RECO_EVALUATE_ALS_REGS": "0.5, 1",
        "RECO_EVALUATE_POPULAR_WINDOW": "1w",
        "RECO_RANK_WEIGHTS": "0,inf",
    }
    settings = load_settings(conf, env=env, overrides={"rank.age_weights": "0,0.25"})
    assert settings.ingest.max_bytes_per_batch == 2 << 20 and isinstance(
        settings.ingest.max_bytes_per_batch, Size
    )
    assert settings.ingest.max_future == 7200.0 and str(settings.ingest.max_future) == "2h"
    assert settings.evaluate.k == (5, 10)
    assert settings.rank.half_lives == (7 * 86400.0, 3600.0, math.inf)
    assert str(settings.rank.half_lives[2]) == "all"
    assert settings.rank.weights == (0.0, math.inf)
    assert settings.evaluate.als_regs == (0.5, 1.0)
    assert settings.rank.age_weights == (0.0, 0.25)
    assert settings.evaluate.popular_window == 604800.0
    assert Settings().ingest.interval == 1.0 and Settings().data.replay_flush == Duration("1s")


def test_each_model_kind_has_its_own_settings_and_training():
    settings = load_settings(
        env={"RECO_MODEL_KIND": "mf", "RECO_MODEL_MF_DIM": "32", "RECO_TRAIN_MF_EPOCHS": "4"}
    )
    assert settings.model.of().dim == 32 and settings.model.of("sasrec").dim == 64
    assert settings.train.of("mf").epochs == 4 and settings.train.of("sasrec").epochs == 18
    assert (settings.model.mf.loss, settings.model.mf.history) == ("softmax", 10)


def test_old_flat_model_metadata_still_loads():
    """Versions published before per-kind sections recorded one flat [model] table."""
    flat = {"kind": "mf", "dim": 32, "blocks": 2, "heads": 2, "max_len": 50, "dropout": 0.2,
            "sampled_negatives": 0, "mf_negatives": 4, "mf_loss": "bce", "mf_history": 3}  # fmt: skip
    mf = recorded_model_settings("mf", flat)
    assert (mf.dim, mf.loss, mf.negatives, mf.history) == (32, "bce", 4, 3)
    assert recorded_model_settings("mf", {"kind": "mf", "dim": 16}).history == 0  # before mf_history
    assert recorded_model_settings("sasrec", flat).heads == 2
    assert recorded_model_settings("sasrec", {"kind": "sasrec", "sasrec": {"dim": 8, "heads": 4}}).dim == 8


def test_reco_config_env_names_the_file(tmp_path: Path):
    conf = tmp_path / "c.toml"
    conf.write_text('warehouse = "/w"\n')
    assert load_settings(env={"RECO_CONFIG": str(conf)}).warehouse == "/w"
    assert load_settings(env={"RECO_CONFIG": str(conf), "RECO_WAREHOUSE": "/e"}).warehouse == "/e"


def test_every_setting_has_its_variable_and_others_are_refused():
    names = set(env_names(Settings()))
    assert {
        "RECO_WAREHOUSE",
        "RECO_TRAIN_MF_EPOCHS",
        "RECO_MODEL_SASREC_HEADS",
        "RECO_INGEST_KAFKA_OPTIONS",
    } <= names
    assert load_settings(env={"RECO_TRAIN_SASREC_EPOCHS": "3", "PATH": "/bin"}).train.sasrec.epochs == 3
    with pytest.raises(RecoError, match="RECO_TRAIN_EPOCH names no setting"):
        load_settings(env={"RECO_TRAIN_EPOCH": "3"})


def test_a_spark_job_leaves_the_variables_of_the_rest_of_reco_alone():
    env = {"RECO_TRAIN_SASREC_EPOCHS": "3", "RECO_INGEST_INTERVAL": "2s"}
    assert load_job_settings(env=env).ingest.interval == 2.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[ingest]\nlandin = 'x'\n", "unknown setting 'ingest.landin'"),
        ("[evaluate]\nloo_prior_weights = [0.1]\n", "unknown setting 'evaluate.loo_prior_weights'"),
        ("[ingest]\nmax_files_per_batch = 'many'\n", "must be int"),
        ("ingest = 3\n", "must be a table"),
        ("[ingest\n", "not valid TOML"),
        ("[ingest]\nsource = 'kafak'\n", r"'ingest.source' .* must be one of files, kafka, got 'kafak'"),
        ("[model]\nkind = 'als'\n", "must be one of sasrec, mf"),
        ("[ingest]\nlanding = ['a', 'b']\n", "'ingest.landing' .* must be str, got \\['a', 'b'\\]"),
        ("[ingest]\nlanding = { a = 1 }\n", "'ingest.landing' .* must be str"),
        ("[ingest]\nmax_bytes_per_batch = 'lots'\n", "must be a size"),
        ("[ingest]\ninterval = 'soon'\n", "must be a duration"),
        ("[evaluate]\nk = [10, 'x']\n", "'evaluate.k' .* must be a comma-separated list of int"),
        ("[evaluate]\nk = []\n", "evaluate.k must list positive cut-offs"),
        (
            "[model.sasrec]\ndim = 30\nheads = 4\n",
            r"model.sasrec.dim \(30\) must be a multiple of model.sasrec.heads",
        ),
        ("[train.mf]\nepochs = 0\n", "train.mf.epochs must be at least 1"),
        ("[train]\nseed = -1\n", "train.seed must be between 0 and 4294967295, got -1"),
        ("[simulate]\nseed = 4294967296\n", "simulate.seed must be between 0 and 4294967295"),
        ("[simulate]\nusers = 0\n", "simulate.users must be at least 1"),
        ("[spark]\nconf = { x = [1] }\n", "'spark.conf.x' .* must be str"),
    ],
)
def test_bad_config_files_are_explained(tmp_path: Path, text: str, message: str):
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    with pytest.raises(RecoError, match=message):
        load_settings(conf, env={})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECO_INGEST_MAX_LINE_BYTES": "big"}, "RECO_INGEST_MAX_LINE_BYTES"),
        ({"RECO_TRAIN_MF_LR": "nan"}, r"'train\.mf\.lr' from RECO_TRAIN_MF_LR must be a finite number"),
        ({"RECO_TRAIN_FINETUNE_LR": "inf"}, "must be a finite number"),
        ({"RECO_WAREHOUSE": ""}, "'warehouse' is empty"),
        ({"RECO_MODEL_MF_LOSS": "hinge"}, "must be one of softmax, bce, got 'hinge'"),
        ({"RECO_INGEST_WRITER": "parquet"}, "must be one of auto, delta-rs, spark-delta, got 'parquet'"),
        ({"RECO_MAINTAIN_RETENTION": "90m"}, r"maintain\.retention must be whole hours .*, got 90m"),
    ],
)
def test_bad_env_values_are_explained(env: dict[str, str], message: str):
    with pytest.raises(RecoError, match=message):
        load_settings(env=env)


def test_unknown_flag_path_is_explained():
    with pytest.raises(RecoError, match=r"unknown setting 'train\.epochs'"):
        load_settings(env={}, overrides={"train.epochs": 3})


def test_missing_config_file_and_a_directory(tmp_path: Path):
    with pytest.raises(RecoError, match="config file not found"):
        load_settings(Path("/nonexistent.toml"), env={})
    with pytest.raises(RecoError, match="is a directory"):
        load_settings(tmp_path, env={})


@pytest.mark.parametrize(
    ("setup", "args", "env", "message"),
    [
        ("latin1", ("--config", "{c}"), {}, "is not UTF-8 text"),
        ("dir", ("--config", "{tmp}"), {}, "is a directory"),
        ("list", ("--config", "{c}"), {}, "'ingest.landing' from {c} must be str"),
        (None, (), {"RECO_WAREHOUSE": ""}, "'warehouse' is empty"),
        ("file", (), {"RECO_WAREHOUSE": "{c}"}, "is a file, not a folder"),
        (None, (), {"RECO_TRAIN_SASREC_LR": "nan"}, "must be a finite number, got 'nan'"),
        (None, (), {"RECO_TRAIN_FINETUNE_LR": "-inf"}, "must be a finite number"),
        (None, (), {"RECO_TRAIN_EPOCH": "3"}, "RECO_TRAIN_EPOCH names no setting"),
        ("dimheads", ("--config", "{c}"), {}, "must be a multiple of model.sasrec.heads"),
    ],
)
def test_config_mistakes_are_one_line_and_exit_2_through_the_cli(tmp_path, setup, args, env, message):
    conf = tmp_path / "c.toml"
    contents = {
        "latin1": "[ingest]\nlanding = 'caf\xe9'\n".encode("latin-1"),
        "list": b"[ingest]\nlanding = ['a']\n",
        "file": b"",
        "dimheads": b"[model.sasrec]\ndim = 10\nheads = 3\n",
    }
    if setup in contents:
        conf.write_bytes(contents[setup])
    fill = {"c": str(conf), "tmp": str(tmp_path)}
    warehouse = () if "RECO_WAREHOUSE" in env else ("-w", str(tmp_path))
    done = run_reco(
        "status", *warehouse, *(a.format(**fill) for a in args),
        env={k: v.format(**fill) for k, v in env.items()}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message.format(**fill) in done.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1s", 1),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("3", 3),
        (1.5, 1.5),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1s", math.inf, math.nan, -2])
def test_parse_duration_rejects_nonsense(text):
    with pytest.raises(RecoError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("512B", 512), ("2k", 2048), ("3 MB", 3 << 20), ("1GiB", 1 << 30), (7, 7)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(("value", "text"), [(Duration("90m"), "90m"), (Duration(0.25), "250ms"),
                                             (Duration("1.5s"), "1500ms"), (Size("2048KB"), "2MB"),
                                             (Size(1000), "1000")])  # fmt: skip
def test_units_show_as_written(value, text):
    assert str(value) == text
