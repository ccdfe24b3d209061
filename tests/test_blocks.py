import numpy as np
import pytest
import scipy.sparse as sp

from recspark.blocks import (
    BLOCKS_PER_CORE,
    build_blocks,
    encode_values,
    resolve_blocks,
    split_by_block,
)
from recspark.schema import MOVIE_IDX, RATING, USER_IDX


def test_blocks_hold_every_rating_in_csr_form(spark):
    rows = [(0, 2, 4.0), (0, 0, 3.0), (1, 1, 5.0), (2, 0, 1.0), (2, 2, 2.5), (4, 1, 3.5)]
    df = spark.createDataFrame(rows, [USER_IDX, MOVIE_IDX, RATING])
    blocks = dict(build_blocks(df, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=2).collect())

    assert sorted(blocks) == [0, 1]
    even = blocks[0]  # users 0, 2, 4
    np.testing.assert_array_equal(even.ids, [0, 2, 4])
    np.testing.assert_array_equal(even.indptr, [0, 2, 4, 5])
    np.testing.assert_array_equal(even.cols, [0, 2, 0, 2, 1])
    np.testing.assert_array_equal(even.vals, [3.0, 4.0, 1.0, 2.5, 3.5])
    np.testing.assert_array_equal(blocks[1].ids, [1])

    dense = np.zeros((5, 3))
    for b in blocks.values():
        dense[b.ids] = b.csr(3).toarray()
    expected = sp.coo_matrix(
        ([r[2] for r in rows], ([r[0] for r in rows], [r[1] for r in rows])), shape=(5, 3)
    ).toarray()
    np.testing.assert_array_equal(dense, expected)


@pytest.mark.parametrize("vals_dtype", [np.uint8, np.float32, np.float64])
def test_split_by_block_equals_a_stable_sort_by_destination(vals_dtype):
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 1000, 5000)
    cols = rng.integers(0, 300, rows.size).astype(np.int32)
    vals = rng.integers(0, 10, rows.size).astype(vals_dtype)
    n_blocks = 7
    want = [np.flatnonzero(rows % n_blocks == d) for d in range(n_blocks)]  # in input order

    pieces = list(split_by_block(rows, cols, vals, n_blocks))

    assert [d for d, *_ in pieces] == list(range(n_blocks))
    for (d, r, c, v), sel in zip(pieces, want):
        np.testing.assert_array_equal(r, rows[sel])
        np.testing.assert_array_equal(c, cols[sel])
        np.testing.assert_array_equal(v, vals[sel])
        assert (r.dtype, c.dtype, v.dtype) == (rows.dtype, cols.dtype, vals.dtype)
    assert list(split_by_block(rows[:0], cols[:0], vals[:0], 3)) == []
    assert [d for d, *_ in split_by_block(np.array([4, 1]), np.array([0, 0]), np.array([1, 2]), 3)] == [1]


@pytest.mark.parametrize(
    "movie, value",
    [(2, 0.3), (2, -1.0), (2, 200.0), (1 << 24, 4.0), ((1 << 31) - 1, 127.5)],
    ids=["off-grid", "negative", "beyond-a-byte", "wide-columns", "largest-index"],
)
def test_ratings_of_any_value_and_index_arrive_exactly(spark, movie, value):
    # Half-star values travel as byte codes, others as float32 or float64 (one such rating
    # is enough): the blocks hold the same ratings either way.
    rows = [(0, 0, 3.0), (1, 1, 5.0), (2, movie, value), (3, 1, 2.5)]
    df = spark.createDataFrame(rows, f"{USER_IDX} int, {MOVIE_IDX} int, {RATING} double")
    blocks = dict(build_blocks(df, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=2).collect())
    got = sorted(
        (int(u), int(c), float(v))
        for b in blocks.values()
        for u, c, v in zip(b.ids[b.row_of_value()], b.cols, b.vals)
    )
    assert got == sorted(rows)


@pytest.mark.parametrize("column", [USER_IDX, MOVIE_IDX, RATING])
def test_null_ratings_are_refused(spark, column):
    values = {USER_IDX: 1, MOVIE_IDX: 2, RATING: 3.0, column: None}
    df = spark.createDataFrame(
        [(0, 0, 4.0), (values[USER_IDX], values[MOVIE_IDX], values[RATING])],
        f"{USER_IDX} int, {MOVIE_IDX} int, {RATING} double",
    )
    with pytest.raises(Exception, match=f"column {column} has 1 null values"):  # in the task
        build_blocks(df, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=2).count()


def test_block_rdd_is_partitioned_by_block_id(spark):
    df = spark.createDataFrame([(u, u % 3, 1.0) for u in range(12)], [USER_IDX, MOVIE_IDX, RATING])
    rdd = build_blocks(df, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=3)
    per_partition = rdd.glom().map(lambda kvs: [k for k, _ in kvs]).collect()
    assert per_partition == [[0], [1], [2]]


def test_values_are_stored_in_the_narrowest_exact_encoding():
    codes, scale = encode_values(np.array([0.5, 5.0, 3.5, 127.5]))
    assert codes.dtype == np.uint8 and scale == 0.5
    np.testing.assert_array_equal(codes * scale, [0.5, 5.0, 3.5, 127.5])
    assert encode_values(np.array([0.25, -1.0]))[0].dtype == np.float32  # exact in float32
    assert encode_values(np.array([-0.5, 1.0]))[0].dtype == np.float32  # negative: not a star code
    codes, scale = encode_values(np.array([0.1, 2.0]))
    assert codes.dtype == np.float64 and scale == 1.0


def test_an_automatic_block_count_follows_the_cores_spark_reports(spark):
    sc = spark.sparkContext
    assert BLOCKS_PER_CORE == 2
    assert resolve_blocks(sc, 0) == 2 * sc.defaultParallelism
    assert resolve_blocks(sc, 7) == 7
    with pytest.raises(ValueError, match="0 .automatic. or positive"):
        resolve_blocks(sc, -1)
