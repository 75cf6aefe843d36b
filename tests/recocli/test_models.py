"""The two models behind one interface: scores over the catalog, growth in place, histories."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lakehouse.errors import RecoError
from recocli.config import MFSettings, SASRecSettings
from recocli.metrics import hit_and_ndcg
from recocli.models import build_model
from recocli.models.padded import PAD, rank_from_end

CFG = {
    "sasrec": SASRecSettings(dim=16, blocks=1, heads=2, max_len=6, dropout=0.1),
    "mf": MFSettings(dim=16, max_len=6, loss="bce", history=0),
}


@pytest.fixture(params=["mf", "sasrec"])
def kind(request):
    return request.param


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_build_score_shapes_and_unknown_kind(kind):
    torch.manual_seed(0)
    model = build_model(kind, 5, 9, CFG[kind])
    assert (model.kind, model.n_users, model.n_items) == (kind, 5, 9)
    histories = torch.tensor([[PAD, PAD, 1, 2, 3, 4], [PAD] * 5 + [0]])
    scores = model.score(user_rows=torch.tensor([0, 4]), histories=histories)
    assert scores.shape == (2, 9) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    with pytest.raises(RecoError, match=r"model\.kind"):
        build_model("knn", 1, 1, CFG["mf"])


def test_mf_needs_users_and_sasrec_histories():
    with pytest.raises(ValueError, match="user_rows"):
        build_model("mf", 2, 3, CFG["mf"]).score(histories=torch.zeros(1, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="histories"):
        build_model("sasrec", 2, 3, CFG["sasrec"]).score()


def test_grow_keeps_every_old_row_bit_for_bit(kind):
    torch.manual_seed(1)
    model = build_model(kind, 4, 7, CFG[kind])
    model.remember(np.array([0, 1]), np.array([3, 5]), np.array([10, 20]), np.array([1.0, 2.0], np.float32))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # trained-looking values, not just the init
    before = state(model)
    scores_before = model.score(user_rows=torch.arange(4), histories=model.history(torch.arange(4)))
    model.grow(6, 11)
    after = model.state_dict()
    assert (model.n_users, model.n_items) == (6, 11)
    for name, old in before.items():
        new = after[name]
        if new.shape == old.shape:
            assert torch.equal(new, old), name
        else:
            assert torch.equal(new[: old.shape[0]], old), name  # tables grow at the end only
    assert (model.hist_items[4:] == PAD).all()
    # Old users' scores over old items do not move (up to the matmul's blocking of a wider table).
    scores_after = model.score(user_rows=torch.arange(4), histories=model.history(torch.arange(4)))
    assert torch.allclose(scores_after[:, :7], scores_before, rtol=0, atol=1e-5)
    model.grow(2, 3)  # never shrinks
    assert (model.n_users, model.n_items) == (6, 11)


def test_sasrec_padding_and_causality():
    torch.manual_seed(2)
    model = build_model("sasrec", 1, 20, CFG["sasrec"])
    short = torch.tensor([[4, 7, 9]])
    padded = torch.tensor([[PAD, PAD, PAD, 4, 7, 9]])
    assert torch.allclose(model.score(histories=short), model.score(histories=padded), atol=1e-5)
    # The newest item matters; an older one too (attention), padding does not.
    other_last = model.score(histories=torch.tensor([[PAD, PAD, PAD, 4, 7, 10]]))
    other_first = model.score(histories=torch.tensor([[PAD, PAD, PAD, 5, 7, 9]]))
    assert not torch.allclose(model.score(histories=padded), other_last)
    assert not torch.allclose(model.score(histories=padded), other_first)
    # Longer than max_len: only the latest max_len items count.
    long = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    assert torch.allclose(model.score(histories=long), model.score(histories=long[:, -6:]), atol=1e-5)
    # Scoring by user rows reads the remembered history.
    model.remember(np.array([0, 0, 0]), np.array([4, 7, 9]), np.array([1, 2, 3]), np.ones(3, np.float32))
    assert torch.allclose(model.score(user_rows=torch.tensor([0])), model.score(histories=padded), atol=1e-5)


def test_score_is_deterministic_and_leaves_training_mode_alone(kind):
    model = build_model(kind, 3, 5, CFG[kind])
    model.train()
    histories = torch.tensor([[PAD, PAD, PAD, 0, 1, 2]] * 3)
    a = model.score(user_rows=torch.arange(3), histories=histories)
    b = model.score(user_rows=torch.arange(3), histories=histories)
    assert torch.equal(a, b)  # no dropout while scoring
    assert model.training


def test_remember_keeps_the_latest_in_time_order():
    model = build_model("mf", 2, 30, CFG["mf"])
    users = np.array([0] * 8 + [1])
    items = np.array([10, 11, 12, 13, 14, 15, 16, 17, 5])
    ts = np.array([8, 1, 2, 3, 4, 5, 6, 7, 1])  # item 10 is the newest for user 0
    model.remember(users, items, ts, np.ones(9, np.float32))
    assert model.hist_items[0].tolist() == [12, 13, 14, 15, 16, 17, 10][-6:]
    assert model.hist_items[1].tolist() == [PAD] * 5 + [5]
    # More later: merged in time order, ties keep what was remembered first.
    model.remember(np.array([1, 1]), np.array([6, 7]), np.array([1, 0]), np.ones(2, np.float32))
    assert model.hist_items[1].tolist() == [PAD, PAD, PAD, 7, 5, 6]
    assert model.hist_ts[1, -3:].tolist() == [0, 1, 1]


def test_rank_from_end_and_hits():
    assert rank_from_end(np.array([3, 3, 3, 5, 7, 7])).tolist() == [2, 1, 0, 0, 1, 0]
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.5], [0.1, 0.2, 0.3, 0.4]])
    hit, ndcg = hit_and_ndcg(scores, torch.tensor([1, 0]), None, k=2)
    assert hit.tolist() == [1.0, 0.0]
    assert ndcg[0].item() == pytest.approx(1 / np.log2(3))
    # Masking seen items lifts the targets: item 1 to the top, item 0 to second place.
    hit, ndcg = hit_and_ndcg(scores, torch.tensor([1, 0]), torch.tensor([[0, PAD], [3, 2]]), k=2)
    assert hit.tolist() == [1.0, 1.0] and ndcg[0].item() == 1.0
    # A seen target is never masked out.
    hit, _ = hit_and_ndcg(scores[:1], torch.tensor([0]), torch.tensor([[0, 1]]), k=1)
    assert hit.tolist() == [1.0]


def test_mf_history_term_reads_the_given_histories_and_grows():
    torch.manual_seed(3)
    cfg = MFSettings(dim=8, max_len=6, loss="bce", history=2)
    model = build_model("mf", 2, 5, cfg)
    user = torch.tensor([0])
    # p_u + mean(context of the latest 2 items), PAD ignored: [.., 1, 3] and [PAD, 4].
    for history, latest in (([PAD, PAD, PAD, 0, 1, 3], [1, 3]), ([PAD] * 5 + [4], [4])):
        vector = model.user_vec[0] + model.context_vec[latest].mean(0)
        expected = vector @ model.item_vec.T + model.item_bias + model.user_bias[0] + model.bias
        got = model.score(user_rows=user, histories=torch.tensor([history]))
        assert torch.allclose(got[0], expected, atol=1e-6)
    # Without histories it reads the remembered ones; with none remembered, p_u alone.
    plain = model.user_vec[0] @ model.item_vec.T + model.item_bias + model.user_bias[0] + model.bias
    assert torch.allclose(model.score(user_rows=user)[0], plain, atol=1e-6)
    old = model.context_vec.detach().clone()
    model.grow(3, 7)
    assert model.context_vec.shape == (7, 8) and torch.equal(model.context_vec[:5], old)
