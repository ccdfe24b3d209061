"""Similar movies against a brute-force NumPy cosine top-k."""

from __future__ import annotations

import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import types as T

from recspark.errors import ConfigError
from recspark.schema import (
    FACTORS,
    MOVIE_ID,
    RANK,
    SIMILAR_MOVIE_ID,
    SIMILAR_TITLE,
    TITLE,
)
from recspark.serving.similar import similar_movies, top_k_cosine, with_min_support, with_titles

_ITEMS = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(FACTORS, T.ArrayType(T.DoubleType(), False), False),
    ]
)


def _brute_force(ids: np.ndarray, factors: np.ndarray, k: int) -> list[tuple]:
    """Every pair's cosine the obvious way, then a full sort per movie."""
    rows = []
    for a in range(len(ids)):
        sims = []
        for b in range(len(ids)):
            if a != b:
                cos = factors[a] @ factors[b] / (
                    np.linalg.norm(factors[a]) * np.linalg.norm(factors[b])
                )
                sims.append((-cos, b))
        sims.sort()
        for r, (neg, b) in enumerate(sims[:k], start=1):
            rows.append((int(ids[a]), r, int(ids[b]), float(-neg)))
    return rows


def test_similar_movies_equal_brute_force_top_10(spark):
    gen = np.random.default_rng(7)
    n, rank = 57, 4
    ids = np.sort(gen.choice(np.arange(1, 1000), size=n, replace=False))
    factors = gen.normal(size=(n, rank))
    items = spark.createDataFrame(
        [(int(i), [float(x) for x in f]) for i, f in zip(ids, factors)], _ITEMS
    ).repartition(3)
    # block 10 over 57 movies: 6 tasks, the last one partial
    got = similar_movies(items, k=10, block=10)
    expected = spark.createDataFrame(_brute_force(ids, factors, 10), got.schema)
    assert got.count() == n * 10
    assert_approx_df_equality(
        got.orderBy(MOVIE_ID, RANK), expected.orderBy(MOVIE_ID, RANK), precision=1e-12
    )


def test_top_k_never_returns_self_and_handles_k_above_m():
    normed = np.array([[1.0, 0.0], [0.0, 1.0], [np.sqrt(0.5), np.sqrt(0.5)]])
    nbr, sim = top_k_cosine(normed, np.arange(3), k=10)
    assert nbr.shape == (3, 2)
    # row 0: row 2 (cos 0.707) before row 1 (cos 0)
    assert nbr.tolist() == [[2, 1], [2, 0], [0, 1]]
    np.testing.assert_allclose(sim[:, 0], [np.sqrt(0.5)] * 3)
    # chunking (one query row per chunk) gives the same answer
    nbr1, sim1 = top_k_cosine(normed, np.arange(3), k=10, max_chunk_cells=1)
    assert (nbr1 == nbr).all() and np.allclose(sim1, sim)


def test_with_titles_and_bad_k(spark):
    items = spark.createDataFrame([(1, [1.0, 0.0]), (2, [1.0, 1.0]), (3, [0.0, 1.0])], _ITEMS)
    movies = spark.createDataFrame(
        [(1, "A (1990)"), (2, "B (1991)"), (3, "C (1992)")], [MOVIE_ID, TITLE]
    )
    got = with_titles(similar_movies(items, k=1), movies).orderBy(MOVIE_ID)
    rows = [(r[MOVIE_ID], r[SIMILAR_MOVIE_ID], r[TITLE], r[SIMILAR_TITLE]) for r in got.collect()]
    assert rows == [(1, 2, "A (1990)", "B (1991)"), (2, 1, "B (1991)", "A (1990)"), (3, 2, "C (1992)", "B (1991)")]
    with pytest.raises(ConfigError, match="similar_k"):
        similar_movies(items, k=0)


def test_min_support_drops_rarely_rated_movies_as_queries_and_neighbours(spark):
    items = spark.createDataFrame(
        [(1, [1.0, 0.0]), (2, [1.0, 0.1]), (3, [0.0, 1.0]), (4, [1.0, 0.05])], _ITEMS
    )
    ratings = spark.createDataFrame(
        [(u, m) for m, n in ((1, 3), (2, 1), (3, 3), (4, 2)) for u in range(n)], ["user_id", MOVIE_ID]
    )
    kept = with_min_support(items, ratings, 2)
    assert sorted(r[MOVIE_ID] for r in kept.collect()) == [1, 3, 4]
    got = {(r[MOVIE_ID], r[RANK]): r[SIMILAR_MOVIE_ID] for r in similar_movies(kept, k=1).collect()}
    # without the filter movie 2 (one rating) would be movie 1's nearest neighbour
    assert got == {(1, 1): 4, (3, 1): 4, (4, 1): 1}
    assert with_min_support(items, ratings, 1) is items
