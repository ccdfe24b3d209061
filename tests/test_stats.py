"""Ingest statistics on a tiny hand-checked ratings table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark import stats as st
from recspark.schema import (
    METRIC,
    MOVIE_ID,
    N_RATINGS,
    RANK,
    RATING,
    RATING_HISTOGRAM_SCHEMA,
    TIMESTAMP,
    USER_ID,
    VALUE,
)

# user -> number of ratings: 1:3, 2:1, 3:2, 4:4, 5:1  (sorted 1,1,2,3,4: median 2)
# movie -> number of ratings: 10:5, 20:3, 30:2, 40:1  (sorted 1,2,3,5: median 2.5)
ROWS = [
    (1, 10, 4.0, 100), (1, 20, 3.5, 200), (1, 30, 4.0, 300),
    (2, 10, 5.0, 50),
    (3, 10, 4.0, 400), (3, 20, 1.0, 500),
    (4, 10, 2.0, 600), (4, 20, 4.0, 700), (4, 30, 0.5, 800), (4, 40, 4.0, 900),
    (5, 10, 3.0, 1000),
]  # fmt: skip


@pytest.fixture()
def ratings(spark: SparkSession):
    return spark.createDataFrame(ROWS, "user_id long, movie_id long, rating double, timestamp long")


def test_summary_by_hand(ratings) -> None:
    got = dict(zip(*st.summary(st.profile(ratings))[[METRIC, VALUE]].to_numpy().T))
    assert got == pytest.approx(
        {
            st.RATINGS: 11, st.USERS: 5, st.MOVIES: 4,
            st.USER_RATINGS_MIN: 1, st.USER_RATINGS_MEDIAN: 2, st.USER_RATINGS_MAX: 4,
            st.MOVIE_RATINGS_MIN: 1, st.MOVIE_RATINGS_MEDIAN: 2.5, st.MOVIE_RATINGS_MAX: 5,
            st.FIRST_TIMESTAMP: 50, st.LAST_TIMESTAMP: 1000,
            st.RATING_MEAN: 35 / 11,  # five 4.0s + 3.5 + 5 + 1 + 2 + 0.5 + 3
        }
    )  # fmt: skip


def test_rating_histogram_by_hand(spark: SparkSession, ratings) -> None:
    expected = spark.createDataFrame(
        [(0.5, 1), (1.0, 1), (2.0, 1), (3.0, 1), (3.5, 1), (4.0, 5), (5.0, 1)],
        RATING_HISTOGRAM_SCHEMA,
    )
    got = spark.createDataFrame(st.rating_histogram(st.profile(ratings)), RATING_HISTOGRAM_SCHEMA)
    assert_df_equality(got, expected, ignore_nullable=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summary_equals_spark_aggregates_on_random_ratings(spark: SparkSession, seed) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 300))
    rows = [
        (int(rng.integers(1, 40)), int(rng.integers(1, 25)), float(rng.integers(1, 11)) / 2,
         int(rng.integers(0, 10**9)))
        for _ in range(n)
    ]  # fmt: skip
    df = spark.createDataFrame(rows, "user_id long, movie_id long, rating double, timestamp long")
    got = dict(zip(*st.summary(st.profile(df))[[METRIC, VALUE]].to_numpy().T))
    users = df.groupBy(USER_ID).count().agg(F.count("*"), F.min("count"), F.median("count"),
                                            F.max("count")).first()
    movies = df.groupBy(MOVIE_ID).count().agg(F.count("*"), F.min("count"), F.median("count"),
                                              F.max("count")).first()
    totals = df.agg(F.count("*"), F.min("timestamp"), F.max("timestamp"), F.avg("rating")).first()
    assert got == pytest.approx({
        st.RATINGS: totals[0], st.USERS: users[0], st.USER_RATINGS_MIN: users[1],
        st.USER_RATINGS_MEDIAN: users[2], st.USER_RATINGS_MAX: users[3],
        st.MOVIES: movies[0], st.MOVIE_RATINGS_MIN: movies[1],
        st.MOVIE_RATINGS_MEDIAN: movies[2], st.MOVIE_RATINGS_MAX: movies[3],
        st.FIRST_TIMESTAMP: totals[1], st.LAST_TIMESTAMP: totals[2], st.RATING_MEAN: totals[3],
    }, rel=1e-12)  # fmt: skip


def test_rank_frequency_small_keeps_every_rank(ratings) -> None:
    p = st.profile(ratings)
    movies = st.rank_frequency(p.movies)
    assert list(zip(movies[RANK], movies[N_RATINGS])) == [(1, 5), (2, 3), (3, 2), (4, 1)]
    users = st.rank_frequency(p.users, points_per_decade=0)
    assert users[N_RATINGS].tolist() == [4, 3, 2, 1, 1]


def test_rank_frequency_is_downsampled_to_log_spaced_ranks(spark: SparkSession) -> None:
    # 1000 users; user u has ceil(1000 / u) ratings (a Zipf-like curve, 7,485 rows).
    n, k = 1000, 5
    counts = {u: math.ceil(n / u) for u in range(1, n + 1)}
    ratings = (
        spark.range(1, n + 1)
        .withColumnRenamed("id", USER_ID)
        .withColumn(MOVIE_ID, F.explode(F.sequence(F.lit(1), F.ceil(F.lit(n) / F.col(USER_ID)))))
        .withColumn(RATING, F.lit(4.0))
        .withColumn(TIMESTAMP, F.lit(0))
    )
    got = st.rank_frequency(st.profile(ratings).users, points_per_decade=k)
    curve = [{RANK: r, N_RATINGS: c} for r, c in zip(got[RANK], got[N_RATINGS])]
    ranked = sorted(counts.values(), reverse=True)
    keep = [
        r for r in range(1, n + 1)
        if r in (1, n) or math.floor(math.log10(r) * k) > math.floor(math.log10(r - 1) * k)
    ]  # fmt: skip
    assert [(row[RANK], row[N_RATINGS]) for row in curve] == [(r, ranked[r - 1]) for r in keep]
    assert 15 <= len(keep) <= 25  # about k points per decade over 3 decades, not 1000
