"""Ratings: rounding, exact shape, values and times, the planted biases, Spark frame = file."""

from __future__ import annotations

import numpy as np
import pandas as pd
from chispa import assert_df_equality

from recspark.schema import BIAS, MOVIE_ID, N_RATINGS, RATINGS_SCHEMA, USER_ID
from recspark.synthetic.plan import FIRST_TIMESTAMP, HALF_STARS_FROM, LAST_TIMESTAMP, plan_synthetic
from recspark.synthetic.ratings import ratings_frame, round_rating
from tests.synthetic.conftest import read_ratings

HALF_GRID = np.arange(1, 11) / 2.0


def test_round_rating_whole_and_half_stars():
    x = np.array([-1.0, 0.74, 0.76, 1.2, 3.24, 3.26, 3.74, 4.8, 7.0])
    assert round_rating(x, np.ones(x.size, bool)).tolist() == [
        0.5, 0.5, 1.0, 1.0, 3.0, 3.5, 3.5, 5.0, 5.0]
    assert round_rating(x, np.zeros(x.size, bool)).tolist() == [
        1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 4.0, 5.0, 5.0]


def test_ratings_shape_is_exact(small):
    out, cfg, summary = small
    r = read_ratings(out)
    movies = pd.read_csv(out / "movies.csv")
    assert len(r) == 12_000 == summary.ratings
    assert sorted(r.userId.unique()) == list(range(1, 301))
    assert r.groupby("userId").size().min() >= cfg.generate.min_user_ratings
    assert not r.duplicated(["userId", "movieId"]).any()
    assert len(movies) == 200 and movies.movieId.is_unique
    assert movies.movieId.max() > 200  # ids have gaps, like MovieLens
    assert set(r.movieId) <= set(movies.movieId)
    # MovieLens order: by user, then movie.
    assert r.equals(r.sort_values(["userId", "movieId"], ignore_index=True))


def test_ratings_values_and_times(small):
    r = read_ratings(small[0])
    assert set(r.rating.unique()) <= set(HALF_GRID)
    assert r.timestamp.between(FIRST_TIMESTAMP, LAST_TIMESTAMP).all()
    early = r[r.timestamp < HALF_STARS_FROM]
    assert len(early) > 0 and (early.rating % 1 == 0).all()  # no half stars before 2003
    top2 = r.rating.value_counts().index[:2]
    assert set(top2) == {3.0, 4.0}
    assert 3.3 < r.rating.mean() < 3.8


def test_popularity_and_activity_are_heavy_tailed(small):
    r = read_ratings(small[0])
    per_movie = r.groupby("movieId").size().sort_values(ascending=False)
    top_share = per_movie.iloc[:20].sum() / len(r)  # top 10% of the 200 movies
    assert top_share > 0.3
    per_user = r.groupby("userId").size()
    assert per_user.max() >= 2 * per_user.median()


def test_planted_biases_show_in_the_ratings(small):
    out = small[0]
    r = read_ratings(out)
    movies = pd.read_parquet(out / "_truth" / "movies")
    users = pd.read_parquet(out / "_truth" / "users")
    assert users[N_RATINGS].tolist() == r.groupby("userId").size().sort_index().tolist()

    stats = r.groupby("movieId").rating.agg(["mean", "size"])
    stats = stats[stats["size"] >= 30].join(movies.set_index(MOVIE_ID)[BIAS])
    assert len(stats) >= 30
    assert np.corrcoef(stats["mean"], stats[BIAS])[0, 1] > 0.8

    by_user = r.groupby("userId").rating.mean().to_frame("mean").join(users.set_index(USER_ID)[BIAS])
    assert np.corrcoef(by_user["mean"], by_user[BIAS])[0, 1] > 0.7


def test_ratings_frame_is_what_was_written(spark, small):
    out, cfg, _ = small
    plan = plan_synthetic(cfg.generate, seed=cfg.seed)
    generated = ratings_frame(spark, plan, seed=cfg.seed, partitions=3)
    assert generated.schema == RATINGS_SCHEMA
    written = spark.read.csv(str(out / "ratings.csv"), header=True, schema=RATINGS_SCHEMA)
    assert_df_equality(generated, written, ignore_nullable=True)
