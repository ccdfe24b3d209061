"""Descriptive statistics of a ratings table, as small DataFrames, plus their PNG plots.

All stages are lazy ``DataFrame -> DataFrame`` transforms over ratings with ``user_id``,
``movie_id``, ``rating`` and ``timestamp``; their results are tiny (tens to a few hundred
rows) and are written as Parquet by the ingest pipeline. The plot helpers take those small
results as pandas frames.

- :func:`summary`: counts of ratings, users and movies; min / median / max ratings per user
  and per movie (exact medians: for an even count, the mean of the two middle values);
  first and last timestamp; mean rating.
- :func:`rating_histogram`: number of ratings per rating value.
- :func:`rank_frequency`: the rank-frequency (Zipf) curve of users or movies: sorted by
  number of ratings, descending, rank r = 1..n against count(r). Power-law activity shows as
  a straight line on log-log axes. The curve is downsampled to log-spaced ranks.
"""

from __future__ import annotations

import logging
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

from recspark.plots import save_figure  # noqa: E402
from recspark.schema import (  # noqa: E402
    METRIC,
    MOVIE_ID,
    N_RATINGS,
    RANK,
    RANK_FREQUENCY_SCHEMA,
    RATING,
    TIMESTAMP,
    USER_ID,
    VALUE,
    require_columns,
)

_logger = logging.getLogger(__name__)

# Metric names of :func:`summary`, in output order.
RATINGS = "ratings"
USERS = "users"
MOVIES = "movies"
USER_RATINGS_MIN = "user_ratings_min"
USER_RATINGS_MEDIAN = "user_ratings_median"
USER_RATINGS_MAX = "user_ratings_max"
MOVIE_RATINGS_MIN = "movie_ratings_min"
MOVIE_RATINGS_MEDIAN = "movie_ratings_median"
MOVIE_RATINGS_MAX = "movie_ratings_max"
FIRST_TIMESTAMP = "first_timestamp"
LAST_TIMESTAMP = "last_timestamp"
RATING_MEAN = "rating_mean"

_ENTITIES = "_entities"  # working column of rank_frequency


def activity(ratings: DataFrame, *, key: str) -> DataFrame:
    """Ratings per ``key`` (``user_id`` or ``movie_id``): columns ``key``, ``n_ratings``."""
    require_columns(ratings, [key], stage="activity")
    return ratings.groupBy(key).agg(F.count(F.lit(1)).alias(N_RATINGS))


def summary(ratings: DataFrame) -> DataFrame:
    """One (``metric``, ``value``) row per figure (schema.SUMMARY_SCHEMA), values as doubles.

    Metrics: ratings, users, movies, user_ratings_{min,median,max},
    movie_ratings_{min,median,max}, first_timestamp, last_timestamp (epoch seconds),
    rating_mean. Three aggregations (all ratings, per user, per movie) joined as one row.
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, RATING, TIMESTAMP], stage="summary")

    def spread(key: str, prefix: str) -> DataFrame:
        n = F.col(N_RATINGS)
        return activity(ratings, key=key).agg(
            F.count(F.lit(1)).alias(prefix),
            F.min(n).alias(f"{prefix}_ratings_min"),
            F.median(n).alias(f"{prefix}_ratings_median"),
            F.max(n).alias(f"{prefix}_ratings_max"),
        )

    totals = ratings.agg(
        F.count(F.lit(1)).alias(RATINGS),
        F.min(TIMESTAMP).alias(FIRST_TIMESTAMP),
        F.max(TIMESTAMP).alias(LAST_TIMESTAMP),
        F.avg(RATING).alias(RATING_MEAN),
    )
    row = totals.crossJoin(spread(USER_ID, "user")).crossJoin(spread(MOVIE_ID, "movie"))
    row = row.withColumnsRenamed({"user": USERS, "movie": MOVIES})
    order = [
        RATINGS, USERS, MOVIES,
        USER_RATINGS_MIN, USER_RATINGS_MEDIAN, USER_RATINGS_MAX,
        MOVIE_RATINGS_MIN, MOVIE_RATINGS_MEDIAN, MOVIE_RATINGS_MAX,
        FIRST_TIMESTAMP, LAST_TIMESTAMP, RATING_MEAN,
    ]  # fmt: skip
    pairs = F.array(
        *[
            F.struct(F.lit(name).alias(METRIC), F.col(name).cast(T.DoubleType()).alias(VALUE))
            for name in order
        ]
    )
    return row.select(F.explode(pairs).alias("_m")).select(f"_m.{METRIC}", f"_m.{VALUE}")


def rating_histogram(ratings: DataFrame) -> DataFrame:
    """Ratings per rating value: ``rating``, ``n_ratings``, ordered by rating."""
    require_columns(ratings, [RATING], stage="rating_histogram")
    return ratings.groupBy(RATING).agg(F.count(F.lit(1)).alias(N_RATINGS)).orderBy(RATING)


def _kept_ranks(last: int, points_per_decade: int) -> np.ndarray:
    """Ranks 1..last that start a new bucket floor(points_per_decade · log10 r), plus rank 1
    and the last rank (every rank when ``points_per_decade <= 0``)."""
    ranks = np.arange(1, last + 1, dtype=np.int64)
    if points_per_decade <= 0 or last == 0:
        return ranks
    bucket = np.floor(np.log10(ranks) * points_per_decade)
    keep = np.ones(last, dtype=bool)
    keep[1:] = bucket[1:] > bucket[:-1]
    keep[-1] = True
    return ranks[keep]


def rank_frequency(ratings: DataFrame, *, key: str, points_per_decade: int = 20) -> DataFrame:
    """The rank-frequency curve of ``key``: ``rank`` (1 = most ratings), ``n_ratings``.

    Entities are ranked by number of ratings, descending. The curve keeps rank 1, the last
    rank, and the first rank of every log bucket floor(points_per_decade * log10 r), so it
    has about points_per_decade points per decade of ranks (every rank up to ~10 at the
    default 20) however many entities there are. ``points_per_decade <= 0`` keeps every
    rank. The number of ratings at rank r is the r-th largest count whatever the order of
    ties, so it is read from the count of entities per number of ratings (a table of a few
    thousand rows, collected: an action) by a search over its cumulative sums, with no
    ranking window (which would run in one task).
    """
    per_count = (
        activity(ratings, key=key)
        .groupBy(N_RATINGS)
        .agg(F.count(F.lit(1)).alias(_ENTITIES))
        .toPandas()
        .sort_values(N_RATINGS, ascending=False)
    )
    ends = np.cumsum(per_count[_ENTITIES].to_numpy(dtype=np.int64))  # last rank of each count
    ranks = _kept_ranks(int(ends[-1]) if len(ends) else 0, points_per_decade)
    counts = per_count[N_RATINGS].to_numpy(dtype=np.int64)[np.searchsorted(ends, ranks)]
    curve = pd.DataFrame({RANK: ranks, N_RATINGS: counts})
    return ratings.sparkSession.createDataFrame(curve, RANK_FREQUENCY_SCHEMA)


def plot_rating_histogram(
    spark: SparkSession, histogram: pd.DataFrame, path: str, *, title: str
) -> None:
    """Bar chart of a :func:`rating_histogram` result (as pandas), saved as PNG at ``path``."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.4 if len(histogram) > 1 and histogram[RATING].diff().min() < 1 else 0.8
    ax.bar(histogram[RATING], histogram[N_RATINGS], width=width)
    ax.set_xticks(histogram[RATING])
    ax.set_title(title)
    ax.set_xlabel("rating")
    ax.set_ylabel("number of ratings")
    ax.grid(True, axis="y", alpha=0.3)
    save_figure(spark, fig, path)


def plot_rank_frequency(
    spark: SparkSession, curves: Mapping[str, pd.DataFrame], path: str, *, title: str
) -> None:
    """Log-log rank-frequency curves (label -> :func:`rank_frequency` as pandas) as PNG."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, curve in curves.items():
        ax.plot(curve[RANK], curve[N_RATINGS], marker="o", markersize=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("rank (1 = most ratings)")
    ax.set_ylabel("number of ratings")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    save_figure(spark, fig, path)
