"""Cutting owners into chunks and generating chunks inside Spark tasks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.schema import TAGS_SCHEMA
from recspark.synthetic.chunks import chunk_bounds, chunk_frame


def test_chunk_bounds_cut_near_equal_runs():
    assert chunk_bounds(np.array([5, 5, 5, 5]), 10).tolist() == [0, 2, 4]
    # 30 items in 3 chunks: each cut after the last owner whose running total is ≤ 10, ≤ 20.
    assert chunk_bounds(np.array([4, 4, 4, 4, 4, 10]), 10).tolist() == [0, 2, 5, 6]
    assert chunk_bounds(np.array([100]), 10).tolist() == [0, 1]  # one owner is never split


def test_chunk_frame_runs_every_chunk_once_in_order(spark):
    arrow = to_arrow_schema(TAGS_SCHEMA)

    def make(plan, chunk, *, seed):  # a closure, so Spark ships it by value
        ids = pa.array([plan * 100 + chunk, seed], pa.int64())
        return pa.RecordBatch.from_arrays([ids, ids, pa.array(["a", "b"]), ids], schema=arrow)

    plan = spark.sparkContext.broadcast(7)
    df = chunk_frame(spark, plan, 5, make=make, schema=TAGS_SCHEMA, seed=3, partitions=2)
    assert [r.user_id for r in df.collect()] == [700, 3, 701, 3, 702, 3, 703, 3, 704, 3]
    empty = chunk_frame(spark, plan, 0, make=make, schema=TAGS_SCHEMA, seed=3, partitions=2)
    assert empty.schema == TAGS_SCHEMA and empty.count() == 0
