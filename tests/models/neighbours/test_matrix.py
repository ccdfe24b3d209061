"""The row cap and the triples → sparse matrix conversion."""

from __future__ import annotations

import numpy as np

from recspark.models.neighbours.matrix import block_width, cap_rows, from_triples


def test_cap_rows_keeps_at_most_n_per_row_seeded():
    rows = np.array([0, 0, 0, 0, 1, 2, 2, 2])
    keep = cap_rows(rows, 2, seed=3)
    assert np.bincount(rows[keep]).tolist() == [2, 1, 2]
    assert np.array_equal(keep, cap_rows(rows, 2, seed=3))
    assert cap_rows(rows, 0, seed=3).all()


def test_from_triples_indexes_ids_and_counts_the_capped():
    m = from_triples(np.array([7, 7, 7, 9]), np.array([30, 10, 20, 10]), np.array([1.0, 2.0, 3.0, 4.0]),
                     max_row_entries=2, seed=1)
    assert m.row_ids.tolist() == [7, 9] and m.col_ids.tolist() == [10, 20, 30]
    assert m.capped == 1 and m.matrix.nnz == 3
    dense = m.matrix.toarray()
    assert dense[1].tolist() == [4.0, 0.0, 0.0]


def test_block_width_bounds_the_cells():
    assert block_width(1000, 10_000) == 10
    assert block_width(5, 10_000) == 5
    assert block_width(100_000, 1000) == 1
