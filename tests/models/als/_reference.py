"""Shared fixtures of the ALS tests: a small matrix, and NumPy references written out densely,
one row at a time, straight from the normal equations in :mod:`recspark.models.als.kernel`,
so a mistake in the vectorised/distributed code shows up as a mismatch."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from pyspark.sql import types as T

from recspark.index import add_indices, movie_index, user_index
from recspark.io.ingested import read_ratings_csv
from recspark.models.als import AlsConfig
from recspark.models.bias import BiasModel
from recspark.schema import BIAS, FACTORS, MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX

SEED = 7
RANK = 3
N_USERS, N_MOVIES = 12, 9


def small_matrix() -> tuple[np.ndarray, np.ndarray]:
    """A 12 x 9 ratings matrix, ~55% observed, every row and column non-empty."""
    rng = np.random.default_rng(3)
    mask = rng.random((N_USERS, N_MOVIES)) < 0.55
    mask[np.arange(N_USERS), np.arange(N_USERS) % N_MOVIES] = True
    ratings = np.where(mask, rng.integers(1, 11, (N_USERS, N_MOVIES)) / 2.0, 0.0)
    return ratings, mask


def ratings_frame(spark, ratings: np.ndarray, mask: np.ndarray):
    """user_id = idx + 100, movie_id = idx + 500; only observed cells."""
    rows = [
        (int(u) + 100, int(i) + 500, int(u), int(i), float(ratings[u, i]))
        for u, i in zip(*np.nonzero(mask))
    ]
    return spark.createDataFrame(rows, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING])


def dense_step(
    ratings: np.ndarray, mask: np.ndarray, fixed: np.ndarray, *, mu: float, cfg: AlsConfig
) -> np.ndarray:
    """Reference half-step for the rows of ``ratings``: one dense solve per row.

    fixed: (columns, k+1) = [factors, bias] of the other side. Returns (rows, k+1).
    """
    k = fixed.shape[1] - 1
    y = np.hstack([fixed[:, :k], np.ones((fixed.shape[0], 1))])
    lam = np.diag([cfg.reg_factors] * k + [cfg.reg_bias])
    out = np.zeros((ratings.shape[0], k + 1))
    for u in range(ratings.shape[0]):
        cols = np.flatnonzero(mask[u])
        target = ratings[u, cols] - mu - fixed[cols, k]
        scale = cols.size if cfg.weighted_reg else 1.0
        a = y[cols].T @ y[cols] + scale * lam
        out[u] = np.linalg.solve(a, y[cols].T @ target)
    return out


def dense_objective(ratings, mask, users, items, *, mu, cfg) -> tuple[float, float]:
    """(training RMSE, objective J) of users/items = [factors, bias] rows."""
    k = users.shape[1] - 1
    pred = mu + users[:, [k]] + items[:, k][None, :] + users[:, :k] @ items[:, :k].T
    sse = float(((ratings - pred)[mask] ** 2).sum())
    penalty = 0.0
    for table, counts in ((users, mask.sum(1)), (items, mask.sum(0))):
        scale = counts if cfg.weighted_reg else np.ones_like(counts)
        penalty += float(
            (scale * (cfg.reg_factors * (table[:, :k] ** 2).sum(1) + cfg.reg_bias * table[:, k] ** 2)).sum()
        )
    return math.sqrt(sse / mask.sum()), sse + penalty


def table_of(df, idx_col: str, n: int, rank: int) -> np.ndarray:
    """Collect a factor table into an (n, rank+1) array [factors, bias] by index."""
    out = np.full((n, rank + 1), np.nan)
    for row in df.select(idx_col, FACTORS, BIAS).collect():
        out[row[0], :rank] = row[1]
        out[row[0], rank] = row[2]
    return out


def hand_bias_model(spark, *, movie_bias: dict[int, float], user_bias: dict[int, float], mu: float):
    schema_u = T.StructType([T.StructField(USER_ID, T.LongType()), T.StructField(BIAS, T.DoubleType())])
    schema_i = T.StructType([T.StructField(MOVIE_ID, T.LongType()), T.StructField(BIAS, T.DoubleType())])
    return BiasModel(
        mu,
        spark.createDataFrame(list(user_bias.items()), schema_u),
        spark.createDataFrame(list(movie_bias.items()), schema_i),
    )


def load_sample(spark, sample_dir: Path):
    """ml-latest-small with dense indices, read with an explicit schema."""
    ratings = read_ratings_csv(spark, str(sample_dir)).select(USER_ID, MOVIE_ID, RATING)
    indexed = add_indices(ratings, users=user_index(ratings), movies=movie_index(ratings), user_blocks=1)
    return indexed.select(USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING)

