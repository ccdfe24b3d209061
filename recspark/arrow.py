"""Arrow helpers for the vectorised Spark tasks (``applyInArrow``, ``mapInArrow``).

Task bodies move whole columns between Arrow and NumPy: list columns (factor vectors, rated
movies) become an (offsets, flat values) pair or a dense matrix without a Python loop per row.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa


def list_values(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (n + 1,) int64 from 0, flat values) of an Arrow list column, as NumPy."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.offset != 0:  # a sliced list array: rebase so offsets index flat values
        arr = pa.concat_arrays([arr])
    offsets = arr.offsets.to_numpy().astype(np.int64)
    flat = arr.values.to_numpy(zero_copy_only=False)
    return offsets - offsets[0], flat[offsets[0] : offsets[-1]]


def list_array(matrix: np.ndarray) -> pa.ListArray:
    """The rows of an (n × k) float matrix as an Arrow list<double> array (k may be 0)."""
    n, k = matrix.shape
    return pa.ListArray.from_arrays(
        pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)),
        pa.array(np.ascontiguousarray(matrix, dtype=np.float64).ravel(), pa.float64()),
    )


def arrow_task(fn: Callable[[pa.Table], pa.Table]) -> Callable[[pa.Table], pa.Table]:
    """``fn`` as a plain function with real ``pa.Table`` annotations: ``applyInArrow`` infers
    its calling convention from them (a ``functools.partial`` has none, which PySpark 4.x
    fails on)."""

    def task(table: pa.Table) -> pa.Table:
        return fn(table)

    task.__annotations__ = {"table": pa.Table, "return": pa.Table}
    return task


def arrow_cogroup_task(
    fn: Callable[[pa.Table, pa.Table], pa.Table],
) -> Callable[[pa.Table, pa.Table], pa.Table]:
    """:func:`arrow_task` for a cogroup's ``applyInArrow``: ``fn(left, right)`` as a plain
    function of two annotated ``pa.Table`` arguments."""

    def task(left: pa.Table, right: pa.Table) -> pa.Table:
        return fn(left, right)

    task.__annotations__ = {"left": pa.Table, "right": pa.Table, "return": pa.Table}
    return task
