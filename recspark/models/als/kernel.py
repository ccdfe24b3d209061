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
:func:`transposed_by_block` the tiles' ratings transposed, split by destination block
:func:`tile_width`         columns per tile for a rank (tiles sized to stay in cache)
:func:`solve_rows`         the half-step: factors and bias of every row, plus the block's
                           squared training error and penalty under the new rows
:func:`solve_implicit_rows` the implicit-feedback half-step (Hu, Koren & Volinsky 2008):
                           factors of every row given YᵀY, plus the confidence-weighted
                           loss and penalty
:func:`reg_scale`          the per-row penalty multiplier s (n + n₀, or 1)
:func:`init_factors`       seeded starting factors, a pure function of (seed, id, column)
=========================  ===============================================================

Equations (see :mod:`recspark.models.als` for the model and objective)
    With the other side fixed, write x_u = [p_u; b_u], ỹ_i = [q_i; 1] (d = k + 1) and
    t_ui = r_ui − μ − b_i. Row u's exact minimiser solves the d × d normal equations

        (G_u + s_u Λ) x_u = h_u,   G_u = Σ_{i ∈ R(u)} ỹ_i ỹ_iᵀ,   h_u = Σ_{i ∈ R(u)} t_ui ỹ_i,
        Λ = diag(λ_f, …, λ_f, λ_b),   s_u = |R(u)| + n₀ (weighted) or 1.

    n₀ (``als.reg_offset``) is a floor on the weighting: with s_u = |R(u)| alone a movie
    with one rating is penalised by λ·1 only, so its bias and factors fit that one rating
    almost exactly and its raw score tops every top-N list (issue 16).

Per-block maths (vectorised, no loop per rating or per user)
    G_u[a, b] for a ≤ b is (A Z)[u, (a, b)], where A is the block's 0/1 rating pattern
    (rows × needed columns, CSR) and Z[i, (a, b)] = ỹ_ia ỹ_ib (d(d+1)/2 columns, computed
    from the fixed side, not per rating): one sparse × dense product gives every Gram
    matrix of the block, and h = T Ỹ with T holding the targets t. Cost: nnz · (d(d+1)/2 + d)
    multiply-adds. The block is stored cut into column tiles (:class:`ColumnTiles`, built
    once) of ~4 MB of Z each, and the products are accumulated tile by tile, so the rows
    of Z a product reads stay in cache (with 200k users on the fixed side this is several
    times faster than one product) and memory stays O(tile · d² + rows · d²) per task,
    never O(nnz · d²). Explicit ALS computes both products (and the targets) in one
    compiled pass per tile (:func:`_explicit_sums`, numba, compiled for each d so that a
    row's running sums stay in registers), the same sums in the same order as the two SciPy
    products implicit ALS uses. Then one compiled Cholesky
    solve over the stacked systems (:func:`_cholesky_solve`, in chunks of at most 100k
    rows). The training error comes for free from the same quantities: since
    (G_u + s_uΛ) x_u = h_u,

        Σ_{i ∈ R(u)} (t_ui − x_uᵀ ỹ_i)² = Σ t_ui² − x_uᵀ h_u − s_u x_uᵀ Λ x_u .
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numba
import numpy as np
import scipy.sparse as sp
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from recspark.blocks import encode_values

__all__ = [
    "CHUNK_NNZ",
    "CHUNK_ROWS",
    "TILE_BYTES",
    "ColumnTiles",
    "confidence",
    "init_factors",
    "reg_scale",
    "solve_implicit_rows",
    "solve_rows",
    "tile_columns",
    "tile_width",
    "tiles_from_triples",
    "transposed_by_block",
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


def _radix_order(keys: list[np.ndarray]) -> np.ndarray:
    """The stable permutation sorting by ``keys`` (uint16 arrays, most significant first):
    a least-significant-digit radix sort, NumPy's stable sort being a radix sort on 16-bit
    keys. O(n) per key, about 3 × faster than one comparison sort of a combined int64 key,
    and the order is a function of the keys alone."""
    order = np.argsort(keys[-1], kind="stable")
    for key in reversed(keys[:-1]):
        order = order[np.argsort(key[order], kind="stable")]
    return order


@numba.njit(cache=True, nogil=True)
def _cell_sort(  # pragma: no cover
    rows, cols, codes, row_local, col_tile, col_sub, m, n_tiles, cell_a, cell_b
):
    """The packed-code tiling in four stable counting passes (an LSD radix sort):
    ``(flat, offsets, codes)`` with ``flat`` [n_tiles · m + 1] the start of every cell
    (tile · m + row) and the values ordered by (cell, column offset, code).

    ``rows``/``cols`` are ids that ``row_local`` / ``col_tile``, ``col_sub`` (arrays
    indexed by id) map to the local row, the tile and the offset in it · 2**8, so no
    mapped copy of the block is built; ``cell_a``, ``cell_b`` [n] are scratch for the
    cells (int32 when they fit). Each value's key ``offset · 2**8 + code`` (below
    2**24) is placed by its low 11 bits, then by the bits above, then by tile, then
    within each tile (whose values are now together, a cache-sized region) by row; each
    pass keeps the order of the one before. The order is that of sorting the int64 keys
    ``cell · 2**24 + offset · 2**8 + code``, so equal keys are equal ratings and the result
    is a function of the ratings alone, whatever their arrival order. It replaced one
    scatter by cell followed by a sort of every cell: 0.17 against 0.34 s for a user block
    of 6.3M ratings at the ml-32m shape, 0.145 against 0.24 s for a movie block.
    """
    n = rows.shape[0]
    low = np.zeros(2049, dtype=np.int64)
    high = np.zeros(8194, dtype=np.int64)
    for i in range(n):
        key = col_sub[cols[i]] | codes[i]
        low[(key & 0x7FF) + 1] += 1
        high[(key >> 11) + 1] += 1
    for k in range(2048):
        low[k + 1] += low[k]
    for k in range(8193):
        high[k + 1] += high[k]
    key_a = np.empty(n, dtype=np.uint32)
    for i in range(n):
        c = cols[i]
        key = col_sub[c] | codes[i]
        p = low[key & 0x7FF]
        key_a[p] = key
        cell_a[p] = col_tile[c] * m + row_local[rows[i]]
        low[key & 0x7FF] = p + 1
    key_b = np.empty_like(key_a)
    for i in range(n):
        h = key_a[i] >> 11
        p = high[h]
        key_b[p] = key_a[i]
        cell_b[p] = cell_a[i]
        high[h] = p + 1
    flat = np.zeros(n_tiles * m + 1, dtype=np.int64)
    for i in range(n):
        flat[cell_b[i] + 1] += 1
    for k in range(n_tiles * m):
        flat[k + 1] += flat[k]
    tiles = flat[: n_tiles * m : max(m, 1)].copy()  # where each tile's values start
    for i in range(n):
        t = cell_b[i] // m
        p = tiles[t]
        key_a[p] = key_b[i]
        cell_a[p] = cell_b[i]
        tiles[t] = p + 1
    fill = flat[:-1].copy()
    offsets = np.empty(n, dtype=np.uint16)
    out = np.empty(n, dtype=np.uint8)
    for i in range(n):
        p = fill[cell_a[i]]
        offsets[p] = key_a[i] >> 8
        out[p] = key_a[i] & 0xFF
        fill[cell_a[i]] = p + 1
    return flat, offsets, out


def _packed_order(
    rows: np.ndarray, cols: np.ndarray, codes: np.ndarray, *, m: int, n_cols: int, width: int,
    n_tiles: int, row_map: np.ndarray | None, col_map: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(flat, offsets, codes) of :func:`_cell_sort` for 1-byte value codes, or None for
    other codes (sorted by :func:`_radix_order` instead): values ordered by (tile, row,
    column), ``flat`` the start of every (tile, row) cell, without sorting the whole block."""
    if codes.dtype != np.uint8:
        return None
    c = np.arange(n_cols, dtype=np.int64)
    tile = c // width
    sub = (c - tile * width) << 8
    if col_map is not None:
        tile, sub = tile[col_map], sub[col_map]
    if row_map is None:
        row_map = np.arange(m, dtype=np.int32)
    cell = np.int32 if n_tiles * m < 2**31 else np.int64
    n = rows.shape[0]
    return _cell_sort(
        rows, cols, codes, row_map, tile.astype(np.int32), sub, m, n_tiles,
        np.empty(n, dtype=cell), np.empty(n, dtype=cell),
    )


def tiles_from_triples(
    rows: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    *,
    n_rows: int,
    n_cols: int,
    width: int,
    scale: float | None = None,
    row_map: np.ndarray | None = None,
    col_map: np.ndarray | None = None,
) -> ColumnTiles:
    """Column tiles of ``width`` columns from (local row, column, value) triples in any
    order (0 <= row < n_rows, 0 <= col < n_cols). ``scale``: when given, ``vals`` are
    already codes of :func:`recspark.blocks.encode_values` (value = code · scale), stored
    as they are; otherwise the values are encoded here. ``row_map``/``col_map`` (integer
    arrays indexed by id): ``rows``/``cols`` are ids, the local row of id r is
    ``row_map[r]`` and its column ``col_map[c]`` (a block's global ids and its positions
    among them, mapped without a mapped copy of the block). No comparison sort of the whole
    block: 1-byte codes (half-star ratings) are placed by compiled counting passes
    (:func:`_packed_order`), other values by a radix sort by (tile, row, column)
    (:func:`_radix_order`); both give the same tiles."""
    if width > 1 << 16:
        raise ValueError(f"tile width {width} exceeds 2**16 columns")
    m = int(n_rows)
    n_tiles = max(1, -(-int(n_cols) // width))
    if scale is None:
        codes, scale = encode_values(vals)
    else:
        codes = np.asarray(vals)
    packed = _packed_order(
        np.asarray(rows), np.asarray(cols), codes, m=m, n_cols=int(n_cols), width=width,
        n_tiles=n_tiles, row_map=row_map, col_map=col_map,
    )
    if packed is not None:
        flat, offsets, codes = packed
    else:
        rows = np.asarray(rows if row_map is None else row_map[rows], dtype=np.int64)
        cols = np.asarray(cols if col_map is None else col_map[cols], dtype=np.int64)
        tile = cols // width
        offsets = (cols - tile * width).astype(np.uint16)
        cell = tile * m + rows
        digits = [offsets]
        top = n_tiles * m
        shift = 0
        while shift == 0 or top >> shift:  # the cell's 16-bit digits, least significant first
            digits.insert(0, ((cell >> shift) & 0xFFFF).astype(np.uint16))
            shift += 16
        order = _radix_order(digits)
        offsets, codes = offsets[order], codes[order]
        flat = np.zeros(n_tiles * m + 1, dtype=np.int64)
        np.cumsum(np.bincount(cell, minlength=n_tiles * m), out=flat[1:])
    tiles_indptr = np.empty((n_tiles, m + 1), dtype=np.int64)
    tiles_indptr[:, :m] = flat[:-1].reshape(n_tiles, m)
    tiles_indptr[:, m] = flat[m :: m] if m else 0
    starts = np.minimum(np.arange(n_tiles + 1, dtype=np.int64) * width, n_cols)
    return ColumnTiles(
        starts,
        tiles_indptr.astype(np.int32) if offsets.size < 2**31 else tiles_indptr,
        offsets,
        codes,
        float(scale),
        np.diff(tiles_indptr, axis=1).sum(axis=0),
    )


@numba.njit(cache=True, nogil=True)
def _transpose_split(  # pragma: no cover
    starts, indptr, offsets, codes, row_ids, col_ids, n_blocks
):
    """:func:`transposed_by_block`'s two passes: the values per destination block, then
    each value's (column id, row id, code) at its block's next place, in storage order."""
    m = indptr.shape[1] - 1
    bounds = np.zeros(n_blocks + 1, dtype=np.int64)
    for t in range(indptr.shape[0]):
        for j in range(indptr[t, 0], indptr[t, m]):
            bounds[col_ids[starts[t] + offsets[j]] % n_blocks + 1] += 1
    for b in range(n_blocks):
        bounds[b + 1] += bounds[b]
    n = offsets.shape[0]
    out_rows = np.empty(n, dtype=np.int32)
    out_cols = np.empty(n, dtype=np.int32)
    out_codes = np.empty_like(codes)
    fill = bounds[:-1].copy()
    for t in range(indptr.shape[0]):
        for r in range(m):
            for j in range(indptr[t, r], indptr[t, r + 1]):
                g = col_ids[starts[t] + offsets[j]]
                p = fill[g % n_blocks]
                out_rows[p] = g
                out_cols[p] = row_ids[r]
                out_codes[p] = codes[j]
                fill[g % n_blocks] = p + 1
    return bounds, out_rows, out_cols, out_codes


def transposed_by_block(
    tiles: ColumnTiles, row_ids: np.ndarray, col_ids: np.ndarray, n_blocks: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The tiles' ratings with rows and columns swapped, as ``(block, rows, cols, codes)``
    per destination block ``col_ids[column] % n_blocks`` (blocks without ratings left out).

    ``row_ids`` [m] and ``col_ids`` [n_cols] (ids below 2**31) give the id of every local
    row and column; the new rows are column ids, the new columns row ids (int32), the codes
    as stored; within a block, values keep the tiles' (tile, row, column) order. One
    compiled pass counts, one places: 0.06 s for a user block of 6.3M ratings at the
    ml-32m shape, against 0.18-0.24 s gathering the ids and splitting them with NumPy."""
    bounds, rows, cols, codes = _transpose_split(
        tiles.starts, tiles.indptr, tiles.offsets, tiles.codes,
        np.asarray(row_ids), np.asarray(col_ids), int(n_blocks),
    )
    for b in range(n_blocks):
        lo, hi = bounds[b], bounds[b + 1]
        if hi > lo:
            yield b, rows[lo:hi], cols[lo:hi], codes[lo:hi]


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


def _normal_equations(
    tiles: ColumnTiles,
    y: np.ndarray,
    r0: int,
    r1: int,
    terms: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray | None, np.ndarray, float]],
    ones: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The weighted Gram matrices and right-hand sides of rows ``r0:r1`` of a block.

    ``y``: (p, d) fixed rows. ``terms(values, positions)`` maps a tile's stored values and
    their columns (positions into ``y``) to ``(w, t, c)``: weights w (None = all 1) and
    targets t per value, and a scalar c summed over tiles. Returns ``(G, h, Σ c)`` with
    G[u, (a, b)] = Σ_i w_ui y_ia y_ib for the upper-triangle pairs (a, b) of ``_pairs(d)``
    and h[u] = Σ_i t_ui y_i, accumulated tile by tile (module docstring).
    """
    d = y.shape[1]
    iu, ju, _, _ = _pairs(d)
    gram = np.zeros((r1 - r0, iu.size))
    h = np.zeros((r1 - r0, d))
    total = 0.0
    for t in range(tiles.starts.shape[0] - 1):
        start, end = int(tiles.indptr[t, r0]), int(tiles.indptr[t, r1])
        if end == start:
            continue
        c0, c1 = int(tiles.starts[t]), int(tiles.starts[t + 1])
        c = tiles.offsets[start:end].astype(np.int32)
        ip = (tiles.indptr[t, r0 : r1 + 1] - start).astype(np.int32)
        yt = np.ascontiguousarray(y[c0:c1])
        weight, target, part = terms(tiles.values(start, end), c + c0)
        _spmm_add(ip, c, ones[: end - start] if weight is None else weight,
                  _pair_products(yt, iu, ju), gram)
        _spmm_add(ip, c, target, yt, h)
        total += part
    return gram, h, total


@intrinsic
def _stack_doubles(typingctx, size):  # pragma: no cover - lowered by numba
    """A pointer to ``size`` float64 on the calling kernel's stack (LLVM ``alloca`` in its
    entry block); ``size`` must be a compile-time constant. Unlike an ``np.empty`` array,
    the compiler knows this memory aliases no array argument, so a fixed-size accumulator
    kept here lives in registers across a loop (``numba.carray`` views it as an array)."""

    def lower(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.float64), size=args[0])

    return types.CPointer(types.float64)(types.int64), lower


@intrinsic
def _prefetch(typingctx, arr, index):  # pragma: no cover - lowered by numba
    """Ask the CPU to start loading the cache line of ``arr.flat[index]`` (LLVM's
    ``llvm.prefetch``: a read, kept in every cache level); no effect on results, and no
    fault even for an address past the array. For loads whose address the hardware cannot
    guess, such as the row of Z a rating a few places ahead will read."""

    def lower(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        byte_ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [byte_ptr.type],
            ir.FunctionType(ir.VoidType(), [byte_ptr.type, i32, i32, i32]),
        )
        builder.call(fn, [byte_ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(arr, types.intp), lower


#: How many ratings ahead :func:`_explicit_sums` prefetches the row of Z a rating reads.
PREFETCH_AHEAD = 8


@functools.cache
def _explicit_sums(d: int) -> Callable[..., float]:
    """The compiled explicit-ALS pass for rows of width ``d``: one function per d (compiled,
    and cached on disk by numba, once per d), in which d and d(d+1)/2 are constants.

    ``f(indptr, offsets, codes, scale, starts, y, offset, r0, r1, gram, h, z)`` adds the
    Gram matrices and right-hand sides of rows ``r0:r1`` to ``gram`` (rows, d(d+1)/2) and
    ``h`` (rows, d) in place: the numbers of :func:`_normal_equations` with unit weights and
    targets t = code · scale − offset[column], bit for bit (same products, same order of
    sums), in one pass per tile that reads every value once. ``y``'s last column must be 1
    (the bias's constant, as in :func:`solve_rows`), so the products with it are known: per
    tile the pass writes each column's pair products in ``gram``'s order but the last (the
    pair (d−1, d−1), 1 · 1) into one row of ``z`` (tile width, d(d+1)/2 − 1), the pairs
    (a, d−1) being y[i, a] itself; then for each (row, tile) cell the row's running sums
    are loaded once into a stack accumulator (:func:`_stack_doubles`), added to over the
    cell's values (the row of z, 1, and t · y[i, a] read from the pairs (a, d−1), t for h's
    last entry), and stored back. With d constant the compiler unrolls the accumulator
    into registers: at the ml-32m shape (rank 10) 14-17 ns a rating against 23-27 ns with
    d read at run time and the sums kept in ``gram``. The rows of Z that ratings read are
    in no order the hardware can predict, so each rating also prefetches the row of the
    rating ``PREFETCH_AHEAD`` places later in the tile (:func:`_prefetch`): 12-15 ns a
    rating; reading 65 doubles a rating instead of the 77 of all the pairs and y (rank
    10): 0.093-0.101 s against 0.107-0.119 s for a block of 6.3-6.7M ratings (session 33,
    alternated). Returns Σ t² (summed in value order).
    """
    n_pairs = d * (d + 1) // 2
    k = d - 1
    width = n_pairs - 1  # a row of z: the pairs in gram's order but the last, (k, k) = 1
    sums_size = n_pairs + d  # the accumulator: gram's pairs, then h
    # where y[i, a] = y[i, a] · 1 sits in a row of z: the pair (a, k), last of row a
    y_at = np.array([(a + 1) * d - a * (a + 1) // 2 - 1 for a in range(k)], dtype=np.int64)

    @numba.njit(cache=True, nogil=True)
    def sums(  # pragma: no cover
        indptr, offsets, codes, scale, starts, y, offset, r0, r1, gram, h, z
    ):
        acc = numba.carray(_stack_doubles(sums_size), (sums_size,))
        z_flat = z.reshape(-1)
        tt = 0.0
        for t in range(starts.shape[0] - 1):
            if indptr[t, r1] == indptr[t, r0]:
                continue
            c0 = starts[t]
            for c in range(starts[t + 1] - c0):
                q = 0
                for a in range(k):
                    ya = y[c0 + c, a]
                    for b in range(a, k):
                        z[c, q] = ya * y[c0 + c, b]
                        q += 1
                    z[c, q] = ya  # the pair (a, k): y_a · 1
                    q += 1
            tile_end = indptr[t, r1]
            for r in range(r0, r1):
                j0, j1 = indptr[t, r], indptr[t, r + 1]
                if j0 == j1:
                    continue
                g = gram[r - r0]
                hr = h[r - r0]
                for q in range(n_pairs):
                    acc[q] = g[q]
                for a in range(d):
                    acc[n_pairs + a] = hr[a]
                for j in range(j0, j1):
                    if j + PREFETCH_AHEAD < tile_end:
                        row = np.intp(offsets[j + PREFETCH_AHEAD]) * width
                        for line in range(0, width, 8):  # 8 doubles per 64-byte line
                            _prefetch(z_flat, row + line)
                    c = offsets[j]
                    target = codes[j] * scale - offset[c0 + c]
                    tt += target * target
                    zc = z[c]
                    for q in range(width):
                        acc[q] += zc[q]
                    acc[width] += 1.0  # the pair (k, k): 1 · 1
                    for a in range(k):
                        acc[n_pairs + a] += target * zc[y_at[a]]
                    acc[n_pairs + k] += target  # t · 1
                for q in range(n_pairs):
                    g[q] = acc[q]
                for a in range(d):
                    hr[a] = acc[n_pairs + a]
        return tt

    return sums


@numba.njit(cache=True, nogil=True)
def _cholesky_solve(gram, h, lam_rows, base, out):  # pragma: no cover
    """Solve (G_u + base + diag(lam_rows[u])) x_u = h_u for every row u into ``out``, by a
    Cholesky factorisation G = RᵀR (R upper triangular) and two triangular solves per row
    (Golub & Van Loan, Matrix Computations, algorithm 4.2.1), in one compiled loop: about
    d³/6 + d² multiply-adds per row, with none of LAPACK's per-matrix call overhead, which
    dominates at d = 11. ``gram``: (rows, d(d+1)/2) upper-triangle pairs in
    :func:`_pairs` order; ``base``: (d, d). Returns False, leaving ``out`` partly written,
    when a pivot is not positive (a system that is not positive definite, or not finite).
    """
    n, d = h.shape
    a = np.empty((d, d))
    z = np.empty(d)
    for u in range(n):
        q = 0
        for i in range(d):
            for j in range(i, d):
                a[i, j] = gram[u, q] + base[i, j]
                q += 1
            a[i, i] += lam_rows[u, i]
        for i in range(d):  # R overwrites the upper triangle of a
            s = a[i, i]
            for k in range(i):
                s -= a[k, i] * a[k, i]
            if not s > 0.0:
                return False
            pivot = np.sqrt(s)
            a[i, i] = pivot
            for j in range(i + 1, d):
                s = a[i, j]
                for k in range(i):
                    s -= a[k, i] * a[k, j]
                a[i, j] = s / pivot
        for i in range(d):  # Rᵀ z = h_u
            s = h[u, i]
            for k in range(i):
                s -= a[k, i] * z[k]
            z[i] = s / a[i, i]
        for i in range(d - 1, -1, -1):  # R x = z
            s = z[i]
            for k in range(i + 1, d):
                s -= a[i, k] * out[u, k]
            out[u, i] = s / a[i, i]
    return True


def _solve_systems(
    gram: np.ndarray, h: np.ndarray, lam_rows: np.ndarray, base: np.ndarray | None = None
) -> np.ndarray:
    """Solve (G_u + base + diag(lam_rows[u])) x_u = h_u for every row.

    ``gram``: upper-triangle pairs as :func:`_normal_equations` returns them; ``base``: an
    optional (d, d) matrix shared by every row (implicit ALS's YᵀY). The systems are
    symmetric positive definite whenever λ > 0 (every row has a rating, so the bias
    direction is penalised by the data): :func:`_cholesky_solve`. Should a system not be
    (non-finite factors), the chunk is solved by LU with pivoting
    (``numpy.linalg.solve``), which raises ``LinAlgError`` on a singular system."""
    d = h.shape[1]
    out = np.empty_like(h)
    shared = np.zeros((d, d)) if base is None else np.ascontiguousarray(base, dtype=np.float64)
    if _cholesky_solve(gram, h, np.ascontiguousarray(lam_rows, dtype=np.float64), shared, out):
        return out
    _, _, sym, diag = _pairs(d)
    system = np.take(gram, sym, axis=1)
    system += shared.reshape(1, d * d)
    system[:, diag] += lam_rows
    return np.linalg.solve(system.reshape(-1, d, d), h[..., None])[..., 0]


def _max_tile_nnz(tiles: ColumnTiles) -> np.ndarray:
    """Ones for the largest tile: the unit weights of an unweighted Gram product."""
    return np.ones(int(np.diff(tiles.indptr[:, [0, -1]], axis=1).max(initial=0)))


def reg_scale(counts: np.ndarray, *, weighted: bool, reg_offset: float = 0.0) -> np.ndarray:
    """The per-row multiplier s of the penalty: n + n₀ (``weighted``; n = the row's ratings,
    n₀ = ``reg_offset``), else 1."""
    if weighted:
        return counts.astype(np.float64) + float(reg_offset)
    return np.ones(counts.shape[0])


def solve_rows(
    tiles: ColumnTiles,
    fixed: np.ndarray,
    *,
    global_mean: float,
    reg_factors: float,
    reg_bias: float,
    weighted: bool,
    reg_offset: float = 0.0,
    chunk_nnz: int = CHUNK_NNZ,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[np.ndarray, float, float]:
    """One ALS half-step for the rows of a block (see the module docstring).

    ``tiles``: the block's ratings, columns indexing rows of ``fixed``. ``fixed``: (p, k+1)
    array of the other side, factors in the first k columns and the bias in the last.
    ``weighted``/``reg_offset``: s_u = n_u + n₀, else 1 (:func:`reg_scale`).

    Returns ``(x, sse, reg)``: x (rows, k+1) with the solved factors and bias of every row,
    the squared training error Σ (r − r̂)² of the block's ratings under the new x, and the
    penalty Σ_rows s (λ_f ||p||² + λ_b b²) of the new x. Memory beyond the block: O(p·d)
    for the fixed side plus O(tile·d² + chunk rows·d²), whatever the block's size.
    """
    p, d = fixed.shape
    k = d - 1
    y = np.empty((p, d))
    y[:, :k] = fixed[:, :k]
    y[:, k] = 1.0
    offset = global_mean + fixed[:, k]
    lam = np.full(d, float(reg_factors))
    lam[k] = float(reg_bias)

    n_pairs = d * (d + 1) // 2
    z = np.empty((int(np.diff(tiles.starts).max(initial=0)), n_pairs - 1))
    sums = _explicit_sums(d)
    out = np.empty((tiles.n_rows, d))
    sse = 0.0
    reg = 0.0
    for r0, r1 in _row_chunks(tiles.counts, chunk_nnz, chunk_rows):
        gram = np.zeros((r1 - r0, n_pairs))
        h = np.zeros((r1 - r0, d))
        tt = sums(
            tiles.indptr, tiles.offsets, tiles.codes, float(tiles.scale), tiles.starts, y, offset,
            r0, r1, gram, h, z,
        )
        scale = reg_scale(tiles.counts[r0:r1], weighted=weighted, reg_offset=reg_offset)
        lam_rows = np.multiply.outer(scale, lam)
        x = _solve_systems(gram, h, lam_rows)
        out[r0:r1] = x
        reg_rows = float(np.einsum("ij,ij->", x * x, lam_rows))
        sse += tt - float(np.einsum("ij,ij->", x, h)) - reg_rows
        reg += reg_rows
    return out, max(sse, 0.0), reg


def confidence(values: np.ndarray, *, alpha: float, kind: str) -> np.ndarray:
    """Implicit ALS's confidence c = 1 + α·r (``kind = "rating"``) or 1 + α (``"binary"``)."""
    if kind == "rating":
        return 1.0 + float(alpha) * values
    if kind == "binary":
        return np.full(values.shape, 1.0 + float(alpha))
    raise ValueError(f"confidence must be 'rating' or 'binary', got {kind!r}")


def solve_implicit_rows(
    tiles: ColumnTiles,
    fixed: np.ndarray,
    *,
    gram: np.ndarray,
    reg: float,
    alpha: float,
    kind: str = "rating",
    weighted: bool = False,
    reg_offset: float = 0.0,
    chunk_nnz: int = CHUNK_NNZ,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[np.ndarray, float, float]:
    """One implicit-feedback ALS half-step (Hu, Koren & Volinsky 2008) for a block's rows.

    Every rated column i of row u has preference p_ui = 1 and confidence c_ui
    (:func:`confidence`); every other column of the fixed side has p = 0, c = 1. Row u's
    factors minimise Σ_i c_ui (p_ui − x_uᵀ y_i)² + λ s_u ||x_u||² over ALL columns, whose
    normal equations are, with the YᵀY trick,

        (YᵀY + Σ_{i ∈ R(u)} (c_ui − 1) y_i y_iᵀ + λ s_u I) x_u = Σ_{i ∈ R(u)} c_ui y_i

    ``fixed``: (p, k) factors of the columns the block reads; ``gram``: (k, k) YᵀY over
    EVERY row of the fixed side (not only those read here: unrated movies count too), computed
    once per half-step by the caller. Only rated cells are touched: cost nnz·(k(k+1)/2 + k)
    plus one k × k solve per row, as in :func:`solve_rows`.

    Returns ``(x, loss, penalty)``: x (rows, k); the confidence-weighted squared error of
    the rows over every column, Σ_u Σ_i c_ui (p_ui − x_uᵀ y_i)², from the normal equations
    (at the solution it equals Σ_{R(u)} c_ui − x_uᵀ h_u − λ s_u ||x_u||²); and λ Σ s_u ||x_u||².
    """
    ones = _max_tile_nnz(tiles)
    k = fixed.shape[1]
    y = np.ascontiguousarray(fixed, dtype=np.float64)

    def terms(values: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        c = confidence(values, alpha=alpha, kind=kind)
        return c - 1.0, c, float(c.sum())

    out = np.empty((tiles.n_rows, k))
    loss = 0.0
    penalty = 0.0
    for r0, r1 in _row_chunks(tiles.counts, chunk_nnz, chunk_rows):
        g, h, csum = _normal_equations(tiles, y, r0, r1, terms, ones)
        scale = reg_scale(tiles.counts[r0:r1], weighted=weighted, reg_offset=reg_offset)
        lam_rows = np.multiply.outer(scale * float(reg), np.ones(k))
        x = _solve_systems(g, h, lam_rows, base=gram)
        out[r0:r1] = x
        pen_rows = float(np.einsum("ij,ij->", x * x, lam_rows))
        loss += csum - float(np.einsum("ij,ij->", x, h)) - pen_rows
        penalty += pen_rows
    return out, max(loss, 0.0), penalty


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
