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

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark import RDD, SparkContext, StorageLevel
from pyspark.rdd import Partitioner
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.arrow import record_batches
from recspark.schema import RATING, require_columns

R = TypeVar("R")


#: Blocks per core Spark reports when a block count is left to recspark (0).
BLOCKS_PER_CORE = 2


def resolve_blocks(sc: SparkContext, blocks: int) -> int:
    """The number of blocks to use: ``blocks`` when positive; for 0 (automatic)
    ``BLOCKS_PER_CORE`` × ``sc.defaultParallelism`` (the cores Spark reports at the time
    of the call: ``spark.default.parallelism`` when set, else the executors' cores), so a
    half-step keeps every core busy on any cluster, two waves to even out uneven blocks.
    Raises ValueError for a negative count."""
    if blocks < 0:
        raise ValueError(f"a block count must be 0 (automatic) or positive, got {blocks}")
    return blocks if blocks > 0 else BLOCKS_PER_CORE * sc.defaultParallelism


def block_key(block: int) -> int:
    """The partition function of every block RDD: block ``b`` lives in partition ``b``.

    One module-level function (not a fresh lambda per call) so that block RDDs built
    separately share one partitioner; :func:`zip_blocks` relies on that to combine them
    partition by partition without a shuffle.
    """
    return block


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


def _csr_block(block: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> Block:
    """A :class:`Block` from (row, col, value) triples in any order (sorted here)."""
    rows = rows.astype(np.int64)
    # One stable sort on a combined (row, col) key: the lexsort order, twice as fast.
    width = int(cols.max()) + 1 if cols.size else 1
    order = np.argsort(rows * width + cols, kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.flatnonzero(np.diff(rows, prepend=rows[:1] - 1)) if rows.size else rows
    ids = rows[starts]
    indptr = np.append(starts, rows.shape[0]).astype(np.int64)
    return Block(
        block,
        ids.astype(np.int32),
        indptr,
        cols.astype(np.int32),
        vals.astype(np.float64),
    )


#: Ratings a task gathers before splitting them into per-block pieces (bounds its memory).
_PIECE_ROWS = 1 << 20


def encode_values(vals: np.ndarray) -> tuple[np.ndarray, float]:
    """The narrowest exact encoding of ``vals``: (codes, scale) with vals = codes · scale.

    Half-star ratings become uint8 codes with scale 0.5 (1 byte per rating instead of
    8); other values float32 when that is exact, else float64 (scale 1).
    """
    vals = np.asarray(vals, dtype=np.float64)
    halves = vals * 2.0
    if vals.size and np.all((halves >= 0) & (halves <= 255)) and np.array_equal(halves, np.round(halves)):
        return halves.astype(np.uint8), 0.5
    narrow = vals.astype(np.float32)
    return (narrow if np.array_equal(narrow, vals) else vals), 1.0


def split_by_block(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_blocks: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(block, rows, cols, vals) pieces of the triples, one per destination ``rows % n``."""
    dest = rows % n_blocks
    # a narrow key makes NumPy's stable sort a radix sort
    order = np.argsort(dest.astype(np.int16) if n_blocks < 2**15 else dest, kind="stable")
    bounds = np.searchsorted(dest[order], np.arange(n_blocks + 1))
    for d in range(n_blocks):
        sel = order[bounds[d] : bounds[d + 1]]
        if sel.size:
            yield d, rows[sel], cols[sel], vals[sel]


#: What is shuffled: (rows int32, cols int32, value codes, scale), see :func:`encode_values`.
Piece = tuple[np.ndarray, np.ndarray, np.ndarray, float]


def join_pieces(pieces: Sequence[Piece]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, float64 values) of all ``pieces``, concatenated."""
    rows = np.concatenate([p[0] for p in pieces])
    cols = np.concatenate([p[1] for p in pieces])
    vals = np.concatenate([p[2].astype(np.float64) * p[3] for p in pieces])
    return rows, cols, vals


def _assemble(block: int, pieces: list[Piece]) -> Iterator[tuple[int, Block]]:
    yield block, _csr_block(block, *join_pieces(pieces))


def _columns(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(rows, cols, codes, scale) of three columns (row, col, value): values encoded by
    :func:`encode_values`. Raises ValueError if a column has nulls."""
    for name in table.column_names:
        nulls = table.column(name).null_count
        if nulls:
            raise ValueError(
                f"build_blocks: column {name} has {nulls} null values; drop or fix those "
                "ratings first"
            )
    codes, scale = encode_values(table.column(2).to_numpy())
    return table.column(0).to_numpy(), table.column(1).to_numpy(), codes, scale


def block_pieces(
    ratings: DataFrame,
    *,
    row_col: str,
    col_col: str,
    n_blocks: int,
    value_col: str = RATING,
) -> RDD:
    """The ratings as ``(block, Piece)`` pairs, ``block = row % n_blocks``.

    Input columns: ``row_col``, ``col_col`` (dense 0-based integer indices below 2**31) and
    ``value_col``. Each task reads its ratings as Arrow batches
    (:func:`recspark.arrow.record_batches`) and splits them by destination block with NumPy,
    so what is later shuffled is a few large arrays per task (values in their narrowest
    exact encoding, :func:`encode_values`), not one record per rating; on this path three
    plain columns cost what one packed long per rating did (measured there). The result is
    not yet partitioned by block: :func:`zip_blocks` does that (the one shuffle of the
    ratings). Raises ValueError (in the task that meets it) if an input column has nulls.
    """
    require_columns(ratings, [row_col, col_col, value_col], stage="build_blocks")
    # 32-bit indices: a third less to convert to Arrow than longs.
    frame = ratings.select(
        F.col(row_col).cast("int").alias(row_col),
        F.col(col_col).cast("int").alias(col_col),
        F.col(value_col).cast("double").alias(value_col),
    )

    def split(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[int, Piece]]:
        buffered: list[pa.RecordBatch] = []
        size = 0

        def flush() -> Iterator[tuple[int, Piece]]:
            rows, cols, codes, scale = _columns(pa.Table.from_batches(buffered))
            for d, r, c, v in split_by_block(rows, cols, codes, n_blocks):
                yield d, (r, c, v, scale)

        for batch in batches:
            buffered.append(batch)
            size += batch.num_rows
            if size >= _PIECE_ROWS:
                yield from flush()
                buffered, size = [], 0
        if size:
            yield from flush()

    return record_batches(frame).mapPartitions(split)


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

    Returns a persisted pair RDD ``(block id, Block)`` with one block per partition
    (partition i holds block i); blocks with no rows are absent. The one shuffle of the
    ratings happens here (see :func:`block_pieces` for the input and its checks).
    """
    pieces = block_pieces(
        ratings, row_col=row_col, col_col=col_col, n_blocks=n_blocks, value_col=value_col
    )
    return (
        zip_blocks([pieces], _assemble, n_blocks=n_blocks)
        .persist(storage)
        .setName(f"blocks[{row_col}]")
    )


def assemble_rows(parts: Iterable[tuple[np.ndarray, np.ndarray]], out: np.ndarray) -> np.ndarray:
    """Write per-block results ``(ids, rows)`` into the matching rows of ``out`` (in place).

    Rows of ``out`` whose ids appear in no block keep their values.
    """
    for ids, rows in parts:
        out[ids] = rows
    return out


# --------------------------------------------------------------------------- block-wise joins
#
# The helpers below let block algorithms combine RDDs that are all keyed by block id and
# partitioned by :func:`block_key` *without a shuffle*: Spark unions RDDs that share a
# partitioner partition by partition (``PartitionerAwareUnionRDD``), so partition ``b`` of
# the union holds block ``b`` of every input. Only :func:`route_rows` shuffles, and what it
# moves is factor rows, never ratings.


def _identity(x: Any) -> Any:
    return x


def _aligned(rdd: RDD, n_blocks: int, *, for_union: bool = True) -> RDD:
    """``rdd`` partitioned by :func:`block_key` (and, ``for_union``, in the context's
    default serializer)."""
    if rdd.partitioner != Partitioner(n_blocks, block_key):
        rdd = rdd.partitionBy(n_blocks, block_key)
    if for_union and rdd._jrdd_deserializer != rdd.ctx.serializer:
        # Spark refuses to union differently serialized RDDs without re-serializing both;
        # one cheap identity pass here keeps the union partition-aware.
        rdd = rdd.mapPartitions(_identity, preservesPartitioning=True)
    return rdd


def zip_blocks(
    rdds: Sequence[RDD],
    fn: Callable[[int, list[Any]], Iterable[tuple[int, R]]],
    *,
    n_blocks: int,
    preserves_keys: bool = True,
) -> RDD:
    """Combine block-keyed RDDs block by block: ``fn(block, values)`` per block id.

    Every input is a pair RDD ``(block id, value)``. ``values`` lists the values of all
    inputs for that block, inputs in the order given (``fn`` tells them apart by type).
    ``fn`` returns ``(key, value)`` pairs; with ``preserves_keys`` (the default) every key
    must be the block id it was called with, and the result stays partitioned by
    :func:`block_key`, ready for another :func:`zip_blocks` without a shuffle. Inputs
    already partitioned by :func:`block_key` (e.g. from :func:`build_blocks`) are not
    moved; others are partitioned first.
    """
    aligned = [_aligned(rdd, n_blocks, for_union=len(rdds) > 1) for rdd in rdds]
    union = functools.reduce(lambda a, b: a.union(b), aligned)
    if union.getNumPartitions() != n_blocks:  # pragma: no cover - Spark invariant
        raise RuntimeError("zip_blocks: the inputs did not union partition by partition")

    def run(index: int, items: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, R]]:
        values = []
        for key, value in items:
            if key != index:
                raise ValueError(f"zip_blocks: key {key} found in partition {index}")
            values.append(value)
        if values:
            yield from fn(index, values)

    return union.mapPartitionsWithIndex(run, preservesPartitioning=preserves_keys)


@dataclass(frozen=True)
class RouteTable:
    """For one source block: the rows each destination block needs from it.

    ``positions[j]`` indexes the source block's own row order (its ``ids``) and lists,
    in increasing id order, the rows destination ``dests[j]`` needs. Built once by
    :func:`plan_routes` (MLlib's OutBlock); used every pass by :func:`route_rows`.
    """

    block: int
    dests: tuple[int, ...]
    positions: tuple[np.ndarray, ...]


@dataclass(frozen=True)
class RoutedRows:
    """Rows sent from source block ``source`` to one destination, in increasing id order."""

    source: int
    rows: np.ndarray


@dataclass(frozen=True)
class _Need:
    dest: int
    ids: np.ndarray


def plan_routes(
    needs: RDD,
    sources: RDD,
    *,
    n_blocks: int,
    storage: StorageLevel = StorageLevel.MEMORY_AND_DISK,
) -> RDD:
    """Which source rows every destination block needs, per (source, destination) pair.

    ``needs``: ``(destination block, sorted unique ids it needs)``; ``sources``:
    ``(source block, sorted ids of the rows it holds)``, where id ``e`` is held by block
    ``e % n_blocks``. Returns a persisted ``(source block, RouteTable)`` RDD partitioned
    by :func:`block_key`. Raises ``ValueError`` if a needed id is held by no block.
    One shuffle of id arrays, done once.
    """

    def split(item: tuple[int, np.ndarray]) -> Iterator[tuple[int, _Need]]:
        dest, ids = item
        owner = ids % n_blocks
        for s in range(n_blocks):
            sel = ids[owner == s]
            if sel.size:
                yield s, _Need(dest, sel)

    def locate(src: int, values: list[Any]) -> Iterator[tuple[int, RouteTable]]:
        held = [v for v in values if isinstance(v, np.ndarray)]
        wanted = sorted((v for v in values if isinstance(v, _Need)), key=lambda n: n.dest)
        if not wanted:
            return
        ids = held[0] if held else np.empty(0, dtype=np.int64)
        positions = []
        for need in wanted:
            pos = np.searchsorted(ids, need.ids)
            ok = pos < ids.shape[0]
            ok[ok] = ids[pos[ok]] == need.ids[ok]
            if not ok.all():
                missing = need.ids[~ok][:5].tolist()
                raise ValueError(
                    f"plan_routes: block {need.dest} needs ids {missing} that source block "
                    f"{src} does not hold"
                )
            positions.append(pos.astype(np.int64))
        yield src, RouteTable(src, tuple(n.dest for n in wanted), tuple(positions))

    return (
        zip_blocks([sources, needs.flatMap(split)], locate, n_blocks=n_blocks)
        .persist(storage)
        .setName("routes")
    )


def route_rows(
    values: RDD,
    routes: RDD,
    *,
    n_blocks: int,
    rows_of: Callable[[Any], np.ndarray] = _identity,
) -> RDD:
    """Send every destination block the source rows it needs (one shuffle of rows only).

    ``values``: ``(source block, V)`` partitioned by :func:`block_key`, where
    ``rows_of(V)`` is an array whose row ``j`` belongs to the source's ``ids[j]`` (the ids
    ``routes`` was planned on). Returns ``(destination block, RoutedRows)`` pairs
    partitioned by :func:`block_key`; :func:`gather_rows` assembles them.
    """

    def emit(src: int, vals: list[Any]) -> Iterator[tuple[int, RoutedRows]]:
        tables = [v for v in vals if isinstance(v, RouteTable)]
        payload = [v for v in vals if not isinstance(v, RouteTable)]
        if not tables or not payload:
            return
        rows = rows_of(payload[0])
        for dest, pos in zip(tables[0].dests, tables[0].positions):
            yield dest, RoutedRows(src, np.take(rows, pos, axis=0))

    return zip_blocks(
        [values, routes], emit, n_blocks=n_blocks, preserves_keys=False
    ).partitionBy(n_blocks, block_key)


def gather_rows(
    needed: np.ndarray, pieces: Iterable[RoutedRows], *, n_blocks: int, width: int = 0
) -> np.ndarray:
    """Assemble routed rows into one array aligned with ``needed`` (sorted unique ids).

    ``width`` is the row width returned when ``needed`` is empty. Raises ``ValueError`` if
    the pieces do not cover ``needed`` exactly.
    """
    if needed.shape[0] == 0:
        return np.empty((0, width))
    owner = needed % n_blocks
    out: np.ndarray | None = None
    filled = 0
    for piece in pieces:
        mask = owner == piece.source
        if int(mask.sum()) != piece.rows.shape[0]:
            raise ValueError(
                f"gather_rows: block {piece.source} sent {piece.rows.shape[0]} rows for "
                f"{int(mask.sum())} needed ids"
            )
        if out is None:
            out = np.empty((needed.shape[0],) + piece.rows.shape[1:], dtype=piece.rows.dtype)
        out[mask] = piece.rows
        filled += piece.rows.shape[0]
    if filled != needed.shape[0] or out is None:
        raise ValueError(f"gather_rows: received {filled} rows for {needed.shape[0]} needed ids")
    return out
