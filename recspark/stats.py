"""Descriptive statistics of a ratings table, as small pandas tables, plus their PNG plots.

One pass of three aggregations over ratings with ``user_id``, ``movie_id``, ``rating`` and
``timestamp`` gives a :class:`Profile` (ratings per rating value, and how many users and how
many movies have each number of ratings: tables of a few thousand rows at most); every
statistic below is computed from it in pandas, with no further Spark job. The results are
tiny and are written as Parquet by the ingest pipeline; the plot helpers take them too.

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
from dataclasses import dataclass
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from recspark.plots import save_figure  # noqa: E402
from recspark.schema import (  # noqa: E402
    METRIC,
    MOVIE_ID,
    N_RATINGS,
    RANK,
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

_ENTITIES = "entities"  # users (or movies) with a given number of ratings
_SUMMARY_ORDER = (
    RATINGS, USERS, MOVIES,
    USER_RATINGS_MIN, USER_RATINGS_MEDIAN, USER_RATINGS_MAX,
    MOVIE_RATINGS_MIN, MOVIE_RATINGS_MEDIAN, MOVIE_RATINGS_MAX,
    FIRST_TIMESTAMP, LAST_TIMESTAMP, RATING_MEAN,
)  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """Three small tables every statistic of this module is read from (pandas):

    - ``by_value``: ``rating``, ``n_ratings``, ``first_timestamp``, ``last_timestamp`` per
      rating value, ascending by rating;
    - ``users`` / ``movies``: ``n_ratings``, ``entities`` (how many users, or movies, have
      exactly that many ratings), descending by ``n_ratings``.
    """

    by_value: pd.DataFrame
    users: pd.DataFrame
    movies: pd.DataFrame


def activity(ratings: DataFrame, *, key: str) -> DataFrame:
    """Ratings per ``key`` (``user_id`` or ``movie_id``): columns ``key``, ``n_ratings``."""
    require_columns(ratings, [key], stage="activity")
    return ratings.groupBy(key).agg(F.count(F.lit(1)).alias(N_RATINGS))


def _count_of_counts(ratings: DataFrame, key: str) -> pd.DataFrame:
    return (
        activity(ratings, key=key)
        .groupBy(N_RATINGS)
        .agg(F.count(F.lit(1)).alias(_ENTITIES))
        .toPandas()
        .sort_values(N_RATINGS, ascending=False, ignore_index=True)
    )


def profile(ratings: DataFrame) -> Profile:
    """The :class:`Profile` of ``ratings`` (``user_id``, ``movie_id``, ``rating``,
    ``timestamp``). Actions: three aggregations, each collecting a table of at most a few
    thousand rows (one row per rating value, or per distinct number of ratings)."""
    require_columns(ratings, [USER_ID, MOVIE_ID, RATING, TIMESTAMP], stage="profile")
    by_value = (
        ratings.groupBy(RATING)
        .agg(
            F.count(F.lit(1)).alias(N_RATINGS),
            F.min(TIMESTAMP).alias(FIRST_TIMESTAMP),
            F.max(TIMESTAMP).alias(LAST_TIMESTAMP),
        )
        .toPandas()
        .sort_values(RATING, ignore_index=True)
    )
    return Profile(
        by_value, _count_of_counts(ratings, USER_ID), _count_of_counts(ratings, MOVIE_ID)
    )


def profile_from_counts(
    by_value: pd.DataFrame, user_counts: np.ndarray, movie_counts: np.ndarray
) -> Profile:
    """The :class:`Profile` of ratings known by parts, what :func:`profile` gives for the
    same ratings: ``by_value`` rows (``rating``, ``n_ratings``, ``first_timestamp``,
    ``last_timestamp``) of several parts, a rating value in several rows merged (counts
    summed, first and last timestamps the min and max); ``user_counts`` and
    ``movie_counts``: the number of ratings of every user and movie (zeros are ignored:
    e.g. a movie bincount). For a job that already holds the ratings in NumPy (the Arrow
    ingest's write tasks), so no aggregation pass over the written table is needed."""
    merged = (
        by_value.groupby(RATING, as_index=False)
        .agg({N_RATINGS: "sum", FIRST_TIMESTAMP: "min", LAST_TIMESTAMP: "max"})
        .astype({N_RATINGS: "int64", FIRST_TIMESTAMP: "int64", LAST_TIMESTAMP: "int64"})
        .sort_values(RATING, ignore_index=True)
    )
    return Profile(merged, _counts_table(user_counts), _counts_table(movie_counts))


def _counts_table(counts: np.ndarray) -> pd.DataFrame:
    """``n_ratings``, ``entities`` of per-entity counts (zeros dropped), descending."""
    values, entities = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)
    keep = values > 0
    table = pd.DataFrame({N_RATINGS: values[keep], _ENTITIES: entities[keep].astype(np.int64)})
    return table.sort_values(N_RATINGS, ascending=False, ignore_index=True)


def _spread(counts: pd.DataFrame) -> tuple[int, float, float, float]:
    """(entities, min, median, max) of the per-entity rating counts, from their count of
    counts; the median is exact (for an even number, the mean of the two middle values)."""
    ascending = counts.sort_values(N_RATINGS)
    values = ascending[N_RATINGS].to_numpy(dtype=np.int64)
    ends = np.cumsum(ascending[_ENTITIES].to_numpy(dtype=np.int64))  # last 1-based position
    n = int(ends[-1]) if ends.size else 0
    if n == 0:
        return 0, np.nan, np.nan, np.nan
    lower = values[np.searchsorted(ends, (n + 1) // 2)]  # the ⌈n/2⌉-th smallest
    upper = values[np.searchsorted(ends, n // 2 + 1)]  # the (⌊n/2⌋ + 1)-th smallest
    return n, float(values[0]), (lower + upper) / 2, float(values[-1])


def summary(p: Profile) -> pd.DataFrame:
    """One (``metric``, ``value``) row per figure (schema.SUMMARY_SCHEMA), values as floats.

    Metrics: ratings, users, movies, user_ratings_{min,median,max},
    movie_ratings_{min,median,max}, first_timestamp, last_timestamp (epoch seconds),
    rating_mean (Σ value · n_value / Σ n_value over the rating values).
    """
    v = p.by_value
    n = int(v[N_RATINGS].sum())
    users, movies = _spread(p.users), _spread(p.movies)
    figures = {
        RATINGS: n,
        USERS: users[0], USER_RATINGS_MIN: users[1], USER_RATINGS_MEDIAN: users[2],
        USER_RATINGS_MAX: users[3],
        MOVIES: movies[0], MOVIE_RATINGS_MIN: movies[1], MOVIE_RATINGS_MEDIAN: movies[2],
        MOVIE_RATINGS_MAX: movies[3],
        FIRST_TIMESTAMP: v[FIRST_TIMESTAMP].min() if n else np.nan,
        LAST_TIMESTAMP: v[LAST_TIMESTAMP].max() if n else np.nan,
        RATING_MEAN: float((v[RATING] * v[N_RATINGS]).sum() / n) if n else np.nan,
    }  # fmt: skip
    return pd.DataFrame(
        {METRIC: list(_SUMMARY_ORDER), VALUE: [float(figures[m]) for m in _SUMMARY_ORDER]}
    )


def rating_histogram(p: Profile) -> pd.DataFrame:
    """Ratings per rating value: ``rating``, ``n_ratings``, ascending by rating."""
    return p.by_value[[RATING, N_RATINGS]].copy()


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


def rank_frequency(counts: pd.DataFrame, *, points_per_decade: int = 20) -> pd.DataFrame:
    """The rank-frequency curve of users or movies from their count of counts
    (``Profile.users`` or ``Profile.movies``): ``rank`` (1 = most ratings), ``n_ratings``.

    Entities are ranked by number of ratings, descending. The curve keeps rank 1, the last
    rank, and the first rank of every log bucket floor(points_per_decade * log10 r), so it
    has about points_per_decade points per decade of ranks (every rank up to ~10 at the
    default 20) however many entities there are. ``points_per_decade <= 0`` keeps every
    rank. The number of ratings at rank r is the r-th largest count whatever the order of
    ties, so it is read by a search over the cumulative sums of the count of counts, with
    no ranking window (which would run in one Spark task).
    """
    ordered = counts.sort_values(N_RATINGS, ascending=False)
    ends = np.cumsum(ordered[_ENTITIES].to_numpy(dtype=np.int64))  # last rank of each count
    ranks = _kept_ranks(int(ends[-1]) if len(ends) else 0, points_per_decade)
    values = ordered[N_RATINGS].to_numpy(dtype=np.int64)[np.searchsorted(ends, ranks)]
    return pd.DataFrame({RANK: ranks, N_RATINGS: values})


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
