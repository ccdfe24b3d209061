"""The sparse ratings matrix of the neighbourhood models, and Spark tasks over its column blocks.

:func:`collect_matrix` gathers (row id, column id, value) triples to the driver as a SciPy
CSC matrix (rows × columns, entities as columns: users × movies for item-item statistics,
movies × users for user-user), with rows that hold more than ``max_row_entries`` entries
sampled down to that many (seeded): a row with n entries costs n² co-rated pairs, so
capping the heaviest users (the top ml-32m user has ~33k ratings, 10⁹ pairs alone) bounds
the work while every column keeps the entries of ordinary rows. Memory: 12 bytes per
entry (int32 row, float64 value), 32M ratings ≈ 400 MB, never a dense matrix.

:func:`map_column_blocks` broadcasts the matrix once and runs a NumPy function on every
block of columns in a Spark task (one task per block, ``mapInArrow``): the block's
statistics against all columns are a sparse product, (block × columns) cells at a time,
so there is no all-pairs cross join and no dense rows × columns matrix anywhere.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import types as T

_logger = logging.getLogger(__name__)

_BLOCK = "_column_block"


@dataclass(frozen=True)
class SparseMatrix:
    """``matrix`` (rows × columns CSC, float64) with the ids of its rows and columns
    (ascending) and the number of entries dropped by the row cap."""

    row_ids: np.ndarray
    col_ids: np.ndarray
    matrix: sp.csc_matrix
    capped: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape


def cap_rows(rows: np.ndarray, max_entries: int, *, seed: int) -> np.ndarray:
    """Boolean mask keeping, for every row index in ``rows``, a uniform random sample
    (seeded) of at most ``max_entries`` of its positions; all when ``max_entries`` < 1."""
    keep = np.ones(rows.size, dtype=bool)
    if max_entries < 1 or rows.size == 0:
        return keep
    key = np.random.default_rng(seed).random(rows.size)
    order = np.lexsort((key, rows))
    sorted_rows = rows[order]
    first = np.searchsorted(sorted_rows, sorted_rows, side="left")
    keep[order[np.arange(rows.size) - first >= max_entries]] = False
    return keep


def from_triples(
    row_ids: np.ndarray, col_ids: np.ndarray, values: np.ndarray, *, max_row_entries: int = 0,
    seed: int = 0,
) -> SparseMatrix:
    """The :class:`SparseMatrix` of (row id, column id, value) triples (one per cell)."""
    rows_u, rows = np.unique(row_ids, return_inverse=True)
    cols_u, cols = np.unique(col_ids, return_inverse=True)
    keep = cap_rows(rows, max_row_entries, seed=seed)
    matrix = sp.csc_matrix(
        (np.asarray(values, dtype=np.float64)[keep], (rows[keep], cols[keep])),
        shape=(rows_u.size, cols_u.size),
    )
    return SparseMatrix(rows_u, cols_u, matrix, capped=int((~keep).sum()))


def collect_matrix(
    df: DataFrame, *, row_col: str, col_col: str, value_col: str, max_row_entries: int = 0,
    seed: int = 0,
) -> SparseMatrix:
    """The triples of ``df`` (``row_col``, ``col_col`` integer ids, ``value_col``) as a
    :class:`SparseMatrix` on the driver. Action: one collect (Arrow)."""
    pdf = df.select(row_col, col_col, value_col).toPandas()
    m = from_triples(
        pdf[row_col].to_numpy(np.int64), pdf[col_col].to_numpy(np.int64),
        pdf[value_col].to_numpy(np.float64), max_row_entries=max_row_entries, seed=seed,
    )
    if m.capped:
        _logger.info(
            "capped rows at %d entries: %d of %d entries sampled out", max_row_entries,
            m.capped, m.capped + m.matrix.nnz,
        )
    return m


def block_width(n_columns: int, max_cells: int) -> int:
    """Columns per block so that a (block × n_columns) dense array holds ≤ ``max_cells``."""
    return max(1, min(n_columns, max_cells // max(n_columns, 1)))


def _block_task(
    batches: Iterator[pa.RecordBatch], *, data: Broadcast, width: int,
    fn: Callable[[Any, np.ndarray], pa.RecordBatch], prepare: Callable[[sp.csc_matrix], Any] | None,
) -> Iterator[pa.RecordBatch]:
    matrix: sp.csc_matrix = data.value
    n = matrix.shape[1]
    shared = prepare(matrix) if prepare is not None else matrix
    for batch in batches:
        for b in batch.column(0).to_numpy():
            cols = np.arange(int(b) * width, min((int(b) + 1) * width, n), dtype=np.int64)
            yield fn(shared, cols)


def map_column_blocks(
    spark, matrix: sp.csc_matrix, fn: Callable[[sp.csc_matrix, np.ndarray], pa.RecordBatch],
    schema: T.StructType, *, max_cells: int, prepare: Callable[[sp.csc_matrix], Any] | None = None,
) -> DataFrame:
    """Run ``fn(matrix, cols)`` for every block of consecutive column positions ``cols`` in
    a Spark task and return the union of the Arrow batches it yields (``schema``).

    Blocks hold :func:`block_width` columns, so a dense (block × columns) statistic stays
    under ``max_cells`` cells. The matrix is broadcast once. ``prepare``: called once per
    task on the matrix, and ``fn`` gets its result instead of the matrix (derived forms
    every block needs, e.g. a CSR copy, built once rather than per block). Lazy.
    """
    width = block_width(matrix.shape[1], max_cells)
    n_blocks = -(-matrix.shape[1] // width)
    _logger.info(
        "%d column block(s) of %d × %d columns (%d entries)", n_blocks, width, matrix.shape[1],
        matrix.nnz,
    )
    data = spark.sparkContext.broadcast(matrix)
    # a few blocks per task: each Python worker unpickles the broadcast once, not per block
    tasks = min(n_blocks, 4 * spark.sparkContext.defaultParallelism)
    blocks = spark.range(0, n_blocks, 1, numPartitions=tasks).toDF(_BLOCK)
    return blocks.mapInArrow(
        functools.partial(_block_task, data=data, width=width, fn=fn, prepare=prepare), schema
    )
