"""Similarity of the columns of a sparse ratings matrix over their co-rated entries.

The matrix X (rows × columns, SciPy sparse) holds one value per observed entry: ratings
(or baseline residuals) of users (rows) × movies (columns) for item-item similarity, the
transpose for user-user similarity. For two columns a and b, C(a, b) is the set of rows
where both have an entry (the co-rated rows), n = |C| the co-support, and R(a) the rows
where a has an entry. Sums below run over C unless marked otherwise.

==========  ================================================================  ============
measure     formula                                                           n = 0
==========  ================================================================  ============
jaccard     |R(a) ∩ R(b)| / |R(a) ∪ R(b)| (the sets of rows rated: values     0
            are ignored)
cosine      Σ a·b / (√Σ a² · √Σ b²)                                            0
pearson     Σ (a − ā)(b − b̄) / (√Σ (a − ā)² · √Σ (b − b̄)²), ā and b̄ the      0
            means over C (the correlation of the co-rated values; user-based,
            the columns are users, so the centring is per user)
manhattan   1 / (1 + d), d = Σ |a − b|                                        0
euclidean   1 / (1 + d), d = √Σ (a − b)²                                       0
chebyshev   1 / (1 + d), d = max |a − b|                                       0
==========  ================================================================  ============

A zero denominator (a constant column on C for pearson, all-zero values for cosine) gives
0. Distances become similarities in (0, 1] by 1 / (1 + d): 1 for identical co-rated
values. Then, for every measure, s = 0 where n < ``min_support``, and shrinkage by
co-support (Koren 2008) s · n / (n + β) damps similarities resting on few co-ratings.
Cosine of baseline residuals with shrinkage is Surprise's "pearson_baseline".

Everything is vectorised over a block of query columns against all columns. The product
measures need only sparse products XᵀX-shaped (query block × all columns): co-support
B_qᵀB, sums S_x = X_qᵀB, S_y = B_qᵀX, S_xx, S_yy, S_xy (B the binary pattern). Manhattan
and Chebyshev are not sums of products; for them every co-rated triple (row, query column,
column) of the block is expanded with NumPy index arithmetic (the same Σ_rows n_q·n work a
sparse product does) and reduced with ``bincount`` or ``maximum.at``, in chunks of at most
``max_triples`` triples. No Python loop per pair or per rating.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

MEASURES = ("jaccard", "cosine", "pearson", "manhattan", "euclidean", "chebyshev")
#: Co-rated triples a distance chunk expands at once (5 arrays of 8 bytes each: 40 MB per 1M).
MAX_TRIPLES = 2_000_000


def _binary(x: sp.spmatrix) -> sp.csr_matrix:
    b = sp.csr_matrix(x, copy=True)
    b.data = np.ones_like(b.data)
    return b


def _dense(m) -> np.ndarray:
    return np.asarray(m.toarray() if sp.issparse(m) else m, dtype=np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is not positive."""
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


@dataclass(frozen=True)
class Columns:
    """The matrix whose columns every query is compared with, in the forms the products
    need, built once (:func:`prepare`) and reused by every block: ``x`` (rows × M CSR),
    ``binary`` and ``square`` (the same pattern with values 1 and x², sharing ``x``'s
    index arrays), ``sizes`` (M,) the entries per column."""

    x: sp.csr_matrix
    binary: sp.csr_matrix
    square: sp.csr_matrix
    sizes: np.ndarray


def prepare(matrix: "sp.spmatrix | Columns") -> Columns:
    """``matrix`` as :class:`Columns` (returned as is if it already is). Costs one CSR
    conversion of the whole matrix: a caller that compares many query blocks with the
    same matrix prepares it once (at the ml-32m shape the conversions per block cost
    more than the products themselves)."""
    if isinstance(matrix, Columns):
        return matrix
    x = sp.csr_matrix(matrix, dtype=np.float64)
    x.sum_duplicates()
    shape, ind = x.shape, (x.indices, x.indptr)
    return Columns(
        x=x,
        binary=sp.csr_matrix((np.ones_like(x.data), *ind), shape=shape),
        square=sp.csr_matrix((x.data**2, *ind), shape=shape),
        sizes=np.bincount(x.indices, minlength=shape[1]).astype(np.float64),
    )


def _left(q: sp.spmatrix) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Qᵀ, its binary pattern and its squares, each (b × rows) CSR: the small left factor
    of every product (a CSC query block transposes without a copy)."""
    qt = sp.csr_matrix(sp.csc_matrix(q, dtype=np.float64).T)
    qt.sum_duplicates()
    ind = (qt.indices, qt.indptr)
    return (qt, sp.csr_matrix((np.ones_like(qt.data), *ind), shape=qt.shape),
            sp.csr_matrix((qt.data**2, *ind), shape=qt.shape))


def co_support(queries: sp.spmatrix, matrix: "sp.spmatrix | Columns") -> np.ndarray:
    """n(q, j): rows where query column q and column j both have an entry; dense (b × M)."""
    return _dense(_left(queries)[1] @ prepare(matrix).binary)


def _on_pattern(product: sp.csr_matrix, keys: np.ndarray, m: int) -> np.ndarray:
    """The values of ``product`` (b × m) at the sorted cells ``keys`` (row · m + column),
    0 at a cell it does not store (a sum that cancelled to exactly 0). Its cells are a
    subset of ``keys``: every product is over the co-rated rows."""
    p = product.tocoo()
    out = np.zeros(keys.size)
    out[np.searchsorted(keys, p.row.astype(np.int64) * m + p.col)] = p.data
    return out


def _product_measure(
    measure: str, left: tuple, x: Columns, n: np.ndarray, rows: np.ndarray, cols: np.ndarray,
    keys: np.ndarray,
) -> np.ndarray:
    """The product measures at the co-rated cells (rows, cols) of co-support n (1-D)."""
    qt, qtb, qt2 = left
    if measure == "jaccard":
        size_q = np.asarray(qtb.sum(axis=1)).ravel()
        return _ratio(n, size_q[rows] + x.sizes[cols] - n)
    m = x.x.shape[1]
    sxy = _on_pattern(qt @ x.x, keys, m)
    sxx = _on_pattern(qt2 @ x.binary, keys, m)
    syy = _on_pattern(qtb @ x.square, keys, m)
    if measure == "cosine":
        return _ratio(sxy, np.sqrt(sxx * syy))
    if measure == "euclidean":
        return 1.0 / (1.0 + np.sqrt(np.maximum(sxx + syy - 2 * sxy, 0.0)))
    sx, sy = _on_pattern(qt @ x.binary, keys, m), _on_pattern(qtb @ x.x, keys, m)  # pearson
    cov = n * sxy - sx * sy
    var_q = np.maximum(n * sxx - sx**2, 0.0)
    var_x = np.maximum(n * syy - sy**2, 0.0)
    return _ratio(cov, np.sqrt(var_q * var_x))


def corated_triples(
    queries: sp.csc_matrix, matrix: sp.csr_matrix, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every co-rated (query column, column) pair instance of the query columns ``cols``.

    Returns (q, j, a, b): query column position (into ``cols``), column index, the query's
    value and the column's value in the shared row. Cost Σ over the queries' entries of
    the row's entry count; vectorised with ``np.repeat``.
    """
    sub = queries[:, cols].tocoo()
    rows, qcol, a_val = sub.row, sub.col, sub.data
    starts = matrix.indptr[rows]
    counts = matrix.indptr[rows + 1] - starts
    owner = np.repeat(np.arange(rows.size), counts)
    first = np.cumsum(counts) - counts
    pos = starts[owner] + (np.arange(owner.size) - first[owner])
    return qcol[owner], matrix.indices[pos], a_val[owner], matrix.data[pos]


def _distance_measure(
    measure: str, q: sp.spmatrix, x: sp.csr_matrix, n: np.ndarray, max_triples: int
) -> np.ndarray:
    q = sp.csc_matrix(q)
    b, m = n.shape
    d = np.zeros(b * m)
    # chunk the query columns so that no chunk expands more than max_triples triples
    row_nnz = np.diff(x.indptr)
    work = np.asarray(_binary(q).T @ row_nnz).ravel()
    bounds = [0]
    acc = 0.0
    for c in range(b):  # b is a block of columns (hundreds): cheap
        if acc and acc + work[c] > max_triples:
            bounds.append(c)
            acc = 0.0
        acc += work[c]
    bounds.append(b)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        qi, j, av, bv = corated_triples(q, x, np.arange(lo, hi))
        key = (qi + lo) * m + j
        gap = np.abs(av - bv)
        if measure == "manhattan":
            d += np.bincount(key, weights=gap, minlength=b * m)
        else:  # chebyshev
            np.maximum.at(d, key, gap)
    return np.where(n > 0, 1.0 / (1.0 + d.reshape(b, m)), 0.0)


def _shrink(sim: np.ndarray, n: np.ndarray, min_support: int, shrinkage: float) -> np.ndarray:
    """0 where n < ``min_support``, then sim · n / (n + ``shrinkage``)."""
    sim = np.where(n >= max(min_support, 1), sim, 0.0)
    return sim * n / (n + shrinkage) if shrinkage > 0 else sim


def _check(measure: str) -> None:
    if measure not in MEASURES:
        raise ValueError(f"unknown similarity measure {measure!r}; choose from {', '.join(MEASURES)}")


def similarity_pairs(
    measure: str,
    queries: sp.spmatrix,
    matrix: "sp.spmatrix | Columns",
    *,
    min_support: int = 1,
    shrinkage: float = 0.0,
    max_triples: int = MAX_TRIPLES,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`similarity` at the co-rated cells only: (rows, cols, sim, support), 1-D,
    ascending by (query position, column), the cells with support ≥ 1 (every other cell
    is 0 in both). For the product measures nothing of size b × M is built: a block's
    cost is its co-rated pairs, not b × M cells (at the ml-32m shape most cells are
    empty). The distance measures are computed dense and then read at the cells.
    Raises ValueError for an unknown measure.
    """
    _check(measure)
    columns = prepare(matrix)
    if measure in ("manhattan", "chebyshev"):
        sim, n = similarity(measure, queries, columns, min_support=min_support,
                            shrinkage=shrinkage, max_triples=max_triples)
        rows, cols = np.nonzero(n)
        return rows, cols, sim[rows, cols], n[rows, cols]
    left = _left(queries)
    count = (left[1] @ columns.binary).tocoo()
    m = columns.x.shape[1]
    keys = count.row.astype(np.int64) * m + count.col
    order = np.argsort(keys)
    keys, n = keys[order], count.data[order]
    rows, cols = keys // m, keys % m
    sim = _product_measure(measure, left, columns, n, rows, cols, keys)
    return rows, cols, _shrink(sim, n, min_support, shrinkage), n


def similarity(
    measure: str,
    queries: sp.spmatrix,
    matrix: "sp.spmatrix | Columns",
    *,
    min_support: int = 1,
    shrinkage: float = 0.0,
    max_triples: int = MAX_TRIPLES,
) -> tuple[np.ndarray, np.ndarray]:
    """Similarities of the columns of ``queries`` (rows × b) to the columns of ``matrix``
    (rows × M, same rows, or the :class:`Columns` of :func:`prepare`, which blocks against
    the same matrix should share) by ``measure`` (see the module table).

    Returns (sim, support), both dense (b × M): the similarity after the minimum co-support
    and shrinkage sim · n / (n + ``shrinkage``), and the co-support n. A query column
    that is also a column of ``matrix`` gets its self-similarity too (callers mask it).
    Raises ValueError for an unknown measure.
    """
    _check(measure)
    columns = prepare(matrix)
    shape = (queries.shape[1], columns.x.shape[1])
    if measure not in ("manhattan", "chebyshev"):
        rows, cols, vals, support = similarity_pairs(
            measure, queries, columns, min_support=min_support, shrinkage=shrinkage
        )
        sim, n = np.zeros(shape), np.zeros(shape)
        sim[rows, cols], n[rows, cols] = vals, support
        return sim, n
    n = co_support(queries, columns)
    sim = _distance_measure(measure, queries, columns.x, n, max_triples)
    return _shrink(sim, n, min_support, shrinkage), n


def top_k(
    sim: np.ndarray, k: int, *, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (at most) ``k`` largest positive entries of every row of ``sim`` (b × M).

    ``exclude``: per row, a column never kept (e.g. the query itself), or None. Returns
    flat (row, column, value) arrays, rows ascending, best first within a row, ties by the
    smaller column (which of several equal values at the cut-off are kept is
    NumPy's partition order, deterministic). Entries ≤ 0 are dropped: a neighbour with no positive similarity says
    nothing in the weighted means of the kNN models.
    """
    b, m = sim.shape
    sim = sim.copy()
    if exclude is not None:
        sim[np.arange(b), exclude] = -np.inf
    k = min(k, m)
    if k <= 0 or b == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    part = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (b, 1))
    vals = np.take_along_axis(sim, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    rows = np.repeat(np.arange(b), k)
    keep = vals.ravel() > 0
    return rows[keep], part.ravel()[keep], vals.ravel()[keep]


def top_k_pairs(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int, *,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`top_k` of a sparse block given as cells (rows, cols, vals) (unlisted cells
    are 0, so never kept): the (at most) ``k`` largest positive values of every row, rows
    ascending, best first, ties by the smaller column (also at the cut-off: a full sort of
    the positive cells, which for a sparse block costs less than a partition of b × M).
    ``exclude``: per row, a column never kept, or None."""
    keep = vals > 0
    if exclude is not None:
        keep &= cols != np.asarray(exclude)[rows]
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)
    best = rank < k
    return rows[best], cols[best], vals[best]
