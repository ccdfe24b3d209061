"""The ALS NumPy kernel: one regularised least-squares half-step for the rows of a block.

This is a public API: the ALS trainer (:mod:`recspark.models.als.trainer`) calls it inside
Spark tasks, and fold-in (scoring users unseen in training against fixed movie factors)
calls it on the new users' ratings, so both solve exactly the same equations.

=========================  ===============================================================
name                       what it does
=========================  ===============================================================
:class:`ColumnTiles`       a block's ratings (rows × columns of the fixed side), cut into
                           column tiles and stored compactly (built once per block)
:func:`tiles_from_triples` tiles from (row, column, value) triples in any order
:func:`tile_columns`       tiles from a CSR matrix (indptr, columns, values)
:func:`tile_width`         columns per tile for a rank (tiles sized to stay in cache)
:func:`solve_rows`         the half-step: factors and bias of every row, plus the block's
                           squared training error and penalty under the new rows
:func:`init_factors`       seeded starting factors, a pure function of (seed, id, column)
=========================  ===============================================================

Equations (see :mod:`recspark.models.als` for the model and objective)
    With the other side fixed, write x_u = [p_u; b_u], ỹ_i = [q_i; 1] (d = k + 1) and
    t_ui = r_ui − μ − b_i. Row u's exact minimiser solves the d × d normal equations

        (G_u + s_u Λ) x_u = h_u,   G_u = Σ_{i ∈ R(u)} ỹ_i ỹ_iᵀ,   h_u = Σ_{i ∈ R(u)} t_ui ỹ_i,
        Λ = diag(λ_f, …, λ_f, λ_b),   s_u = |R(u)| (weighted) or 1.

Per-block maths (vectorised, no loop per rating or per user)
    G_u[a, b] for a ≤ b is (A Z)[u, (a, b)], where A is the block's 0/1 rating pattern
    (rows × needed columns, CSR) and Z[i, (a, b)] = ỹ_ia ỹ_ib (d(d+1)/2 columns, computed
    from the fixed side, not per rating): one sparse × dense product gives every Gram
    matrix of the block, and h = T Ỹ with T holding the targets t. Cost: nnz · (d(d+1)/2 + d)
    multiply-adds. The block is stored cut into column tiles (:class:`ColumnTiles`, built
    once) of ~4 MB of Z each, and the products are accumulated tile by tile, so the rows
    of Z a product reads stay in cache (with 200k users on the fixed side this is several
    times faster than one product) and memory stays O(tile · d² + rows · d²) per task,
    never O(nnz · d²). Then ONE batched ``np.linalg.solve`` over the stacked (rows, d, d)
    systems (in chunks of at most 100k rows). The training error comes for free from the
    same quantities: since (G_u + s_uΛ) x_u = h_u,

        Σ_{i ∈ R(u)} (t_ui − x_uᵀ ỹ_i)² = Σ t_ui² − x_uᵀ h_u − s_u x_uᵀ Λ x_u .
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from recspark.blocks import encode_values

__all__ = [
    "CHUNK_NNZ",
    "CHUNK_ROWS",
    "TILE_BYTES",
    "ColumnTiles",
    "init_factors",
    "solve_rows",
    "tile_columns",
    "tile_width",
    "tiles_from_triples",
]

#: Ratings per solve chunk: bounds the per-tile temporaries (targets, sparse copies).
CHUNK_NNZ = 8_000_000
#: Rows per solve chunk: bounds the stacked (rows, d, d) systems (100k × 11² doubles = 97 MB).
CHUNK_ROWS = 100_000
#: Bytes of one column tile's pair products Z (sized to stay in a core's cache).
TILE_BYTES = 4 << 20


@functools.lru_cache(maxsize=16)
def _pairs(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle pair indices (a, b), the map from a flat d×d position to its pair,
    and the flat positions of the diagonal."""
    iu, ju = np.triu_indices(d)
    sym = np.empty((d, d), dtype=np.intp)
    sym[iu, ju] = np.arange(iu.size)
    sym[ju, iu] = np.arange(iu.size)
    return iu, ju, sym.ravel(), np.arange(d) * (d + 1)


def _pair_products(y: np.ndarray, iu: np.ndarray, ju: np.ndarray) -> np.ndarray:
    """Z[i, (a, b)] = y[i, a] · y[i, b] for the pairs (iu, ju)."""
    z = np.take(y, iu, axis=1)
    z *= np.take(y, ju, axis=1)
    return z


try:  # y += A @ X in place (SciPy's own kernel behind csr_matrix @ dense)
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - a SciPy without it: the public, allocating path
    _csr_matvecs = None


def _spmm_add(
    indptr: np.ndarray, cols: np.ndarray, data: np.ndarray, x: np.ndarray, out: np.ndarray
) -> None:
    """out += A @ x for the CSR matrix A = (data, cols, indptr) with x.shape[0] columns.

    Accumulates in place (no temporary of out's size per call). ``x`` and ``out`` are
    C-contiguous float64, ``indptr``/``cols`` int32.
    """
    if _csr_matvecs is not None:
        _csr_matvecs(out.shape[0], x.shape[0], x.shape[1], indptr, cols, data, x.ravel(), out.ravel())
    else:
        out += sp.csr_matrix((data, cols, indptr), shape=(out.shape[0], x.shape[0])) @ x


def tile_width(rank: int) -> int:
    """Columns per tile for ``rank``: the tile's pair products fill about TILE_BYTES
    (at most 2**16 columns, so a column offset within its tile fits in 16 bits)."""
    d = rank + 1
    return min(1 << 16, max(256, TILE_BYTES // (8 * d * (d + 1) // 2)))


@dataclass(frozen=True)
class ColumnTiles:
    """A block's ratings cut into column ranges ("tiles"), built once per block.

    Tile t covers columns ``starts[t]:starts[t+1]``; its values for row r are at offsets
    ``indptr[t, r]:indptr[t, r+1]`` of ``offsets`` (column minus ``starts[t]``, sorted) and
    ``codes``. Multiplying tile by tile keeps the fixed side's rows a product reads within
    a cache-sized window: with 200k users on the fixed side this is ~6x faster than one
    CSR × dense product. The block is read from Spark's cache every half-step, so it is
    stored compactly: 16-bit column offsets and values encoded by
    :func:`recspark.blocks.encode_values` (3 bytes per half-star rating).
    """

    starts: np.ndarray  # int64 [T + 1]
    indptr: np.ndarray  # int32 (int64 past 2**31 values) [T, m + 1]: offsets into the arrays below
    offsets: np.ndarray  # uint16 [nnz]: column - starts[tile], ordered by (tile, row, column)
    codes: np.ndarray  # uint8 / float32 / float64 [nnz]: value = code · scale
    scale: float
    counts: np.ndarray  # int64 [m]: values per row over all tiles

    @property
    def n_rows(self) -> int:
        return int(self.counts.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.codes.shape[0])

    def values(self, start: int = 0, end: int | None = None) -> np.ndarray:
        """The values at offsets ``start:end`` as float64."""
        return self.codes[start:end].astype(np.float64) * self.scale

    def columns(self) -> np.ndarray:
        """The column (position among the block's columns) of every value, int64."""
        per_tile = (self.indptr[:, -1] - self.indptr[:, 0]).astype(np.int64)
        return np.repeat(self.starts[:-1], per_tile) + self.offsets

    def rows(self) -> np.ndarray:
        """The local row (0..m-1) of every value, int64."""
        lengths = np.diff(self.indptr, axis=1).ravel()
        return np.repeat(np.tile(np.arange(self.n_rows, dtype=np.int64), self.indptr.shape[0]), lengths)


def tiles_from_triples(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, *, n_rows: int, n_cols: int, width: int
) -> ColumnTiles:
    """Column tiles of ``width`` columns from (local row, column, value) triples in any
    order (0 <= row < n_rows, 0 <= col < n_cols). Vectorised: one sort by (tile, row, col)."""
    if width > 1 << 16:
        raise ValueError(f"tile width {width} exceeds 2**16 columns")
    m = int(n_rows)
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    n_tiles = max(1, -(-int(n_cols) // width))
    tile = cols // width
    cell = tile * m + rows
    order = np.argsort(cell * width + (cols - tile * width))
    flat = np.zeros(n_tiles * m + 1, dtype=np.int64)
    np.cumsum(np.bincount(cell, minlength=n_tiles * m), out=flat[1:])
    tiles_indptr = np.empty((n_tiles, m + 1), dtype=np.int64)
    tiles_indptr[:, :m] = flat[:-1].reshape(n_tiles, m)
    tiles_indptr[:, m] = flat[m :: m] if m else 0
    starts = np.minimum(np.arange(n_tiles + 1, dtype=np.int64) * width, n_cols)
    codes, scale = encode_values(np.asarray(vals)[order])
    return ColumnTiles(
        starts,
        tiles_indptr.astype(np.int32) if rows.size < 2**31 else tiles_indptr,
        (cols - tile * width)[order].astype(np.uint16),
        codes,
        scale,
        np.bincount(rows, minlength=m).astype(np.int64),
    )


def tile_columns(
    indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, *, n_cols: int, width: int
) -> ColumnTiles:
    """Cut a CSR matrix (0 <= col < n_cols) into column tiles of ``width`` columns."""
    m = indptr.shape[0] - 1
    rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(indptr))
    return tiles_from_triples(rows, cols, vals, n_rows=m, n_cols=n_cols, width=width)


def _row_chunks(counts: np.ndarray, chunk_nnz: int, chunk_rows: int) -> Iterator[tuple[int, int]]:
    """Consecutive row ranges [r0, r1) of at most ``chunk_rows`` rows and (unless a single
    row is larger) at most ``chunk_nnz`` values."""
    m = counts.shape[0]
    ends = np.cumsum(counts)
    r0 = 0
    while r0 < m:
        before = ends[r0 - 1] if r0 else 0
        r1 = int(np.searchsorted(ends, before + chunk_nnz, side="right"))
        r1 = min(max(r1, r0 + 1), r0 + chunk_rows, m)
        yield r0, r1
        r0 = r1


def solve_rows(
    tiles: ColumnTiles,
    fixed: np.ndarray,
    *,
    global_mean: float,
    reg_factors: float,
    reg_bias: float,
    weighted: bool,
    chunk_nnz: int = CHUNK_NNZ,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[np.ndarray, float, float]:
    """One ALS half-step for the rows of a block (see the module docstring).

    ``tiles``: the block's ratings, columns indexing rows of ``fixed``. ``fixed``: (p, k+1)
    array of the other side, factors in the first k columns and the bias in the last.

    Returns ``(x, sse, reg)``: x (rows, k+1) with the solved factors and bias of every row,
    the squared training error Σ (r − r̂)² of the block's ratings under the new x, and the
    penalty Σ_rows s (λ_f ||p||² + λ_b b²) of the new x. Memory beyond the block: O(p·d)
    for the fixed side plus O(tile·d² + chunk rows·d²), whatever the block's size.
    """
    p, d = fixed.shape
    k = d - 1
    iu, ju, sym, diag = _pairs(d)
    y = np.empty((p, d))
    y[:, :k] = fixed[:, :k]
    y[:, k] = 1.0
    offset = global_mean + fixed[:, k]
    lam = np.full(d, float(reg_factors))
    lam[k] = float(reg_bias)
    n_tiles = tiles.starts.shape[0] - 1
    out = np.empty((tiles.n_rows, d))
    sse = 0.0
    reg = 0.0
    ones = np.ones(int(np.diff(tiles.indptr[:, [0, -1]], axis=1).max(initial=0)))
    for r0, r1 in _row_chunks(tiles.counts, chunk_nnz, chunk_rows):
        gram = np.zeros((r1 - r0, iu.size))
        h = np.zeros((r1 - r0, d))
        tt = 0.0
        for t in range(n_tiles):
            start, end = int(tiles.indptr[t, r0]), int(tiles.indptr[t, r1])
            if end == start:
                continue
            c0, c1 = int(tiles.starts[t]), int(tiles.starts[t + 1])
            c = tiles.offsets[start:end].astype(np.int32)
            ip = (tiles.indptr[t, r0 : r1 + 1] - start).astype(np.int32)
            yt = np.ascontiguousarray(y[c0:c1])
            target = tiles.values(start, end) - offset[c0:c1][c]
            _spmm_add(ip, c, ones[: end - start], _pair_products(yt, iu, ju), gram)
            _spmm_add(ip, c, target, yt, h)
            tt += float(target @ target)
        scale = tiles.counts[r0:r1].astype(np.float64) if weighted else np.ones(r1 - r0)
        lam_rows = np.multiply.outer(scale, lam)
        system = np.take(gram, sym, axis=1)
        system[:, diag] += lam_rows
        x = np.linalg.solve(system.reshape(-1, d, d), h[..., None])[..., 0]
        out[r0:r1] = x
        reg_rows = float(np.einsum("ij,ij->", x * x, lam_rows))
        sse += tt - float(np.einsum("ij,ij->", x, h)) - reg_rows
        reg += reg_rows
    return out, max(sse, 0.0), reg


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def init_factors(ids: np.ndarray, *, rank: int, seed: int, std: float) -> np.ndarray:
    """Seeded starting factors (len(ids), rank), uniform with standard deviation ``std``.

    Entry (i, j) is a hash of (seed, ids[i], j): the same id gets the same factors whatever
    block or mode it is computed in.
    """
    with np.errstate(over="ignore"):
        key = _splitmix(np.asarray([seed], dtype=np.uint64))
        h = _splitmix(np.asarray(ids, dtype=np.uint64)[:, None] ^ key)
        h = _splitmix(h + np.arange(rank, dtype=np.uint64)[None, :])
    u = (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return (2.0 * u - 1.0) * (std * math.sqrt(3.0))
