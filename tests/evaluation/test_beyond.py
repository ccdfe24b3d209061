from __future__ import annotations

import math

import pandas as pd
import pytest

from recspark.evaluation.beyond import (
    beyond_accuracy,
    metric_names,
    movie_popularity,
    popularity_percentiles,
)
from recspark.schema import MOVIE_ID, N_RATINGS, POPULARITY_PERCENTILE, SELF_INFORMATION

RECS = "user_id long, rank int, movie_id long"
A, B, C, D, E = 1, 2, 3, 4, 5
# Training: 4 users; A rated by all 4, B by 2, C, D and E by one each.
TRAIN = [(u, A) for u in (1, 2, 3, 4)] + [(1, B), (2, B), (3, C), (4, D), (2, E)]
MOVIES = [
    (A, "Action|Comedy"), (B, "Action"), (C, "Drama"), (D, "(no genres listed)"),
    (E, "Comedy|Action"),
]
# Lists at k = 3: user 1 [A, B]; user 2 [C, D] (A at rank 4 is cut); user 3 [B] (one
# movie: no ILD); user 4 [A, B, E].
LISTS = [
    (1, 1, A), (1, 2, B),
    (2, 1, C), (2, 2, D), (2, 4, A),
    (3, 1, B),
    (4, 1, A), (4, 2, B), (4, 3, E),
]


def test_percentiles_are_mid_ranks_of_the_counts():
    # counts 1, 1, 1, 2, 4 of five movies: P(1) = 1.5 / 5, P(2) = 3.5 / 5, P(4) = 4.5 / 5
    counts = pd.DataFrame({MOVIE_ID: [A, B, C, D, E], N_RATINGS: [4, 2, 1, 1, 1]})
    got = popularity_percentiles(counts).set_index(MOVIE_ID)[POPULARITY_PERCENTILE]
    assert got.to_dict() == pytest.approx({A: 0.9, B: 0.7, C: 0.3, D: 0.3, E: 0.3})


def test_movie_popularity_counts_users_and_self_information(spark):
    train = spark.createDataFrame(TRAIN + [(1, A)], "user_id long, movie_id long")  # a repeat
    got = movie_popularity(train).toPandas().set_index(MOVIE_ID)
    assert got[N_RATINGS].to_dict() == {A: 4, B: 2, C: 1, D: 1, E: 1}
    assert got[SELF_INFORMATION].to_dict() == pytest.approx({A: 0.0, B: 1.0, C: 2.0, D: 2.0, E: 2.0})


def test_movie_popularity_of_distinct_pairs_counts_rows(spark):
    # the same counts without the repeat; with it, the caller's promise is broken and the
    # repeated pair counts twice (what distinct_pairs=True documents)
    clean = spark.createDataFrame(TRAIN, "user_id long, movie_id long")
    got = movie_popularity(clean, distinct_pairs=True).toPandas().set_index(MOVIE_ID)
    assert got[N_RATINGS].to_dict() == {A: 4, B: 2, C: 1, D: 1, E: 1}
    assert got[SELF_INFORMATION].to_dict() == pytest.approx({A: 0.0, B: 1.0, C: 2.0, D: 2.0, E: 2.0})
    repeated = spark.createDataFrame(TRAIN + [(1, A)], "user_id long, movie_id long")
    assert movie_popularity(repeated, distinct_pairs=True).where(f"{MOVIE_ID} = {A}").first()[N_RATINGS] == 5


def test_beyond_accuracy_equals_hand_computed_values(spark):
    train = spark.createDataFrame(TRAIN, "user_id long, movie_id long")
    lists = spark.createDataFrame(LISTS, RECS)
    movies = spark.createDataFrame(MOVIES, "movie_id long, genres string")

    got = beyond_accuracy(lists, k=3, popularity=movie_popularity(train), movies=movies)

    ild, novelty, popularity = metric_names(3)
    assert (ild, novelty, popularity) == ("ild@3", "novelty@3", "popularity_bias@3")
    # cosine of genre sets: sim(A, B) = 1/√2, sim(A, E) = 1, sim(B, E) = 1/√2; D has none
    r = 1 / math.sqrt(2)
    expected_ild = ((1 - r) + 1.0 + (1 - (r + 1 + r) / 3)) / 3  # users 1, 2, 4
    # self-information A 0, B 1, C/D/E 2 bits; percentiles A 0.9, B 0.7, C/D/E 0.3
    expected_novelty = (0.5 + 2.0 + 1.0 + 1.0) / 4
    expected_popularity = (0.8 + 0.3 + 0.7 + (0.9 + 0.7 + 0.3) / 3) / 4
    assert got == pytest.approx(
        {ild: expected_ild, novelty: expected_novelty, popularity: expected_popularity}
    )


def test_without_movies_the_diversity_is_nan(spark):
    train = spark.createDataFrame(TRAIN, "user_id long, movie_id long")
    lists = spark.createDataFrame(LISTS, RECS)
    got = beyond_accuracy(lists, k=3, popularity=movie_popularity(train), movies=None)
    assert math.isnan(got["ild@3"]) and got["novelty@3"] == pytest.approx(1.125)
