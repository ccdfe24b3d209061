"""Block-partitioned biased ALS: explicit-feedback matrix factorisation with biases.

Model
    r̂(u, i) = μ + b_u + b_i + p_u · q_i,   p_u, q_i ∈ R^k

μ is the training mean (fixed). The other parameters minimise

    J = Σ_{(u,i) ∈ R} (r_ui − μ − b_u − b_i − p_u·q_i)²
        + Σ_u s_u (λ_f ||p_u||² + λ_b b_u²) + Σ_i s_i (λ_f ||q_i||² + λ_b b_i²)

with s = n (the entity's number of ratings, MLlib's "ALS-WR" weighting) when
``als.weighted_reg`` is true, else s = 1; λ_f = ``als.reg_factors``, λ_b = ``als.reg_bias``.

Half-step
    With the movies fixed, write x_u = [p_u; b_u], ỹ_i = [q_i; 1] (d = k + 1) and
    t_ui = r_ui − μ − b_i. J restricted to user u is a ridge regression whose exact
    minimiser solves the d × d normal equations

        (G_u + s_u Λ) x_u = h_u,   G_u = Σ_{i ∈ R(u)} ỹ_i ỹ_iᵀ,   h_u = Σ_{i ∈ R(u)} t_ui ỹ_i,
        Λ = diag(λ_f, …, λ_f, λ_b).

    The movie half-step is the same with the roles swapped. Each half-step minimises J
    exactly over one side, so J never increases. Every iteration is a user step then a
    movie step; the first user step uses seeded random movie factors (std ``als.init_std``,
    a pure function of (seed, movie index), so the result does not depend on the blocking)
    and the movie biases of the given bias model (zeros without one).

Per-block maths (:func:`solve_rows`, vectorised, no loop per rating or per user)
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

Distribution (the design of MLlib's ALS, with NumPy blocks)
    The ratings are shuffled once into ``als.blocks`` user blocks (pieces cut by
    :func:`recspark.blocks.block_pieces`) and the cached user blocks are transposed once
    into movie blocks (a shuffle of arrays); each block is assembled straight into its
    cached, column-tiled form (:func:`tiles_from_triples`, one sort), with its columns
    renumbered to the sorted ``needed`` ids of the other side. They are never shuffled
    again: each half-step moves only factors, in one of two modes (``als.mode``; ``auto``
    broadcasts a side when its factor table fits under ``als.broadcast_max_mb``):

    - broadcast: the solved side is collected to the driver as one NumPy table
      (n × d doubles: 200k × 11 is 17 MB) and broadcast; each block reads the rows it needs.
    - routed: nothing goes through the driver. Once, :func:`recspark.blocks.plan_routes`
      records per (source block, destination block) which source rows the destination
      needs (MLlib's OutBlock); each half-step :func:`recspark.blocks.route_rows` sends
      exactly those rows in one shuffle of small arrays, and the blocks are combined with
      their messages partition by partition (:func:`recspark.blocks.zip_blocks`). Lineage
      is cut every ``als.checkpoint_every`` iterations (reliable checkpoint when the
      SparkContext has a checkpoint directory, else localCheckpoint).

    Both modes feed the same numbers to the same kernel, so they give the same factors.

History
    Per iteration: training RMSE (from the movie step's normal equations, i.e. of the
    model after the iteration), the objective J, validation RMSE when validation ratings
    are given (computed in the movie step: pairs the model knows are scored by it, the
    rest by the bias model's fallback, all clipped to the rating scale), and wall seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pydantic import Field

from recspark import blocks as blk
from recspark.config import Section
from recspark.errors import DataQualityError
from recspark.log import stage
from recspark.models.base import clip
from recspark.models.bias import BIAS_PREDICTION, BiasModel
from recspark.models.contract import Ability, ModelSpec
from recspark.models.factor import FactorModel, factor_frame, factor_schema
from recspark.schema import (
    BIAS,
    FACTORS,
    ITERATION,
    MOVIE_ID,
    MOVIE_IDX,
    OBJECTIVE,
    RATING,
    SECONDS,
    TRAIN_RMSE,
    USER_ID,
    USER_IDX,
    VALIDATION_RMSE,
    require_columns,
)
from recspark.seeds import derive_seed

__all__ = [
    "MODES",
    "AlsConfig",
    "ColumnTiles",
    "SPEC",
    "fit_als",
    "init_factors",
    "solve_rows",
    "tile_columns",
    "tiles_from_triples",
]

_logger = logging.getLogger(__name__)

#: Accepted values of ``als.mode``.
MODES = ("auto", "broadcast", "routed")


class AlsConfig(Section):
    """recspark's block-partitioned biased ALS (module docstring). ``reg_factors`` must be
    positive: a user with fewer ratings than the rank would have a singular system."""

    rank: int = Field(10, ge=1)
    max_iter: int = Field(10, ge=1)
    reg_factors: float = Field(0.1, gt=0)
    reg_bias: float = Field(0.1, ge=0)
    weighted_reg: bool = True
    blocks: int = Field(4, ge=1)
    mode: Literal["auto", "broadcast", "routed"] = "auto"
    broadcast_max_mb: float = Field(256.0, ge=0)
    checkpoint_every: int = Field(5, ge=1)
    init_std: float = Field(0.1, gt=0)  # standard deviation of the seeded initial factors
_STORAGE = StorageLevel.MEMORY_AND_DISK

# --------------------------------------------------------------------------- NumPy kernel

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
    codes, scale = blk.encode_values(np.asarray(vals)[order])
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


# --------------------------------------------------------------------------- block records


@dataclass(frozen=True)
class _Validation:
    """A validation CSR block (rows = movies), told apart from training blocks by type."""

    block: blk.Block


@dataclass(frozen=True)
class _Side:
    """One block of one side, prepared once and cached for the whole fit.

    Columns are positions in ``needed`` (the sorted global ids of the other side this block
    reads), so the fixed side arrives as a compact (len(needed), d) array; the ratings are
    column-tiled for the kernel. The movie side also holds the block's validation ratings
    whose user and movie are both trained.
    """

    block: int
    ids: np.ndarray  # int32 [m]: global index of each row, increasing
    tiles: ColumnTiles
    needed: np.ndarray  # int64 [p]
    val_rows: np.ndarray | None = None  # int64: row of each validation rating
    val_cols: np.ndarray | None = None  # int64: position of its user in ``needed``
    val_vals: np.ndarray | None = None  # float64: its rating


@dataclass(frozen=True)
class _Stats:
    """Sums a half-step reports to the driver."""

    sse: float = 0.0
    n: int = 0
    reg: float = 0.0
    val_sse: float = 0.0
    val_n: int = 0

    def __add__(self, other: "_Stats") -> "_Stats":
        return _Stats(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


@dataclass(frozen=True)
class _Solved:
    """A block's solved rows: ``rows[j]`` = [factors, bias] of entity ``ids[j]``."""

    block: int
    ids: np.ndarray
    rows: np.ndarray
    stats: _Stats


@dataclass(frozen=True)
class _Params:
    global_mean: float
    reg_factors: float
    reg_bias: float
    weighted: bool
    lo: float
    hi: float


def _rows_of(solved: _Solved) -> np.ndarray:
    return solved.rows


def _make_side(block: int, values: list[Any], *, width: int) -> Iterator[tuple[int, _Side]]:
    """A block's :class:`_Side` from its :data:`recspark.blocks.Piece` values (global
    indices) and its validation block, if any: columns renumbered to the ``needed`` ids,
    then tiled."""
    pieces = [v for v in values if isinstance(v, tuple)]
    val = [v.block for v in values if isinstance(v, _Validation)]
    if not pieces:
        return
    rows, cols, vals = blk.join_pieces(pieces)
    if rows.size == 0:
        return
    # Sorted distinct ids and positions by one O(n + max id) pass each, not a sort.
    seen = np.zeros(int(rows.max()) + 1, dtype=bool)
    seen[rows] = True
    ids = np.flatnonzero(seen)
    local = np.cumsum(seen, dtype=np.int64) - 1
    top = max([int(cols.max())] + [int(v.cols.max()) for v in val if v.nnz]) + 1
    used = np.zeros(top, dtype=bool)
    used[cols] = True
    for v in val:
        used[v.cols] = True
    position = np.cumsum(used, dtype=np.int64) - 1
    needed = np.flatnonzero(used)
    tiles = tiles_from_triples(
        local[rows], position[cols], vals, n_rows=ids.shape[0], n_cols=needed.shape[0], width=width
    )
    side = _Side(block, ids.astype(np.int32), tiles, needed)
    if val:
        v = val[0]
        side = dataclasses.replace(
            side,
            val_rows=np.searchsorted(ids, np.repeat(v.ids, v.counts())).astype(np.int64),
            val_cols=position[v.cols],
            val_vals=v.vals,
        )
    yield block, side


def _transposed_pieces(item: tuple[int, _Side], *, n_blocks: int) -> Iterator[tuple[int, blk.Piece]]:
    """A side's ratings with rows and columns swapped, split by destination block."""
    _, side = item
    tiles = side.tiles
    rows = side.needed[tiles.columns()].astype(np.int32)
    cols = side.ids[tiles.rows()]
    for d, r, c, v in blk.split_by_block(rows, cols, tiles.codes, n_blocks):
        yield d, (r, c, v, tiles.scale)


def _solve_side(side: _Side, fixed: np.ndarray, params: _Params) -> _Solved:
    """Solve one prepared block against the fixed rows aligned with ``side.needed``."""
    x, sse, reg = solve_rows(
        side.tiles,
        fixed,
        global_mean=params.global_mean,
        reg_factors=params.reg_factors,
        reg_bias=params.reg_bias,
        weighted=params.weighted,
    )
    val_sse, val_n = 0.0, 0
    if side.val_rows is not None and side.val_rows.size:
        k = x.shape[1] - 1
        mine, theirs = x[side.val_rows], fixed[side.val_cols]
        pred = (
            params.global_mean
            + mine[:, k]
            + theirs[:, k]
            + np.einsum("ij,ij->i", mine[:, :k], theirs[:, :k])
        )
        err = side.val_vals - np.clip(pred, params.lo, params.hi)
        val_sse, val_n = float(err @ err), int(err.size)
    stats = _Stats(sse, side.tiles.nnz, reg, val_sse, val_n)
    return _Solved(side.block, side.ids, x, stats)


def _solve_broadcast(side_rdd: RDD, fixed: Any, params: _Params) -> RDD:
    """Solve every block against the broadcast fixed table (indexed by global id)."""

    def run(items: Iterator[tuple[int, _Side]]) -> Iterator[tuple[int, _Solved]]:
        table = fixed.value
        for block, side in items:
            yield block, _solve_side(side, table[side.needed], params)

    return side_rdd.mapPartitions(run, preservesPartitioning=True)


def _solve_routed(
    side_rdd: RDD, fixed_rdd: RDD, routes: RDD, params: _Params, *, n_blocks: int, width: int
) -> RDD:
    """Route the fixed rows each block needs to it, then solve (one shuffle of rows)."""
    messages = blk.route_rows(fixed_rdd, routes, n_blocks=n_blocks, rows_of=_rows_of)

    def run(block: int, values: list[Any]) -> Iterator[tuple[int, _Solved]]:
        sides = [v for v in values if isinstance(v, _Side)]
        if not sides:
            return
        pieces = [v for v in values if isinstance(v, blk.RoutedRows)]
        fixed = blk.gather_rows(sides[0].needed, pieces, n_blocks=n_blocks, width=width)
        yield block, _solve_side(sides[0], fixed, params)

    return blk.zip_blocks([side_rdd, messages], run, n_blocks=n_blocks)


def _initial_rows(
    block: int, values: list[Any], *, rank: int, seed: int, std: float
) -> Iterator[tuple[int, _Solved]]:
    """Starting [factors, bias] rows of a block; biases from (idx, bias) tuples if any."""
    sides = [v for v in values if isinstance(v, _Side)]
    if not sides:
        return
    ids = sides[0].ids
    rows = np.zeros((ids.shape[0], rank + 1))
    rows[:, :rank] = init_factors(ids, rank=rank, seed=seed, std=std)
    pairs = [v for v in values if isinstance(v, tuple)]
    if pairs:
        idx = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        bias = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
        pos = np.searchsorted(ids, idx)
        ok = pos < ids.shape[0]
        ok[ok] = ids[pos[ok]] == idx[ok]
        rows[pos[ok], rank] = bias[ok]
    yield block, _Solved(block, ids, rows, _Stats())


def _summary(item: tuple[int, _Side]) -> tuple[int, int, float, int, int, bool]:
    _, s = item
    return (
        int(s.ids.shape[0]),
        s.tiles.nnz,
        float(s.tiles.values().sum()),
        int(s.ids.max()) if s.ids.size else -1,
        int(s.val_vals.shape[0]) if s.val_vals is not None else 0,
        bool(np.isfinite(s.tiles.codes).all()),
    )


# --------------------------------------------------------------------------- driver


@dataclass
class _SideState:
    """The latest rows of one side: a driver table (broadcast) or a block RDD (routed)."""

    table: np.ndarray | None = None  # (n_total, d), rows of untrained ids unused
    trained: np.ndarray | None = None  # ids of the rows solved (driver mode)
    rdd: RDD | None = None


class _Trainer:
    """One fit: the cached blocks, the routes and the loop. Driver-side only."""

    def __init__(
        self,
        ratings: DataFrame,
        *,
        cfg: AlsConfig,
        seed: int,
        lo: float,
        hi: float,
        bias: BiasModel | None,
        validation: DataFrame | None,
    ) -> None:
        self.spark = ratings.sparkSession
        self.sc = self.spark.sparkContext
        self.ratings = ratings
        self.cfg = cfg
        self.seed = seed
        self.lo, self.hi = lo, hi
        self.bias = bias
        self.validation = validation
        self.n = cfg.blocks
        self.d = cfg.rank + 1
        self._persisted: list[RDD] = []

    # ---------------------------------------------------------------- set-up

    def _persist(self, rdd: RDD, name: str) -> RDD:
        rdd = rdd.persist(_STORAGE).setName(name)
        self._persisted.append(rdd)
        return rdd

    def prepare(self) -> None:
        """Build and cache the two sides; one action collects their sizes and μ."""
        n = self.n
        ratings = self.ratings.select(USER_IDX, MOVIE_IDX, RATING)
        make_side = functools.partial(_make_side, width=tile_width(self.cfg.rank))
        # One shuffle of the ratings into user blocks, tiled as they are assembled; the
        # movie blocks are the user blocks transposed (a second shuffle, of arrays).
        pieces = blk.block_pieces(ratings, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=n)
        self.users = self._persist(blk.zip_blocks([pieces], make_side, n_blocks=n), "als users")
        inputs = [self.users.flatMap(functools.partial(_transposed_pieces, n_blocks=n))]
        val_blocks = None
        self.unknown_val = _Stats()
        if self.validation is not None:
            val_blocks, self.unknown_val = self._validation_blocks()
            inputs.append(val_blocks.mapValues(_Validation))
        self.items = self._persist(blk.zip_blocks(inputs, make_side, n_blocks=n), "als movies")
        users = self.users.map(_summary).collect()
        items = self.items.map(_summary).collect()
        if val_blocks is not None:
            val_blocks.unpersist()
        self.nnz = sum(s[1] for s in users)
        if self.nnz == 0:
            raise DataQualityError("als fit: the training ratings are empty")
        if not all(s[5] for s in users):
            raise DataQualityError(
                "als fit: some training ratings are null or not finite; drop or fix them first"
            )
        self.global_mean = sum(s[2] for s in users) / self.nnz
        self.n_users = max(s[3] for s in users) + 1
        self.n_items = max(s[3] for s in items) + 1
        self.trained_users = sum(s[0] for s in users)
        self.trained_items = sum(s[0] for s in items)
        self.known_val = sum(s[4] for s in items)
        self.params = _Params(
            self.global_mean,
            self.cfg.reg_factors,
            self.cfg.reg_bias,
            self.cfg.weighted_reg,
            self.lo,
            self.hi,
        )
        self.bc_users = self._broadcastable(self.n_users)
        self.bc_items = self._broadcastable(self.n_items)
        _logger.info(
            "als: %d ratings, %d users, %d movies in %d blocks; μ = %.4f; users %s, movies %s",
            self.nnz,
            self.trained_users,
            self.trained_items,
            n,
            self.global_mean,
            "broadcast" if self.bc_users else "routed",
            "broadcast" if self.bc_items else "routed",
        )
        # Routes are needed only to send a routed side to the other side's blocks.
        self.routes_to_users = self.routes_to_items = None
        if not self.bc_items:
            self.routes_to_users = self._persist(
                blk.plan_routes(
                    self.users.mapValues(lambda s: s.needed),
                    self.items.mapValues(lambda s: s.ids),
                    n_blocks=n,
                ),
                "als routes movies->users",
            )
        if not self.bc_users:
            self.routes_to_items = self._persist(
                blk.plan_routes(
                    self.items.mapValues(lambda s: s.needed),
                    self.users.mapValues(lambda s: s.ids),
                    n_blocks=n,
                ),
                "als routes users->movies",
            )

    def _broadcastable(self, n_total: int) -> bool:
        if self.cfg.mode == "broadcast":
            return True
        if self.cfg.mode == "routed":
            return False
        return n_total * self.d * 8 / 2**20 <= self.cfg.broadcast_max_mb

    def _validation_blocks(self) -> tuple[RDD, _Stats]:
        """Validation pairs of trained users and movies as movie blocks; the error of the
        other pairs (scored by the bias fallback, which does not change) as a constant."""
        assert self.validation is not None
        require_columns(
            self.validation, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage="als validation"
        )
        ku, km = "_als_known_user", "_als_known_movie"
        users = self.ratings.select(USER_IDX).distinct().withColumn(ku, F.lit(True))
        movies = self.ratings.select(MOVIE_IDX).distinct().withColumn(km, F.lit(True))
        flagged = (
            self.validation.select(USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING)
            .join(users, USER_IDX, "left")
            .join(movies, MOVIE_IDX, "left")
        )
        known = F.col(ku).isNotNull() & F.col(km).isNotNull()
        val_blocks = blk.build_blocks(
            flagged.where(known), row_col=MOVIE_IDX, col_col=USER_IDX, n_blocks=self.n
        )
        unknown = _Stats()
        if self.bias is not None:
            err = F.col(RATING) - clip(F.col(BIAS_PREDICTION), self.lo, self.hi)
            row = (
                self.bias.annotate(flagged.where(~known))
                .agg(F.sum(err * err).alias("sse"), F.count(F.lit(1)).alias("n"))
                .first()
            )
            unknown = _Stats(val_sse=float(row["sse"] or 0.0), val_n=int(row["n"]))
        else:
            _logger.info(
                "als: no bias model given, so validation RMSE covers only pairs of trained "
                "users and movies"
            )
        return val_blocks, unknown

    def initial_items(self) -> _SideState:
        """Seeded random movie factors and the bias model's movie biases (or zeros)."""
        k, seed, std = self.cfg.rank, derive_seed(self.seed, "init", "movies"), self.cfg.init_std
        biases = None
        if self.bias is not None:
            ids = self.ratings.select(MOVIE_ID, MOVIE_IDX).distinct()
            biases = self.bias.item_bias.join(ids, MOVIE_ID).select(MOVIE_IDX, BIAS)
        if self.bc_items:
            table = np.zeros((self.n_items, self.d))
            table[:, :k] = init_factors(np.arange(self.n_items), rank=k, seed=seed, std=std)
            if biases is not None:
                pdf = biases.toPandas()
                table[pdf[MOVIE_IDX].to_numpy(np.int64), k] = pdf[BIAS].to_numpy(np.float64)
            return _SideState(table=table)
        inputs = [self.items]
        if biases is not None:
            n = self.n
            inputs.append(biases.rdd.map(lambda r: (int(r[0]) % n, (int(r[0]), float(r[1])))))
        init = functools.partial(_initial_rows, rank=k, seed=seed, std=std)
        rdd = self._persist(blk.zip_blocks(inputs, init, n_blocks=self.n), "als movies init")
        return _SideState(rdd=rdd)

    # ---------------------------------------------------------------- iterations

    def half_step(
        self, side_rdd: RDD, fixed: _SideState, routes: RDD | None, *, to_driver: bool,
        n_total: int, checkpoint: bool, name: str,
    ) -> tuple[_SideState, _Stats]:
        """Solve one side against ``fixed``; keep the result on the driver or as an RDD."""
        if fixed.table is not None:
            handle = self.sc.broadcast(fixed.table)
            solved = _solve_broadcast(side_rdd, handle, self.params)
        else:
            handle = None
            solved = _solve_routed(
                side_rdd, fixed.rdd, routes, self.params, n_blocks=self.n, width=self.d
            )
        if to_driver:
            parts = solved.map(lambda kv: (kv[1].ids, kv[1].rows, kv[1].stats)).collect()
            table = np.zeros((n_total, self.d))
            blk.assemble_rows(((ids, rows) for ids, rows, _ in parts), table)
            trained = np.concatenate([ids for ids, _, _ in parts])
            stats = functools.reduce(lambda a, b: a + b, (s for _, _, s in parts), _Stats())
            state = _SideState(table=table, trained=np.sort(trained))
        else:
            solved = solved.persist(_STORAGE).setName(name)
            if checkpoint:
                if self.sc.getCheckpointDir():
                    solved.checkpoint()
                else:
                    solved.localCheckpoint()
            stats = functools.reduce(
                lambda a, b: a + b, solved.map(lambda kv: kv[1].stats).collect(), _Stats()
            )
            state = _SideState(rdd=solved)
        if handle is not None:
            if to_driver:
                handle.destroy()
            else:
                # Spark serializes a cached RDD's own function (and so its broadcasts) into
                # every later task that reads it, even after a checkpoint: the broadcast
                # must stay valid. Free the executors' copies; Spark's cleaner drops the
                # rest once the RDD is garbage.
                handle.unpersist()
        return state, stats

    def run(self) -> tuple[_SideState, _SideState, pd.DataFrame]:
        cfg = self.cfg
        items = self.initial_items()
        users = _SideState()
        history = []
        val_n = self.known_val + self.unknown_val.val_n
        for it in range(1, cfg.max_iter + 1):
            start = time.perf_counter()
            cut = (not self.bc_users or not self.bc_items) and it % cfg.checkpoint_every == 0
            with stage(f"als iteration {it}/{cfg.max_iter}", self.spark):
                new_users, ustats = self.half_step(
                    self.users, items, self.routes_to_users, to_driver=self.bc_users,
                    n_total=self.n_users, checkpoint=cut, name=f"als users {it}",
                )
                _release(users)
                users = new_users
                new_items, istats = self.half_step(
                    self.items, users, self.routes_to_items, to_driver=self.bc_items,
                    n_total=self.n_items, checkpoint=cut, name=f"als movies {it}",
                )
                _release(items)
                items = new_items
            seconds = time.perf_counter() - start
            train_rmse = math.sqrt(istats.sse / istats.n)
            objective = istats.sse + ustats.reg + istats.reg
            val_rmse = float("nan")
            if self.validation is not None and val_n:
                val_rmse = math.sqrt((istats.val_sse + self.unknown_val.val_sse) / val_n)
            history.append(
                {
                    ITERATION: it,
                    TRAIN_RMSE: train_rmse,
                    VALIDATION_RMSE: val_rmse,
                    OBJECTIVE: objective,
                    SECONDS: seconds,
                }
            )
            _logger.info(
                "als iteration %d/%d: train RMSE %.4f, validation RMSE %.4f, objective %.6g (%.1f s)",
                it, cfg.max_iter, train_rmse, val_rmse, objective, seconds,
            )
        return users, items, pd.DataFrame(history)

    # ---------------------------------------------------------------- output

    def factor_table(self, state: _SideState, idx_col: str) -> DataFrame:
        """(idx, bias, factors) of the trained rows, cached and materialised."""
        k = self.cfg.rank
        if state.table is not None:
            rows = state.table[state.trained]
            df = factor_frame(self.spark, idx_col, state.trained, rows[:, k], rows[:, :k])
        else:

            def rows_of(item: tuple[int, _Solved]) -> Iterator[tuple[int, float, list[float]]]:
                s = item[1]
                return zip(s.ids.tolist(), s.rows[:, k].tolist(), s.rows[:, :k].tolist())

            df = self.spark.createDataFrame(state.rdd.flatMap(rows_of), factor_schema(idx_col))
        df = df.cache()
        df.count()
        return df

    def release(self) -> None:
        for rdd in self._persisted:
            rdd.unpersist()


def _release(state: _SideState) -> None:
    if state.rdd is not None:
        state.rdd.unpersist()


def fit_als(
    ratings: DataFrame,
    *,
    cfg: AlsConfig,
    seed: int,
    lo: float = 0.5,
    hi: float = 5.0,
    bias: BiasModel | None = None,
    validation: DataFrame | None = None,
) -> FactorModel:
    """Fit biased ALS on ``ratings`` (user_id, movie_id, user_idx, movie_idx, rating).

    ``bias``: starts the movie biases and scores pairs the model cannot (unknown user or
    movie); without it the fallback is the model's own μ + b_u + b_i. ``validation``
    (same columns): its RMSE is tracked per iteration. ``seed``: the stage seed (the
    spec's adapter derives it from the root seed). Returns a :class:`FactorModel` named ``als``
    whose ``history`` holds the per-iteration figures.

    Actions: the block build, two small jobs per iteration, and materialising the
    (idx, bias, factors) tables; the id-keyed ``user_factors``/``item_factors`` join the
    id maps of ``ratings`` lazily (cached on first use).
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage="als fit")
    spark = ratings.sparkSession
    trainer = _Trainer(
        ratings, cfg=cfg, seed=seed, lo=lo, hi=hi, bias=bias, validation=validation
    )
    try:
        with stage("als: partition ratings into blocks", spark):
            trainer.prepare()
        users, items, history = trainer.run()
        with stage("als: factor tables", spark):
            user_table = trainer.factor_table(users, USER_IDX)
            item_table = trainer.factor_table(items, MOVIE_IDX)
    finally:
        trainer.release()
    _release(users)
    _release(items)
    user_ids = ratings.select(
        F.col(USER_ID).cast("long").alias(USER_ID), F.col(USER_IDX).cast("int").alias(USER_IDX)
    ).distinct()
    movie_ids = ratings.select(
        F.col(MOVIE_ID).cast("long").alias(MOVIE_ID), F.col(MOVIE_IDX).cast("int").alias(MOVIE_IDX)
    ).distinct()
    settings = {**cfg.model_dump(), "seed": seed}
    return FactorModel(
        name="als",
        global_mean=trainer.global_mean,
        rank=cfg.rank,
        user_factors=user_ids.join(user_table, USER_IDX).select(USER_ID, USER_IDX, BIAS, FACTORS).cache(),
        item_factors=movie_ids.join(item_table, MOVIE_IDX).select(MOVIE_ID, MOVIE_IDX, BIAS, FACTORS).cache(),
        fallback=bias,
        lo=lo,
        hi=hi,
        settings=settings,
        history=history,
    )


SPEC = ModelSpec(
    name="als",
    summary="recspark's block-partitioned biased ALS",
    fit=fit_als,
    abilities=frozenset(
        {
            Ability.PREDICT,
            Ability.TOP_N,
            Ability.FACTORS,
            Ability.SAVE,
            Ability.FOLD_IN,
            Ability.HISTORY,
        }
    ),
    config=AlsConfig,
    load=FactorModel.load,
)
