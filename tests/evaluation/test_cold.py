"""RMSE over test movies with few training ratings."""

from __future__ import annotations

import math

import pytest

from recspark.evaluation.cold import cold_metrics


def test_cold_metrics_only_count_rarely_rated_movies(spark):
    train = spark.createDataFrame([(1, 10), (2, 10), (3, 10), (1, 20)], "user_id long, movie_id long")
    predicted = spark.createDataFrame(
        [(10, 4.0, 3.0), (20, 4.0, 2.0), (30, 1.0, 2.0)], "movie_id long, rating double, prediction double"
    )
    got = cold_metrics(predicted, train, below=3)  # movie 10 has 3 ratings: not cold
    assert got["rows@cold<3"] == 2
    assert got["rmse@cold<3"] == pytest.approx(math.sqrt((4 + 1) / 2))
    none = cold_metrics(predicted, train, below=1)
    assert none["rows@cold<1"] == 1  # movie 30: never rated
