"""Deterministic train/test splits.

Both splits depend only on the rows' values and the seed, never on partitioning or
row order, so the same seed gives the same split on every run and cluster size.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.config import SplitConfig
from recspark.errors import ConfigError
from recspark.schema import MOVIE_ID, TIMESTAMP, USER_ID, require_columns

_BUCKETS = 1 << 30


def random_split(
    ratings: DataFrame, *, test_fraction: float, seed: int
) -> tuple[DataFrame, DataFrame]:
    """Split ``ratings`` into (train, test) with ``test_fraction`` of rows in test.

    Each row's side is decided by ``xxhash64(user_id, movie_id, seed)``: a uniform draw
    that is a pure function of the pair, hence reproducible under any partitioning.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"split.test_fraction must be in (0, 1), got {test_fraction}")
    require_columns(ratings, [USER_ID, MOVIE_ID], stage="random_split")
    u = F.pmod(F.xxhash64(F.col(USER_ID), F.col(MOVIE_ID), F.lit(seed)), F.lit(_BUCKETS))
    is_test = u < F.lit(int(test_fraction * _BUCKETS))
    return ratings.where(~is_test), ratings.where(is_test)


def leave_last_out(ratings: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Per user, the latest rating (ties broken by the larger movie id) goes to test.

    Users with a single rating keep it in train, so every test user is known in training.
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, TIMESTAMP], stage="leave_last_out")
    w = Window.partitionBy(USER_ID).orderBy(F.col(TIMESTAMP).desc(), F.col(MOVIE_ID).desc())
    ranked = ratings.withColumn("_pos", F.row_number().over(w)).withColumn(
        "_n", F.count(F.lit(1)).over(Window.partitionBy(USER_ID))
    )
    is_test = (F.col("_pos") == 1) & (F.col("_n") > 1)
    return (
        ranked.where(~is_test).drop("_pos", "_n"),
        ranked.where(is_test).drop("_pos", "_n"),
    )


KINDS = ("random", "leave_last_out")


def split_config(cfg: SplitConfig, kind: str) -> SplitConfig:
    """``cfg`` with its kind set to ``kind``; ConfigError for an unknown kind."""
    if kind not in KINDS:
        raise ConfigError(f"unknown split kind {kind!r}: choose from {', '.join(KINDS)}")
    return cfg.replace(kind=kind)


def split_ratings(ratings: DataFrame, *, cfg: SplitConfig, seed: int) -> tuple[DataFrame, DataFrame]:
    """The split named by ``cfg.kind``: ``random`` or ``leave_last_out``."""
    if cfg.kind == "random":
        return random_split(ratings, test_fraction=cfg.test_fraction, seed=seed)
    if cfg.kind == "leave_last_out":
        return leave_last_out(ratings)
    raise ConfigError(f"split.kind must be 'random' or 'leave_last_out', got {cfg.kind!r}")
