"""Real Lightning training on generated data with a planted preference structure.

Random HR@10 is 10 / 500 = 0.02 here; the models must do far better, learn a new item from the
one batch that introduced it, and — fine-tuned batch by batch — follow a planted preference shift
that a frozen copy cannot.
"""

from __future__ import annotations

import copy
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
import torch
from planted import START, BlockWorld, events, interactions, next_item_hr10

from recocli.config import EventWeights, KindTraining, MFSettings, SASRecSettings, Settings
from recocli.data.synthetic import World
from recocli.models.vocab import Vocabs
from recocli.training.datamodule import (
    later_rows,
    preceding_positives,
    sasrec_examples,
    sequence_windows,
    sort_by_user_time,
)
from recocli.training.fit import (
    _new_examples,
    build_histories,
    copy_model,
    fine_tune,
    fit_full,
    prequential_hits,
    remembered,
    replay_sample,
)
from recocli.training.interactions import SCHEMA, Encoded, encode, from_bronze, make_interactions

RANDOM_HR = 10 / World().items


def small_settings() -> Settings:
    """Small models, validated with early stopping (what these tests read), both kinds alike."""
    settings = Settings()
    settings.model.sasrec = SASRecSettings(dim=32, max_len=20, blocks=1)
    settings.model.mf = MFSettings(dim=32, max_len=20, loss="bce", history=0)
    settings.train.sasrec = KindTraining(lr=0.001, weight_decay=0.0, epochs=8, val_users=2000)
    settings.train.mf = KindTraining(lr=0.001, weight_decay=0.0, epochs=8, val_users=2000)
    settings.train.patience, settings.train.min_epoch_steps = 2, 10
    return settings


@pytest.fixture(scope="module", params=["mf", "sasrec"])
def fitted(request):
    """One full fit per kind on 8,000 planted events, shared by the tests (copied before changes)."""
    settings = small_settings()
    model, vocabs, metrics = fit_full(request.param, interactions(8000, seed=1), settings, progress=False)
    return settings, model, vocabs, metrics


def fresh(fitted):
    settings, model, vocabs, _ = fitted
    return settings, copy_model(model), copy.deepcopy(vocabs)


# ---- interactions ----


def test_bronze_rows_become_weighted_positives_and_negatives():
    ts = pa.array([5, 1, 2, 3, 4, 6, 7], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    events_table = pa.table(
        {
            "user_id": ["u"] * 7,
            "item_id": ["a", "b", "c", "d", "e", "f", "g"],
            "event_type": ["purchase", "VIEW", "rating", "rating", "dislike", "teleport", "rating"],
            "value": [None, None, 5.0, 2.0, None, None, None],
            "ts": ts,
        }
    )
    feedback = pa.table(
        {
            "user_id": ["u", "u", "u"],
            "item_id": ["h", "i", "j"],
            "action": ["impression", "dismiss", "click"],
            "value": pa.array([None, None, None], pa.float64()),
            "ts": pa.array([8, 9, 0], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )
    out = from_bronze(events_table, feedback, EventWeights(), rating_threshold=3.5)
    assert out.schema == SCHEMA
    rows = [(r["item_id"], r["weight"], r["label"]) for r in out.to_pylist()]
    # Time order; impressions, unknown kinds and value-less ratings dropped; dislike, dismiss and
    # the low rating are negatives.
    assert rows == [
        ("j", 1.0, 1),
        ("b", 0.5, 1),
        ("c", 1.0, 1),
        ("d", 1.0, 0),
        ("e", 1.0, 0),
        ("a", 3.0, 1),
        ("i", 0.5, 0),
    ]


def test_sequence_windows_cut_from_the_newest_back():
    users = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    items = np.array([1, 2, 3, 4, 5, 7, 8, 9])
    inputs, targets, weights = sequence_windows(users, items, np.ones(8), np.ones(8, dtype=bool), max_len=3)
    # user 0: pairs 1→2, 2→3, 3→4, 4→5 → windows [1] and [2 3 4]; user 1: 7→8; user 2: nothing.
    assert inputs.tolist() == [[-1, -1, 1], [2, 3, 4], [-1, -1, 7]]
    assert targets.tolist() == [[-1, -1, 2], [3, 4, 5], [-1, -1, 8]]
    assert weights.tolist() == [[0, 0, 1], [1, 1, 1], [0, 0, 1]]
    # Only flagged targets carry weight; windows with none are dropped.
    flags = np.array([0, 0, 0, 0, 1, 0, 0, 0], dtype=bool)
    inputs, _, weights = sequence_windows(users, items, np.ones(8), flags, max_len=3)
    assert inputs.tolist() == [[2, 3, 4]] and weights.tolist() == [[0, 0, 1]]


def test_later_targets_are_a_later_visit_of_the_same_user():
    day = 86_400 * 10**6
    # user 0: a sitting of three at day 0, one item on day 3 and two on day 10; user 1: one sitting.
    users = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    ts = np.array([0, 1, 2, 3 * day, 10 * day, 10 * day + 1, 0, 1])
    later = later_rows(users, ts, day, np.random.default_rng(0))
    assert later[6] == later[7] == -1  # nothing a day after, on user 1's only sitting
    assert later[4] == later[5] == -1  # nor after user 0's last visit
    assert later[3] in (4, 5)  # day 3 → day 10
    for row in range(3):
        assert later[row] in (3, 4, 5)  # day 0 → day 3 or 10, never the same sitting
    draws = {int(later_rows(users, ts, day, np.random.default_rng(seed))[0]) for seed in range(40)}
    assert draws == {3, 4, 5}  # uniform over every later visit's rows

    encoded = Encoded(users, np.arange(8), ts, np.ones(8, np.float32), np.ones(8, np.int8))
    inputs, targets, _ = sasrec_examples(encoded, max_len=8, target_gap_s=86_400, seed=0)
    next_inputs, next_targets, _ = sasrec_examples(encoded, max_len=8)
    assert inputs.tolist() == next_inputs.tolist()  # the same inputs; only targets move
    assert next_targets[0, -5:].tolist() == [1, 2, 3, 4, 5]
    chosen = targets[0, -5:].tolist()
    assert all(item in (3, 4, 5) for item in chosen[:3])  # the sitting of day 0 learns days 3 and 10
    assert chosen[3] in (4, 5)
    assert chosen[4] == 5  # no later visit: the next item
    assert targets[1, -1].item() == 7
    # A fine-tune's context (remembered, not a target) learns the new visit's items from every position.
    new = np.array([0, 0, 0, 1, 1, 1, 1, 1], dtype=bool)
    assert sasrec_examples(encoded, 8, new)[2][0, -5:].tolist() == [0, 0, 1, 1, 1]
    assert sasrec_examples(encoded, 8, new, target_gap_s=86_400)[2][0, -5:].tolist() == [1, 1, 1, 1, 1]


# ---- learning ----


def test_both_models_learn_the_planted_preferences(fitted):
    _, model, vocabs, metrics = fitted
    assert metrics["val_hr10"] > 4 * RANDOM_HR
    test = interactions(1500, seed=2, start=START + timedelta(days=3))
    hr = next_item_hr10(model, vocabs, test)
    assert hr > 10 * RANDOM_HR, f"{model.kind} HR@10 {hr:.3f} vs random {RANDOM_HR:.3f}"
    # The remembered histories are each user's latest positives, as built from the interactions.
    histories = build_histories(interactions(8000, seed=1), vocabs, model.cfg.max_len)
    assert torch.equal(histories, model.hist_items)


def test_a_new_item_is_recommended_after_the_batch_that_introduced_it(fitted):
    settings, model, vocabs = fresh(fitted)
    batch = interactions(1000, seed=3, start=START + timedelta(days=2))
    fans = [f"u{u}" for u in range(0, 200, 10)]  # cluster 0
    span = batch["ts"].cast(pa.int64()).to_numpy()
    ts = np.linspace(span[0], span[-1], 8 * len(fans)).astype(np.int64)
    launch = make_interactions(fans * 8, ["brand-new"] * 8 * len(fans), pa.array(ts).cast(batch["ts"].type))
    batch = pa.concat_tables([batch, launch]).sort_by("ts")
    assert "brand-new" not in vocabs.items
    report = {}
    fine_tune(model, vocabs, batch, None, settings, report=report)
    assert report["new_items"] >= 1 and report["examples"] > 0
    row = vocabs.items.rows(["brand-new"])[0]
    scores = model.score(user_rows=torch.arange(model.n_users), histories=model.hist_items)
    rank = (scores > scores[:, row : row + 1]).sum(1)
    fan_rows = torch.from_numpy(vocabs.users.rows(fans))
    others = torch.from_numpy(vocabs.users.rows([f"u{u}" for u in range(200) if u % 10]))
    assert (rank[fan_rows] < 10).float().mean() >= 0.8  # in the fans' top 10
    assert rank[fan_rows].float().mean() < rank[others].float().mean()  # higher for them than for others


def test_incremental_updates_follow_a_preference_shift_a_frozen_model_misses(fitted):
    settings, model, vocabs = fresh(fitted)
    frozen = copy_model(model)
    day = START + timedelta(days=3)
    before = next_item_hr10(model, vocabs, interactions(1000, seed=9, start=day))
    shifted = BlockWorld()
    test = interactions(1000, shifted, seed=99, start=day + timedelta(days=20))
    for n in range(6):
        batch = interactions(1000, shifted, seed=10 + n, start=day + timedelta(days=2 * n + 1))
        fine_tune(model, vocabs, batch, None, settings)
        # The frozen model still sees every new event in its histories; only its weights stay.
        frozen.grow(len(vocabs.users), len(vocabs.items))
        positives = sort_by_user_time(encode(batch, vocabs).positives())
        frozen.remember(positives.users, positives.items, positives.ts, positives.weights)
    tuned_hr, frozen_hr = next_item_hr10(model, vocabs, test), next_item_hr10(frozen, vocabs, test)
    assert before > 10 * RANDOM_HR
    assert frozen_hr < 0.4 * before, (
        f"frozen {frozen_hr:.3f} should have lost the shift (before {before:.3f})"
    )
    assert tuned_hr > max(0.6 * before, 3 * frozen_hr), f"tuned {tuned_hr:.3f}, frozen {frozen_hr:.3f}"


def test_fine_tune_keeps_old_rows_exactly_when_nothing_is_learned(fitted):
    settings, model, vocabs = fresh(fitted)
    settings = copy.deepcopy(settings)
    settings.train.finetune_lr = 0.0
    before = {k: v.clone() for k, v in model.named_parameters()}
    old_users, old_items = len(vocabs.users), len(vocabs.items)
    ids_before = vocabs.items.ids(range(old_items))
    batch = make_interactions(["u1", "newcomer", "u2"], ["i0", "i1", "never-seen"])
    fine_tune(model, vocabs, batch, None, settings)
    assert (len(vocabs.users), len(vocabs.items)) == (old_users + 1, old_items + 1)
    assert vocabs.items.ids(range(old_items)) == ids_before
    for name, param in model.named_parameters():
        old = before[name]
        assert torch.equal(param[: old.shape[0]], old), name


def test_replay_sample_and_empty_replay(fitted):
    settings, model, vocabs = fresh(fitted)
    sample = replay_sample(model, vocabs, 300, seed=4)
    assert sample.schema == SCHEMA and sample.num_rows >= 300
    assert set(sample["label"].to_pylist()) == {1}
    report = {}
    fine_tune(model, vocabs, interactions(200, seed=5), SCHEMA.empty_table(), settings, report=report)
    assert report["replay_interactions"] == 0 and report["new_interactions"] == 200


def test_prequential_hits_is_the_share_of_new_positives_in_their_users_top_10(fitted):
    _, model, vocabs = fresh(fitted)
    new = encode(interactions(300, seed=21, start=START + timedelta(days=3)), vocabs)
    pos = new.positives()
    pos = pos.take(pos.users < model.n_users)
    users = np.unique(pos.users)
    top = torch.topk(model.score(torch.from_numpy(users)), 10, dim=1).indices.numpy()
    in_top = (top[np.searchsorted(users, pos.users)] == pos.items[:, None]).any(axis=1)
    assert 0.0 < in_top.mean() < 1.0
    assert prequential_hits(model, new, chunk=7) == round(float(in_top.mean()), 4)


def test_sampled_softmax_option_trains():
    settings = small_settings()
    settings.model.sasrec.sampled_negatives = 50
    settings.train.sasrec.epochs = 2
    _, _, metrics = fit_full("sasrec", interactions(3000, seed=6), settings, progress=False)
    assert np.isfinite(metrics["train_loss"]) and metrics["val_hr10"] > 2 * RANDOM_HR


def test_min_count_keeps_rare_ids_out_until_they_recur():
    settings = small_settings()
    settings.train.min_count = 2
    settings.train.mf.epochs = 1
    base = interactions(2000, seed=7)
    model, vocabs, _ = fit_full("mf", base, settings, progress=False)
    fine_tune(model, vocabs, make_interactions(["u1"], ["rare"]), None, settings)
    assert "rare" not in vocabs.items and vocabs.items.pending()["rare"] == 1
    fine_tune(model, vocabs, make_interactions(["u2"], ["rare"]), None, settings)
    assert "rare" in vocabs.items and model.n_items == len(vocabs.items)


def test_events_helper_is_in_time_order():
    table = events(50, seed=1)
    ts = table["ts"].cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()


def test_preceding_positives_are_the_users_latest_earlier_positives():
    # user 0: a(1) b(2) neg c(3) tie: d and e at ts 4; user 1 starts fresh.
    enc = encode(
        make_interactions(
            ["u0", "u1", "u0", "u0", "u0", "u0", "u0", "u1"],
            ["a", "x", "b", "n", "c", "d", "e", "y"],
            ts=[1, 1, 2, 3, 3, 4, 4, 2],
            label=[1, 1, 1, 0, 1, 1, 1, 1],
        ),
        Vocabs(),
        min_count=1,
    )
    histories = preceding_positives(enc, 2)
    name = {row: item for item, row in zip(["a", "x", "b", "n", "c", "d", "e", "y"], enc.items, strict=True)}
    got = [[name.get(int(r), "-") for r in row] for row in histories]
    assert got == [
        ["-", "-"], ["-", "-"], ["-", "a"], ["a", "b"], ["a", "b"], ["b", "c"], ["c", "d"], ["-", "x"]
    ]  # fmt: skip


def _pairs(users: int, pairs: int, items: int, seed: int) -> pa.Table:
    """Each user takes a random item x, then always successor[x]: only the last item tells the next."""
    rng = np.random.default_rng(seed)
    successor = rng.permutation(items)
    firsts = rng.integers(0, items, size=(users, pairs))
    chain = np.stack([firsts, successor[firsts]], axis=2).reshape(users, -1)  # [U, 2 * pairs]
    user_ids = np.repeat([f"u{u}" for u in range(users)], 2 * pairs)
    ts = np.tile(np.arange(2 * pairs), users)
    return make_interactions(user_ids, [f"i{i}" for i in chain.ravel()], ts=ts)


def test_mf_history_term_learns_what_the_last_item_says():
    """Classic mf cannot tell the next item of a user whose items are random pairs; with
    model.mf.history it reads the last item and learns the successor."""
    data = _pairs(users=300, pairs=8, items=60, seed=3)
    settings = small_settings()
    settings.model.mf.loss = "softmax"
    settings.train.mf.epochs, settings.train.patience, settings.train.mf.val_users = 6, 6, 200
    hr = {}
    for history in (0, 1):
        settings.model.mf.history = history
        model, vocabs, metrics = fit_full("mf", data, settings, progress=False)
        hr[history] = metrics["val_hr10"]
    assert hr[0] < 0.4 and hr[1] > 0.9, hr
    # A fine-tune reads each new row after the user's remembered positives.
    last = int(model.hist_items[0, -1])
    new = make_interactions(["u0"], ["i7"], ts=[10**6])
    batch = _new_examples(model, encode(new, vocabs), remembered(model, np.array([0])), 0.0, 0)
    assert len(batch) == 5 and batch[4].tolist() == [[last]]
    fine_tune(model, vocabs, new, None, settings)
    assert vocabs.items.ids(model.hist_items[0, -1:].numpy()) == ["i7"]
