"""Chunked, seeded generation inside Spark tasks, shared by every generated table.

The per-user and per-movie parameters (the plan, O(U·k + M·k) numbers) are computed on the
driver and broadcast. Owners (users, tagging users, ...) are cut into contiguous chunks of
about ``chunk_ratings`` rows; a DataFrame of chunk ids feeds ``mapInArrow``, and each chunk
is generated with NumPy from its own seed, so the output does not depend on how Spark
schedules tasks. Chunk ids reach the partitions in contiguous increasing runs, so a table
whose chunks are sorted comes out sorted.

A new generated table is one chunk function ``make(plan, chunk, *, seed) -> RecordBatch``
plus its bounds in the plan, handed to :func:`chunk_frame`.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Iterator, Protocol

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

if TYPE_CHECKING:
    from recspark.synthetic.plan import SyntheticPlan

class ChunkMaker(Protocol):
    """A chunk generator: the rows of chunk ``chunk`` of one table, from the plan and the
    root seed (it derives its own seed from both)."""

    def __call__(self, plan: SyntheticPlan, chunk: int, *, seed: int) -> pa.RecordBatch: ...


def chunk_bounds(counts: np.ndarray, per_chunk: int) -> np.ndarray:
    """Bounds b_0 = 0 < … < b_C = len(counts) cutting owners into runs of ~per_chunk items."""
    total = int(counts.sum())
    n_chunks = max(1, math.ceil(total / per_chunk))
    cum = np.cumsum(counts)
    cuts = np.searchsorted(cum, np.arange(1, n_chunks) * (total / n_chunks), side="right")
    return np.unique(np.concatenate([[0], cuts, [counts.size]])).astype(np.int64)


def broadcast_plan(spark: SparkSession, plan: SyntheticPlan | Broadcast) -> Broadcast:
    """``plan`` itself when it is already a broadcast, else a new broadcast of it."""
    return plan if isinstance(plan, Broadcast) else spark.sparkContext.broadcast(plan)


def _chunk_task(
    batches: Iterator[pa.RecordBatch], *, plan: Broadcast, seed: int, make: ChunkMaker
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: one output batch per chunk id in the input."""
    p = plan.value
    for batch in batches:
        for chunk in batch.column(0).to_numpy():
            yield make(p, int(chunk), seed=seed)


def chunk_frame(
    spark: SparkSession, plan: Broadcast, n_chunks: int, *, make: ChunkMaker,
    schema: T.StructType, seed: int, partitions: int,
) -> DataFrame:
    """Lazily generated rows of chunks 0..n_chunks-1, ``make(plan, chunk, seed=seed)`` each,
    in at most ``partitions`` tasks; an empty DataFrame of ``schema`` when there are no
    chunks. ``make`` must be a module-level function (pickled by reference). No action."""
    if n_chunks == 0:
        return spark.createDataFrame([], schema)
    # range() gives each partition a contiguous run of chunk ids, so output stays sorted.
    chunks = spark.range(0, n_chunks, 1, numPartitions=max(1, min(partitions, n_chunks)))
    task = functools.partial(_chunk_task, plan=plan, seed=seed, make=make)
    return chunks.mapInArrow(task, schema)
