"""Vocabularies: raw id ↔ row, growing without ever renumbering, saved without pickle."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.errors import RecoError
from recocli.models.vocab import Vocabulary


def test_rows_ids_and_unknown():
    vocab = Vocabulary(["a", "b"])
    assert len(vocab) == 2
    assert vocab.rows(["b", "zz", "a", "b"]).tolist() == [1, -1, 0, 1]
    assert vocab.rows(pa.chunked_array([["a"], ["b"]])).tolist() == [0, 1]
    assert vocab.rows(np.array(["a", "c"], dtype=object)).tolist() == [0, -1]
    assert vocab.ids([1, 0]) == ["b", "a"]
    assert vocab.rows([]).tolist() == []


def test_add_admits_in_order_of_first_appearance_and_keeps_old_rows():
    vocab = Vocabulary(["a"])
    assert vocab.add(["c", "a", "b", "c"]).tolist() == [1, 0, 2, 1]
    assert vocab.ids(range(3)) == ["a", "c", "b"]


def test_min_count_admission_counts_across_batches():
    vocab = Vocabulary()
    assert vocab.observe(["x", "y", "x"], min_count=2) == 1  # x seen twice
    assert vocab.rows(["x", "y"]).tolist() == [0, -1]
    assert vocab.pending() == {"y": 1}
    assert vocab.observe(["z", "y"], min_count=2) == 1  # y reaches 2 in the second batch
    assert vocab.rows(["x", "y", "z"]).tolist() == [0, 1, -1]
    assert vocab.count("x") == 2 and vocab.counts().tolist() == [2, 2]


def test_arrow_round_trip_keeps_rows_counts_and_pending():
    vocab = Vocabulary()
    vocab.observe(["a", "b", "a", "c", "a"], min_count=2)
    vocab.observe(["b"], min_count=2)
    loaded = Vocabulary.from_arrow(vocab.to_arrow())
    assert loaded == vocab
    assert loaded.ids(range(len(loaded))) == ["a", "b"]
    assert loaded.pending() == {"c": 1}
    assert loaded.counts().tolist() == [3, 2]
    assert loaded.rows(["b", "c", "a"]).tolist() == [1, -1, 0]
    assert loaded.id_array().to_pylist() == ["a", "b"]
    loaded.add(["d"])
    assert loaded.rows(["d"]).tolist() == [2]


def test_a_damaged_table_is_a_clear_error():
    table = Vocabulary(["a", "b"]).to_arrow()
    with pytest.raises(RecoError, match="rows are not 0"):
        Vocabulary.from_arrow(table.set_column(table.schema.get_field_index("row"), "row", pa.array([1, 0])))
    with pytest.raises(RecoError, match="vocabulary has schema"):
        Vocabulary.from_arrow(table.drop_columns(["count"]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from("abcdefghij"), max_size=12), max_size=8),
    st.integers(min_value=1, max_value=3),
)
def test_growth_never_moves_an_admitted_id(batches, min_count):
    vocab = Vocabulary()
    rows: dict[str, int] = {}
    for batch in batches:
        vocab.observe(batch, min_count)
        for key, row in rows.items():
            assert vocab.rows([key])[0] == row
        rows = {key: int(vocab.rows([key])[0]) for key in set(rows) | set(batch) if key in vocab}
        assert sorted(rows.values()) == list(range(len(vocab)))
