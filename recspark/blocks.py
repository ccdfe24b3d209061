"""Ratings partitioned once into compact per-block sparse arrays (the "in-blocks").

Block-wise algorithms (ALS, iterative SVD, NMF) shuffle the ratings exactly once: every
rating goes to the block of its row entity (``row_idx % n_blocks``), where the block's
ratings are held as a CSR matrix in NumPy arrays. The block RDD is partitioned by block
id and persisted, so later passes move only factors, never ratings.

A block of user rows stores, for its users in increasing index order, the movie
indices and values of their ratings: row ``j`` of the block is user ``ids[j]`` and its
ratings are ``cols[indptr[j]:indptr[j+1]]`` with values ``vals[...]`` (sorted by column).
The same structure with the roles swapped gives the movie blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.schema import RATING, require_columns

R = TypeVar("R")

_BLOCK_SCHEMA = "block int, ids binary, indptr binary, cols binary, vals binary"


@dataclass(frozen=True)
class Block:
    """One block of a ratings matrix in CSR form over global row and column indices."""

    block: int
    ids: np.ndarray  # int32 [n_rows]: global indices of the rows, increasing
    indptr: np.ndarray  # int64 [n_rows + 1]
    cols: np.ndarray  # int32 [nnz]: global column index of each value
    vals: np.ndarray  # float64 [nnz]

    @property
    def nnz(self) -> int:
        return int(self.vals.shape[0])

    def counts(self) -> np.ndarray:
        """Number of values in each row."""
        return np.diff(self.indptr)

    def row_of_value(self) -> np.ndarray:
        """Local row number (0..n_rows-1) of every value, aligned with ``cols``/``vals``."""
        return np.repeat(np.arange(self.ids.shape[0], dtype=np.int64), self.counts())

    def csr(self, n_cols: int, vals: np.ndarray | None = None) -> sp.csr_matrix:
        """The block as a SciPy CSR matrix [n_rows x n_cols] (optionally with other values)."""
        data = self.vals if vals is None else vals
        return sp.csr_matrix((data, self.cols, self.indptr), shape=(self.ids.shape[0], n_cols))

    def with_vals(self, vals: np.ndarray) -> "Block":
        """The same sparsity pattern with new values (e.g. residuals)."""
        return Block(self.block, self.ids, self.indptr, self.cols, vals)


def _pack(block: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> dict:
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    ids, counts = np.unique(rows, return_counts=True)
    indptr = np.zeros(ids.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return {
        "block": block,
        "ids": ids.astype(np.int32).tobytes(),
        "indptr": indptr.tobytes(),
        "cols": cols.astype(np.int32).tobytes(),
        "vals": vals.astype(np.float64).tobytes(),
    }


def _unpack(row) -> tuple[int, Block]:
    block = Block(
        int(row["block"]),
        np.frombuffer(row["ids"], dtype=np.int32),
        np.frombuffer(row["indptr"], dtype=np.int64),
        np.frombuffer(row["cols"], dtype=np.int32),
        np.frombuffer(row["vals"], dtype=np.float64),
    )
    return block.block, block


def build_blocks(
    ratings: DataFrame,
    *,
    row_col: str,
    col_col: str,
    n_blocks: int,
    value_col: str = RATING,
    storage: StorageLevel = StorageLevel.MEMORY_AND_DISK,
) -> RDD:
    """Partition ``ratings`` into ``n_blocks`` CSR blocks keyed by ``row_col % n_blocks``.

    Input columns: ``row_col``, ``col_col`` (dense 0-based integer indices) and
    ``value_col``. Returns a persisted pair RDD ``(block id, Block)`` with one block per
    partition (partition i holds block i); blocks with no rows are absent. The one shuffle
    of the ratings happens here; the grouping is vectorised per block (one pandas frame
    per block, no Python loop per rating).
    """
    require_columns(ratings, [row_col, col_col, value_col], stage="build_blocks")

    def pack(pdf: pd.DataFrame) -> pd.DataFrame:
        packed = _pack(
            int(pdf["_block"].iloc[0]),
            pdf[row_col].to_numpy(np.int64),
            pdf[col_col].to_numpy(np.int64),
            pdf[value_col].to_numpy(np.float64),
        )
        return pd.DataFrame([packed])

    packed = (
        ratings.select(
            F.pmod(F.col(row_col), F.lit(n_blocks)).cast("int").alias("_block"),
            F.col(row_col),
            F.col(col_col),
            F.col(value_col).cast("double").alias(value_col),
        )
        .groupBy("_block")
        .applyInPandas(pack, _BLOCK_SCHEMA)
    )
    return (
        packed.rdd.map(_unpack)
        .partitionBy(n_blocks, lambda b: b)
        .persist(storage)
        .setName(f"blocks[{row_col}]")
    )


def map_blocks(blocks: RDD, fn: Callable[[Block], R]) -> RDD:
    """Apply ``fn`` to every block, keeping the block id as key (``(block, fn(block))``)."""
    return blocks.mapValues(fn)


def assemble_rows(parts: Iterable[tuple[np.ndarray, np.ndarray]], out: np.ndarray) -> np.ndarray:
    """Write per-block results ``(ids, rows)`` into the matching rows of ``out`` (in place).

    Rows of ``out`` whose ids appear in no block keep their values.
    """
    for ids, rows in parts:
        out[ids] = rows
    return out
