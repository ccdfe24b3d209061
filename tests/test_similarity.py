"""Each similarity measure against a brute-force NumPy loop over column pairs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recspark.similarity import MEASURES, prepare, similarity, similarity_pairs, top_k, top_k_pairs

NAN = np.nan
# rows × columns; NaN = no entry. Column 3 shares no row with column 0; column 4 is
# constant; column 5 is column 1 shifted by +1 on the same rows.
DENSE = np.array(
    [
        [5.0, 3.0, NAN, NAN, 2.0, 4.0],
        [4.0, NAN, 1.0, NAN, 2.0, NAN],
        [NAN, 1.0, 5.0, 4.0, 2.0, 2.0],
        [1.0, 2.0, NAN, NAN, NAN, 3.0],
        [NAN, NAN, 2.0, 3.5, 2.0, NAN],
    ]
)


def _brute(measure: str, a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    both = ~np.isnan(a) & ~np.isnan(b)
    n = int(both.sum())
    if measure == "jaccard":
        union = (~np.isnan(a) | ~np.isnan(b)).sum()
        return (n / union if union else 0.0), n
    if n == 0:
        return 0.0, 0
    x, y = a[both], b[both]
    if measure == "cosine":
        den = np.sqrt((x**2).sum() * (y**2).sum())
        return (float(x @ y / den) if den > 0 else 0.0), n
    if measure == "pearson":
        xc, yc = x - x.mean(), y - y.mean()
        den = np.sqrt((xc**2).sum() * (yc**2).sum())
        return (float(xc @ yc / den) if den > 1e-12 else 0.0), n
    d = {
        "manhattan": np.abs(x - y).sum(),
        "euclidean": np.sqrt(((x - y) ** 2).sum()),
        "chebyshev": np.abs(x - y).max(),
    }[measure]
    return 1.0 / (1.0 + d), n


def _sparse(dense: np.ndarray) -> sp.csr_matrix:
    rows, cols = np.nonzero(~np.isnan(dense))
    return sp.csr_matrix((dense[rows, cols], (rows, cols)), shape=dense.shape)


@pytest.mark.parametrize("measure", MEASURES)
def test_every_measure_matches_brute_force(measure):
    x = _sparse(DENSE)
    query_cols = np.array([0, 2, 4])
    sim, n = similarity(measure, x[:, query_cols], x, max_triples=3)  # several chunks
    for qi, q in enumerate(query_cols):
        for j in range(DENSE.shape[1]):
            want, support = _brute(measure, DENSE[:, q], DENSE[:, j])
            assert n[qi, j] == support
            assert sim[qi, j] == pytest.approx(want, abs=1e-9), (measure, q, j)


def test_no_overlap_and_constant_columns():
    x = _sparse(DENSE)
    sim, n = similarity("pearson", x[:, [0, 4]], x)
    assert n[0, 3] == 0 and sim[0, 3] == 0.0  # no co-rated row
    assert np.all(sim[1] == 0.0)  # constant column: zero variance
    sim, _ = similarity("chebyshev", x[:, [1]], x)
    assert sim[0, 5] == pytest.approx(0.5)  # shifted by 1 everywhere: d = 1


def test_min_support_and_shrinkage():
    x = _sparse(DENSE)
    raw, n = similarity("cosine", x[:, [0]], x)
    sim, _ = similarity("cosine", x[:, [0]], x, min_support=2, shrinkage=10.0)
    want = np.where(n[0] >= 2, raw[0] * n[0] / (n[0] + 10.0), 0.0)
    np.testing.assert_allclose(sim[0], want)
    assert n[0, 1] == 2 and n[0, 2] == 1 and sim[0, 2] == 0.0


def test_top_k_keeps_best_positive_and_excludes_self():
    sim = np.array([[1.0, 0.5, 0.0, 0.7, -0.2], [0.3, 1.0, 0.3, 0.0, 0.9]])
    rows, cols, vals = top_k(sim, 3, exclude=np.array([0, 1]))
    assert rows.tolist() == [0, 0, 1, 1, 1]
    assert cols.tolist() == [3, 1, 4, 0, 2]
    np.testing.assert_allclose(vals, [0.7, 0.5, 0.9, 0.3, 0.3])


def test_unknown_measure():
    with pytest.raises(ValueError, match="choose from"):
        similarity("dice", _sparse(DENSE), _sparse(DENSE))


@pytest.mark.parametrize("measure", MEASURES)
def test_pairs_are_the_dense_similarity_at_the_corated_cells(measure):
    x = _sparse(DENSE)
    query_cols = np.array([0, 3, 4])
    sim, n = similarity(measure, x[:, query_cols], x, min_support=2, shrinkage=3.0)
    rows, cols, vals, support = similarity_pairs(
        measure, x[:, query_cols], prepare(x), min_support=2, shrinkage=3.0
    )
    expected_rows, expected_cols = np.nonzero(n)  # row-major: sorted by (row, column)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_array_equal(cols, expected_cols)
    np.testing.assert_allclose(vals, sim[rows, cols], atol=1e-12)
    np.testing.assert_array_equal(support, n[rows, cols])


def test_top_k_pairs_sorts_ties_by_column_and_excludes():
    # row 0: values 0.5 at columns 4 and 1 (a tie at the cut-off k = 2), 0.9 at column 0
    # (excluded), 0.7 at 3; row 1: one positive and one negative value
    rows = np.array([0, 0, 0, 0, 1, 1])
    cols = np.array([0, 1, 3, 4, 2, 5])
    vals = np.array([0.9, 0.5, 0.7, 0.5, -0.1, 0.2])
    r, c, v = top_k_pairs(rows, cols, vals, 2, exclude=np.array([0, 7]))
    np.testing.assert_array_equal(r, [0, 0, 1])
    np.testing.assert_array_equal(c, [3, 1, 5])
    np.testing.assert_array_equal(v, [0.7, 0.5, 0.2])
