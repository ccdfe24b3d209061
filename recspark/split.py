"""Deterministic train/test splits.

Every split depends only on the rows' values and the seed, never on partitioning or
row order, so the same seed gives the same split on every run and cluster size:

- ``random``: each rating to test with probability ``test_fraction`` (a hash of the pair)
- ``leave_last_out``: each user's latest rating to test
- ``kfold``: each rating to one of K folds by a hash of the pair; fold f is the test part
- ``temporal``: every rating at or after a global time cut-off to test
- ``stratified``: per user, ``floor(test_fraction · n_u)`` ratings (chosen by hash) to test,
  so every test user keeps at least one training rating
"""

from __future__ import annotations

import datetime

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.config import SPLIT_KINDS, SplitConfig
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
    is_test = _pair_hash(seed) < F.lit(int(test_fraction * _BUCKETS))
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


def _pair_hash(seed: int):
    """A uniform draw in [0, 2^30) that is a pure function of (user, movie, seed)."""
    return F.pmod(F.xxhash64(F.col(USER_ID), F.col(MOVIE_ID), F.lit(seed)), F.lit(_BUCKETS))


def kfold_split(
    ratings: DataFrame, *, folds: int, fold: int, seed: int
) -> tuple[DataFrame, DataFrame]:
    """(train, test) of fold ``fold`` in 0..folds-1: a rating is in fold
    ``xxhash64(user_id, movie_id, seed) mod folds``, so the K test parts of one seed are
    disjoint and together hold every rating exactly once (sizes ≈ n / K, binomially)."""
    if folds < 2 or not 0 <= fold < folds:
        raise ConfigError(f"k-fold split needs folds >= 2 and 0 <= fold < folds, got {fold}/{folds}")
    require_columns(ratings, [USER_ID, MOVIE_ID], stage="kfold_split")
    is_test = F.pmod(_pair_hash(seed), F.lit(folds)) == F.lit(fold)
    return ratings.where(~is_test), ratings.where(is_test)


def temporal_cutoff(ratings: DataFrame, *, test_fraction: float) -> int:
    """The timestamp (seconds) at the (1 − ``test_fraction``) quantile of ``ratings``'
    timestamps (exact). Action: one quantile job."""
    require_columns(ratings, [TIMESTAMP], stage="temporal_cutoff")
    found = ratings.approxQuantile(TIMESTAMP, [1.0 - test_fraction], 0.0)
    if not found:
        raise ConfigError("temporal split: the ratings are empty")
    return int(found[0])


def temporal_split(ratings: DataFrame, *, cutoff: int) -> tuple[DataFrame, DataFrame]:
    """(train, test): ratings with ``timestamp < cutoff`` (seconds) train, the rest test.
    Users and movies first seen after the cut-off are in test only (the bias fallback
    scores them)."""
    require_columns(ratings, [TIMESTAMP], stage="temporal_split")
    is_test = F.col(TIMESTAMP) >= F.lit(int(cutoff))
    return ratings.where(~is_test), ratings.where(is_test)


def stratified_split(
    ratings: DataFrame, *, test_fraction: float, seed: int
) -> tuple[DataFrame, DataFrame]:
    """Per user u with n_u ratings, the ``floor(test_fraction · n_u)`` ratings with the
    smallest ``xxhash64(user_id, movie_id, seed)`` (ties by movie id) go to test. Since
    test_fraction < 1 every user keeps at least one training rating; users with fewer than
    1 / test_fraction ratings stay wholly in train."""
    require_columns(ratings, [USER_ID, MOVIE_ID], stage="stratified_split")
    by_user = Window.partitionBy(USER_ID)
    ranked = ratings.withColumn(
        "_pos", F.row_number().over(by_user.orderBy(_pair_hash(seed), F.col(MOVIE_ID)))
    ).withColumn("_n", F.count(F.lit(1)).over(by_user))
    is_test = F.col("_pos") <= F.floor(F.col("_n") * F.lit(test_fraction))
    return (
        ranked.where(~is_test).drop("_pos", "_n"),
        ranked.where(is_test).drop("_pos", "_n"),
    )


def _cutoff_seconds(date: str) -> int:
    """Midnight UTC of a YYYY-MM-DD date, in epoch seconds."""
    day = datetime.date.fromisoformat(date)
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.timezone.utc).timestamp())


def split_config(cfg: SplitConfig, kind: str) -> SplitConfig:
    """``cfg`` with its kind set to ``kind``; ConfigError for an unknown kind."""
    return cfg.replace(kind=kind)


def split_ratings(ratings: DataFrame, *, cfg: SplitConfig, seed: int) -> tuple[DataFrame, DataFrame]:
    """The split named by ``cfg.kind`` (module docstring); ``kfold`` is fold 0 of
    round(1 / test_fraction) folds, ``temporal`` cuts at ``cfg.cutoff`` or, when empty, at
    the (1 − test_fraction) timestamp quantile (an action)."""
    if cfg.kind == "random":
        return random_split(ratings, test_fraction=cfg.test_fraction, seed=seed)
    if cfg.kind == "leave_last_out":
        return leave_last_out(ratings)
    if cfg.kind == "kfold":
        folds = max(2, round(1.0 / cfg.test_fraction))
        return kfold_split(ratings, folds=folds, fold=0, seed=seed)
    if cfg.kind == "temporal":
        cutoff = (
            _cutoff_seconds(cfg.cutoff) if cfg.cutoff
            else temporal_cutoff(ratings, test_fraction=cfg.test_fraction)
        )
        return temporal_split(ratings, cutoff=cutoff)
    if cfg.kind == "stratified":
        return stratified_split(ratings, test_fraction=cfg.test_fraction, seed=seed)
    raise ConfigError(f"split.kind must be one of {', '.join(SPLIT_KINDS)}, got {cfg.kind!r}")
