"""The padded-row helpers every history, seen set and mask goes through."""

from __future__ import annotations

import numpy as np
import torch

from recocli.models.padded import PAD, fill_padded_, latest_padded, padded_sets


def test_latest_padded_keeps_the_newest_left_padded():
    groups = np.array([0, 0, 0, 2])
    values = np.array([10, 11, 12, 20])
    assert latest_padded(groups, values, 3, 2).tolist() == [[11, 12], [PAD, PAD], [PAD, 20]]
    assert latest_padded(groups, values.astype(np.float32), 3, 2, fill=0).dtype == np.float32


def test_padded_sets_right_pad_in_the_order_given():
    out = padded_sets(np.array([1, 0, 1]), np.array([5, 6, 7]), 3, min_width=1)
    assert out.tolist() == [[6, PAD], [5, 7], [PAD, PAD]]
    assert padded_sets(np.zeros(0, np.int64), np.zeros(0, np.int64), 2, min_width=1).tolist() == [
        [PAD],
        [PAD],
    ]


def test_fill_padded_masks_in_place_but_keeps_the_kept():
    scores = torch.arange(8, dtype=torch.float32).reshape(2, 4)
    out = fill_padded_(scores, torch.tensor([[0, 2], [3, PAD]]), float("-inf"), keep=torch.tensor([[2], [9]]))
    assert out is scores
    assert scores.tolist() == [[float("-inf"), 1, 2, 3], [4, 5, 6, float("-inf")]]
