"""Dense index tables and the stage that adds them to ratings, checked by hand."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.errors import ConfigError
from recspark.index import add_indices, by_block, movie_index, user_index
from recspark.schema import BLOCK_KEY, MOVIE_INDEX_SCHEMA, USER_BLOCK, USER_INDEX_SCHEMA


@pytest.fixture()
def ratings(spark: SparkSession):
    return spark.createDataFrame(
        [(30, 7, 4.0), (10, 5, 3.0), (20, 7, 2.5), (10, 100, 5.0), (30, 100, 1.0)],
        "user_id long, movie_id long, rating double",
    )


def test_index_tables_are_dense_and_ordered_by_id(spark: SparkSession, ratings) -> None:
    expected_users = spark.createDataFrame([(10, 0), (20, 1), (30, 2)], USER_INDEX_SCHEMA)
    expected_movies = spark.createDataFrame([(5, 0), (7, 1), (100, 2)], MOVIE_INDEX_SCHEMA)
    assert_df_equality(
        user_index(ratings), expected_users, ignore_nullable=True, ignore_row_order=True
    )
    assert_df_equality(
        movie_index(ratings), expected_movies, ignore_nullable=True, ignore_row_order=True
    )


def test_add_indices_and_user_block(spark: SparkSession, ratings) -> None:
    out = add_indices(
        ratings, users=user_index(ratings), movies=movie_index(ratings), user_blocks=2
    )
    expected = spark.createDataFrame(
        [
            (30, 7, 4.0, 2, 1, 0),
            (10, 5, 3.0, 0, 0, 0),
            (20, 7, 2.5, 1, 1, 1),
            (10, 100, 5.0, 0, 2, 0),
            (30, 100, 1.0, 2, 2, 0),
        ],
        "user_id long, movie_id long, rating double, user_idx int, movie_idx int, user_block int",
    )
    assert_df_equality(out, expected, ignore_nullable=True, ignore_row_order=True)


def test_add_indices_rejects_bad_block_count(ratings) -> None:
    with pytest.raises(ConfigError, match="user_blocks"):
        add_indices(ratings, users=user_index(ratings), movies=movie_index(ratings), user_blocks=0)


@pytest.mark.parametrize("blocks", [1, 8, 13])
def test_by_block_puts_each_block_alone_in_its_partition(spark: SparkSession, blocks) -> None:
    frame = spark.range(40 * blocks).select((F.col("id") % blocks).cast("int").alias(USER_BLOCK))
    parted = by_block(frame, blocks=blocks)
    assert parted.rdd.getNumPartitions() == blocks
    seen = parted.select(USER_BLOCK, F.spark_partition_id().alias("p")).distinct().collect()
    assert sorted((r[USER_BLOCK], r["p"]) for r in seen) == [(b, b) for b in range(blocks)]
    # An aggregation grouped by the key too reuses the partitioning: no second shuffle.
    plan = parted.groupBy(BLOCK_KEY, USER_BLOCK).count()._jdf.queryExecution().executedPlan()
    assert plan.toString().count("Exchange") == 1
