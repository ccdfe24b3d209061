"""ALS blocks and sides: the cached per-block inputs of the half-steps and how factors move.

The ratings are shuffled once into ``als.blocks`` user blocks (pieces cut by
:func:`recspark.blocks.block_pieces`) and the cached user blocks are transposed once into
movie blocks (:func:`transposed_pieces`, a shuffle of arrays); each block is assembled
straight into its cached, column-tiled form (:func:`make_side`: one sort of the value codes
as they were shuffled, no decoding), with its columns renumbered to the sorted
``needed`` ids of the other side. They are never shuffled again:
each half-step moves only factors, in one of two modes:

- broadcast (:func:`solve_broadcast`): the solved side is collected to the driver as one
  NumPy table (n × d doubles: 200k × 11 is 17 MB) and broadcast; each block reads the
  rows it needs.
- routed (:func:`solve_routed`): nothing goes through the driver. Once,
  :func:`recspark.blocks.plan_routes` records per (source block, destination block) which
  source rows the destination needs (MLlib's OutBlock); each half-step
  :func:`recspark.blocks.route_rows` sends exactly those rows in one shuffle of small
  arrays, and the blocks are combined with their messages partition by partition
  (:func:`recspark.blocks.zip_blocks`).

Both modes feed the same numbers to the same kernel (:func:`recspark.models.als.kernel.solve_rows`
through :func:`solve_side`), so they give the same factors. Validation ratings whose user
and movie are both trained ride along in the movie blocks (:func:`validation_blocks`), so
the movie half-step also reports their squared error.

The records here are what the block RDDs hold: :class:`Side` (a prepared block),
:class:`Solved` (a block's solved rows) and :class:`Stats` (the sums a half-step reports).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
from pyspark import RDD
from pyspark.accumulators import Accumulator, AccumulatorParam
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark import blocks as blk
from recspark.models.als.kernel import (
    ColumnTiles,
    init_factors,
    solve_rows,
    tiles_from_triples,
    transposed_by_block,
)
from recspark.models.base import clip
from recspark.models.bias import BIAS_PREDICTION, BiasModel
from recspark.schema import MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX, require_columns

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationBlock:
    """A validation CSR block (rows = movies), told apart from training blocks by type."""

    block: blk.Block


@dataclass(frozen=True)
class Side:
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
class Stats:
    """Sums a half-step reports to the driver."""

    sse: float = 0.0
    n: int = 0
    reg: float = 0.0
    val_sse: float = 0.0
    val_n: int = 0

    def __add__(self, other: "Stats") -> "Stats":
        return Stats(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))


@dataclass(frozen=True)
class Solved:
    """A block's solved rows: ``rows[j]`` = [factors, bias] of entity ``ids[j]``."""

    block: int
    ids: np.ndarray
    rows: np.ndarray
    stats: Stats


@dataclass(frozen=True)
class Params:
    """The fixed numbers every explicit half-step task needs: μ, the regularisation and the
    scale. :meth:`solve` is the half-step of one block (another model's parameters, e.g.
    implicit ALS's, bring their own)."""

    global_mean: float
    reg_factors: float
    reg_bias: float
    weighted: bool
    lo: float
    hi: float
    reg_offset: float = 0.0

    def solve(self, side: Side, fixed: np.ndarray) -> Solved:
        """:func:`solve_side` with these parameters."""
        return solve_side(side, fixed, self)


def _rows_of(solved: Solved) -> np.ndarray:
    return solved.rows


def _join_codes(pieces: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None]:
    """(rows, cols, codes, scale) of all pieces: their codes concatenated as they are when
    every piece has the same encoding (the usual case), else float64 values and None."""
    if len({(p[2].dtype, p[3]) for p in pieces}) == 1:
        rows = np.concatenate([p[0] for p in pieces])
        cols = np.concatenate([p[1] for p in pieces])
        return rows, cols, np.concatenate([p[2] for p in pieces]), float(pieces[0][3])
    rows, cols, vals = blk.join_pieces(pieces)
    return rows, cols, vals, None


def make_side(block: int, values: list[Any], *, width: int) -> Iterator[tuple[int, Side]]:
    """A block's :class:`Side` from its :data:`recspark.blocks.Piece` values (global
    indices) and its validation block, if any: columns renumbered to the ``needed`` ids,
    then tiled."""
    pieces = [v for v in values if isinstance(v, tuple)]
    val = [v.block for v in values if isinstance(v, ValidationBlock)]
    if not pieces:
        return
    rows, cols, codes, scale = _join_codes(pieces)
    if rows.size == 0:
        return
    # Sorted distinct ids and positions by one O(n + max id) pass each, not a sort.
    seen = np.zeros(int(rows.max()) + 1, dtype=bool)
    seen[rows] = True
    ids = np.flatnonzero(seen)
    local = np.cumsum(seen, dtype=np.int32) - 1
    top = max([int(cols.max())] + [int(v.cols.max()) for v in val if v.nnz]) + 1
    used = np.zeros(top, dtype=bool)
    used[cols] = True
    for v in val:
        used[v.cols] = True
    position = np.cumsum(used, dtype=np.int32) - 1
    needed = np.flatnonzero(used)
    tiles = tiles_from_triples(
        rows,
        cols,
        codes,
        n_rows=ids.shape[0],
        n_cols=needed.shape[0],
        width=width,
        scale=scale,
        row_map=local,
        col_map=position,
    )
    del rows, cols, codes  # the block's joined pieces (a generator keeps its locals)
    side = Side(block, ids.astype(np.int32), tiles, needed)
    if val:
        v = val[0]
        side = dataclasses.replace(
            side,
            val_rows=np.searchsorted(ids, np.repeat(v.ids, v.counts())).astype(np.int64),
            val_cols=position[v.cols].astype(np.int64),
            val_vals=v.vals,
        )
    yield block, side


def transposed_pieces(item: tuple[int, Side], *, n_blocks: int) -> Iterator[tuple[int, blk.Piece]]:
    """A side's ratings with rows and columns swapped, split by destination block."""
    _, side = item
    for d, r, c, v in transposed_by_block(side.tiles, side.ids, side.needed, n_blocks):
        yield d, (r, c, v, side.tiles.scale)


def solve_side(side: Side, fixed: np.ndarray, params: Params) -> Solved:
    """Solve one prepared block against the fixed rows aligned with ``side.needed``."""
    x, sse, reg = solve_rows(
        side.tiles,
        fixed,
        global_mean=params.global_mean,
        reg_factors=params.reg_factors,
        reg_bias=params.reg_bias,
        weighted=params.weighted,
        reg_offset=params.reg_offset,
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
    stats = Stats(sse, side.tiles.nnz, reg, val_sse, val_n)
    return Solved(side.block, side.ids, x, stats)


def solve_broadcast(side_rdd: RDD, fixed: Any, params: Any) -> RDD:
    """Solve every block against the broadcast fixed table (indexed by global id) with
    ``params.solve`` (:class:`Params`, or another model's parameters with a ``solve``)."""

    def run(items: Iterator[tuple[int, Side]]) -> Iterator[tuple[int, Solved]]:
        table = fixed.value
        for block, side in items:
            yield block, params.solve(side, table[side.needed])

    return side_rdd.mapPartitions(run, preservesPartitioning=True)


def solve_routed(
    side_rdd: RDD, fixed_rdd: RDD, routes: RDD, params: Any, *, n_blocks: int, width: int
) -> RDD:
    """Route the fixed rows each block needs to it, then solve with ``params.solve`` (one
    shuffle of rows)."""
    messages = blk.route_rows(fixed_rdd, routes, n_blocks=n_blocks, rows_of=_rows_of)

    def run(block: int, values: list[Any]) -> Iterator[tuple[int, Solved]]:
        sides = [v for v in values if isinstance(v, Side)]
        if not sides:
            return
        pieces = [v for v in values if isinstance(v, blk.RoutedRows)]
        fixed = blk.gather_rows(sides[0].needed, pieces, n_blocks=n_blocks, width=width)
        yield block, params.solve(sides[0], fixed)

    return blk.zip_blocks([side_rdd, messages], run, n_blocks=n_blocks)


def initial_rows(
    block: int, values: list[Any], *, rank: int, seed: int, std: float, width: int | None = None
) -> Iterator[tuple[int, Solved]]:
    """Starting [factors, bias] rows of a block (``width`` columns, default rank + 1; rows
    of factors only when it is ``rank``); biases from (idx, bias) tuples if any."""
    sides = [v for v in values if isinstance(v, Side)]
    if not sides:
        return
    ids = sides[0].ids
    rows = np.zeros((ids.shape[0], rank + 1 if width is None else width))
    rows[:, :rank] = init_factors(ids, rank=rank, seed=seed, std=std)
    pairs = [v for v in values if isinstance(v, tuple)]
    if pairs:
        idx = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        bias = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
        pos = np.searchsorted(ids, idx)
        ok = pos < ids.shape[0]
        ok[ok] = ids[pos[ok]] == idx[ok]
        rows[pos[ok], rank] = bias[ok]
    yield block, Solved(block, ids, rows, Stats())


class SideSummary(NamedTuple):
    """What the driver learns about one prepared block (one small collect per side)."""

    rows: int  # entities in the block
    nnz: int  # ratings
    total: float  # sum of the ratings (for μ)
    max_id: int  # largest global index, -1 if none
    validation: int  # validation ratings held
    finite: bool  # every rating is finite


def side_summary(item: tuple[int, Side]) -> SideSummary:
    """The :class:`SideSummary` of a ``(block id, Side)`` pair."""
    _, s = item
    return SideSummary(
        int(s.ids.shape[0]),
        s.tiles.nnz,
        float(s.tiles.values().sum()),
        int(s.ids.max()) if s.ids.size else -1,
        int(s.val_vals.shape[0]) if s.val_vals is not None else 0,
        bool(np.isfinite(s.tiles.codes).all()),
    )


class SummaryParam(AccumulatorParam):
    """An accumulator of ``{block id: SideSummary}``, merged by block: a task that runs
    again (a retry, or a cached block rebuilt) reports the same summary for the same block,
    so the merged value does not depend on how often a block was built."""

    def zero(self, value: dict[int, SideSummary]) -> dict[int, SideSummary]:
        return {}

    def addInPlace(
        self, value1: dict[int, SideSummary], value2: dict[int, SideSummary]
    ) -> dict[int, SideSummary]:
        value1.update(value2)
        return value1


def summarised(
    make: Callable[[int, list[Any]], Iterator[tuple[int, Side]]], summaries: Accumulator
) -> Callable[[int, list[Any]], Iterator[tuple[int, Side]]]:
    """``make`` (e.g. :func:`make_side`) reporting the :func:`side_summary` of every side
    it yields to ``summaries`` (of :class:`SummaryParam`), so the driver learns the sides'
    sizes from the job that builds and caches them, without a job that reads every cached
    block back into Python (at the ml-32m shape that took 0.26-0.27 s of task time per
    side of four blocks, in the event logs of two fits)."""

    def run(block: int, values: list[Any]) -> Iterator[tuple[int, Side]]:
        for item in make(block, values):
            summaries.add({item[0]: side_summary(item)})
            yield item

    return run


def validation_blocks(
    ratings: DataFrame,
    validation: DataFrame,
    *,
    bias: BiasModel | None,
    lo: float,
    hi: float,
    n_blocks: int,
) -> tuple[RDD, Stats]:
    """Validation pairs of trained users and movies as movie blocks (persisted
    ``(block id, Block)``, rows = movies); the error of the other pairs, scored by the bias
    fallback (which does not change), as a constant :class:`Stats`.

    ``ratings``: the training ratings (user_idx, movie_idx); ``validation``: user_id,
    movie_id, user_idx, movie_idx, rating. Action: one aggregation when ``bias`` is given.
    """
    require_columns(
        validation, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage="als validation"
    )
    ku, km = "_als_known_user", "_als_known_movie"
    users = ratings.select(USER_IDX).distinct().withColumn(ku, F.lit(True))
    movies = ratings.select(MOVIE_IDX).distinct().withColumn(km, F.lit(True))
    flagged = (
        validation.select(USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING)
        .join(users, USER_IDX, "left")
        .join(movies, MOVIE_IDX, "left")
    )
    known = F.col(ku).isNotNull() & F.col(km).isNotNull()
    val_blocks = blk.build_blocks(
        flagged.where(known), row_col=MOVIE_IDX, col_col=USER_IDX, n_blocks=n_blocks
    )
    unknown = Stats()
    if bias is not None:
        err = F.col(RATING) - clip(F.col(BIAS_PREDICTION), lo, hi)
        row = (
            bias.annotate(flagged.where(~known))
            .agg(F.sum(err * err).alias("sse"), F.count(F.lit(1)).alias("n"))
            .first()
        )
        unknown = Stats(val_sse=float(row["sse"] or 0.0), val_n=int(row["n"]))
    else:
        _logger.info(
            "als: no bias model given, so validation RMSE covers only pairs of trained "
            "users and movies"
        )
    return val_blocks, unknown
