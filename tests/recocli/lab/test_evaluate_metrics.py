"""Metric functions of `reco evaluate` against cases computed by hand, and the validation metric of
training (early stopping) agreeing with them, ties included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recocli.lab.evaluate.metrics import coverage, evaluate_scores, mae, mean, padded, rmse
from recocli.metrics import hit_and_ndcg, mask_scores, positions
from recocli.models.padded import PAD

DESC = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1]])


def one(scores, relevant, ks=(1, 3, 10), exclude=None, n_relevant=None):
    per_user, _ = evaluate_scores(scores, torch.tensor(relevant), exclude, ks, n_relevant)
    return {name: float(values[0]) for name, values in per_user.items()}


@pytest.mark.parametrize("r", range(1, 13))
def test_one_relevant_item_at_rank_r(r):
    m = one(DESC, [[r - 1]])
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(r + 1) if r <= 10 else 0.0)
    assert m["ndcg@3"] == pytest.approx(1 / math.log2(r + 1) if r <= 3 else 0.0)
    assert m["hr@10"] == (1.0 if r <= 10 else 0.0)
    assert m["hr@1"] == (1.0 if r == 1 else 0.0)
    assert m["recall@10"] == m["hr@10"]
    assert m["mrr"] == pytest.approx(1 / r)


def test_ties_are_broken_at_random_in_expectation():
    # The target ties with 3 other items at the top: it is at position 0..3 with equal chance.
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])
    m = one(scores, [[2]], ks=(1, 2, 10))
    assert m["hr@1"] == pytest.approx(1 / 4)
    assert m["hr@2"] == pytest.approx(2 / 4)
    assert m["hr@10"] == pytest.approx(1.0)
    assert m["ndcg@10"] == pytest.approx(np.mean([1 / math.log2(p + 2) for p in range(4)]))
    assert m["mrr"] == pytest.approx(np.mean([1 / (p + 1) for p in range(4)]))


def test_a_constant_scorer_scores_chance_not_one_or_zero():
    n = 20
    m = one(torch.zeros(1, n), [[7]], ks=(5,))
    assert m["hr@5"] == pytest.approx(5 / n)
    assert m["ndcg@5"] == pytest.approx(sum(1 / math.log2(p + 2) for p in range(5)) / n)
    assert m["mrr"] == pytest.approx(sum(1 / (p + 1) for p in range(n)) / n)


def test_hit_rate_with_two_relevant_items_in_a_tie_block_straddling_k():
    # 10 tied items, 2 relevant, 5 slots: P(none chosen) = C(8,5)/C(10,5).
    m = one(torch.zeros(1, 10), [[3, 4]], ks=(5,))
    assert m["hr@5"] == pytest.approx(1 - math.comb(8, 5) / math.comb(10, 5))
    assert m["recall@5"] == pytest.approx(0.5)  # E[hits] = 2·5/10, over min(2, 5)


def test_several_relevant_items_ndcg_and_recall():
    # Relevant at positions 0 and 2 of a strict order, 3 relevant in all (one unknown to the catalog).
    m = one(DESC, [[0, 2, PAD]], ks=(2, 10), n_relevant=np.array([3]))
    idcg10 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4)) / idcg10)
    assert m["ndcg@2"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["recall@2"] == pytest.approx(1 / 2)
    assert m["hr@2"] == 1.0


def test_users_without_a_test_item_are_left_out_of_the_mean():
    relevant = torch.tensor([[0], [PAD]])
    per_user, _ = evaluate_scores(DESC.repeat(2, 1), relevant, None, (10,), n_relevant=np.array([1, 0]))
    assert per_user["ndcg@10"][0] == 1.0 and math.isnan(per_user["ndcg@10"][1])
    assert mean(per_user["ndcg@10"]) == 1.0
    assert mean(np.array([np.nan])) is None


def test_a_relevant_item_without_a_score_is_a_miss():
    scores = DESC.clone()
    scores[0, 0] = float("-inf")  # unknown to this model
    assert one(scores, [[0]])["hr@10"] == 0.0
    assert one(DESC, [[99]])["ndcg@10"] == 0.0  # outside the catalog


def test_seen_items_are_no_candidates_but_the_relevant_one_stays():
    exclude = torch.tensor([[0, 1, 2, PAD]])
    m = one(DESC, [[3]], exclude=exclude)
    assert m["hr@1"] == 1.0  # 3 items above it were seen
    masked = mask_scores(DESC, torch.tensor([[0, 3]]), keep=torch.tensor([[3]]))
    assert masked[0, 0] == float("-inf") and masked[0, 3] == DESC[0, 3]
    greater, ties = positions(masked, torch.tensor([[3]]))
    assert greater.item() == 2 and ties.item() == 0


def test_top_lists_and_coverage():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    _, top = evaluate_scores(scores, torch.tensor([[0], [3]]), torch.tensor([[1], [2]]), (2,))
    assert top.tolist() == [[0, 2], [3, 1]]
    assert coverage(top, 4) == 1.0
    assert coverage(np.array([[0, PAD], [0, 1]]), 4) == 0.5


def test_rmse_and_mae():
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(math.sqrt((1 + 4) / 2))
    assert mae(np.array([1.0, 3.0]), np.array([2.0, 5.0])) == pytest.approx(1.5)
    assert math.isnan(rmse(np.array([]), np.array([])))


def test_padded():
    assert padded([[1, 2], [], [3]]).tolist() == [[1, 2], [PAD, PAD], [3, PAD]]


@st.composite
def tied_batches(draw):
    """Scores from a few levels (ties everywhere), one target per user and some seen items."""
    n_users, n_items = draw(st.integers(1, 6)), draw(st.integers(2, 30))
    levels = draw(st.integers(1, 4))
    scores = draw(
        st.lists(st.integers(0, levels - 1), min_size=n_users * n_items, max_size=n_users * n_items)
    )
    targets = draw(st.lists(st.integers(0, n_items - 1), min_size=n_users, max_size=n_users))
    seen = draw(
        st.lists(
            st.lists(st.integers(PAD, n_items - 1), min_size=3, max_size=3),
            min_size=n_users,
            max_size=n_users,
        )
    )
    return (
        torch.tensor(scores, dtype=torch.float32).reshape(n_users, n_items),
        torch.tensor(targets),
        torch.tensor(seen),
    )


@settings(max_examples=200, deadline=None)
@given(tied_batches(), st.sampled_from([1, 3, 10]))
def test_early_stopping_and_reco_evaluate_agree_per_user(batch, k):
    scores, targets, seen = batch
    hit, ndcg = hit_and_ndcg(scores, targets, seen, k)
    per_user, _ = evaluate_scores(scores, targets[:, None], seen, (k,))
    assert hit.numpy() == pytest.approx(per_user[f"hr@{k}"])
    assert ndcg.numpy() == pytest.approx(per_user[f"ndcg@{k}"])


def test_the_validation_metric_counts_ties_in_expectation():
    # Untrained, every item scores the same: chance (10 of 40), not 1.0 as when ties counted as wins.
    hit, ndcg = hit_and_ndcg(torch.zeros(2, 40), torch.tensor([3, 39]), None, k=10)
    assert hit.tolist() == pytest.approx([0.25, 0.25])
    assert ndcg.tolist() == pytest.approx([sum(1 / math.log2(p + 2) for p in range(10)) / 40] * 2)
    # The target ties with one item above the seen ones: first or second place, equally likely.
    hit, ndcg = hit_and_ndcg(
        torch.tensor([[5.0, 1.0, 1.0, 0.0]]), torch.tensor([1]), torch.tensor([[0]]), k=1
    )
    assert hit.item() == pytest.approx(0.5) and ndcg.item() == pytest.approx(0.5)
