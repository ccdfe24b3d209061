"""Popularity: every user gets the most-rated training movies they have not rated.

    score(i) = |R(i)|, the number of training ratings of movie i

The score is the same for every user, so the model's scorer hands the top-N its one shared
order (:attr:`~recspark.models.contract.BlockScorer.shared_scores`): a list costs
O(n + rated) per user, not O(movies). Ties go to the smaller movie id, as in every top-N
list. It cannot predict ratings; it is the ranking baseline every personalised model is
compared with, and because its ranking needs nothing per user it ranks users it never
saw as well (re-scoring gives new users its lists).

Saved as ``counts/`` (movie_id, n_ratings), ``users/`` (user_id: the training users, who
get lists in a train run) and ``model.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.io import runs, storage
from recspark.models.contract import Ability, ModelSpec, RankingInputs, UserBlock
from recspark.schema import MOVIE_ID, N_RATINGS, USER_ID, require_columns

_logger = logging.getLogger(__name__)

NAME = "popularity"
MODEL_FORMAT = "recspark-popularity-model"
MODEL_VERSION = 1
COUNTS_SCHEMA = T.StructType(
    [T.StructField(MOVIE_ID, T.LongType(), False), T.StructField(N_RATINGS, T.LongType(), False)]
)
USERS_SCHEMA = T.StructType([T.StructField(USER_ID, T.LongType(), False)])
_COUNTS, _USERS = "counts", "users"


@dataclass(frozen=True)
class PopularityScorer:
    """Scores every user alike: ``shared_scores`` (M,) are the counts of ``item_ids``."""

    item_ids: np.ndarray
    shared_scores: np.ndarray

    def scores(self, block: UserBlock, rows: slice) -> np.ndarray:
        return np.broadcast_to(self.shared_scores, (rows.stop - rows.start, self.item_ids.size)).copy()


@dataclass(frozen=True)
class PopularityModel:
    """``counts``: movie_id, n_ratings (training ratings per movie); ``users``: user_id of
    every training user."""

    counts: DataFrame
    users: DataFrame
    name: str = NAME

    def ranking_inputs(self) -> RankingInputs:
        """``TOP_N``: the counts, collected to the driver sorted by movie id, as the shared
        scores of every training user. Action: one collect."""
        pdf = self.counts.orderBy(MOVIE_ID).toPandas()
        scorer = PopularityScorer(
            pdf[MOVIE_ID].to_numpy(np.int64), pdf[N_RATINGS].to_numpy(np.float64)
        )
        return RankingInputs(users=self.users, scorer=scorer)

    def save(self, path: str) -> None:
        """Write ``counts/``, ``users/`` and ``model.json`` to the folder ``path`` (replaced
        atomically). Action: writes the tables."""
        spark = self.counts.sparkSession
        with storage.staged(spark, path) as tmp:
            runs.write_model_table(self.counts, COUNTS_SCHEMA, f"{tmp}/{_COUNTS}")
            runs.write_model_table(self.users, USERS_SCHEMA, f"{tmp}/{_USERS}")
            runs.write_model_meta(
                spark, tmp,
                {runs.NAME_KEY: self.name, "format": MODEL_FORMAT, "version": MODEL_VERSION},
            )
        _logger.info("saved %s model to %s", self.name, path)

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "PopularityModel":
        """Read what :meth:`save` wrote (lazily). Raises :class:`ModelError` when the folder
        is missing, incomplete or of another format or version."""
        meta = runs.read_model_meta(
            spark, path, expect=(MODEL_FORMAT, MODEL_VERSION), what="popularity model"
        )
        return cls(
            counts=runs.read_model_table(spark, path, _COUNTS, COUNTS_SCHEMA),
            users=runs.read_model_table(spark, path, _USERS, USERS_SCHEMA),
            name=str(meta[runs.NAME_KEY]),
        )


def fit_popularity(train: DataFrame) -> PopularityModel:
    """Count the training ratings (user_id, movie_id, ...) of every movie. Lazy."""
    require_columns(train, [USER_ID, MOVIE_ID], stage="popularity fit")
    counts = train.groupBy(MOVIE_ID).agg(F.count(F.lit(1)).alias(N_RATINGS))
    return PopularityModel(counts=counts, users=train.select(USER_ID).distinct())


SPEC = ModelSpec(
    name=NAME,
    summary="most-rated training movies first; the ranking baseline",
    fit=fit_popularity,
    abilities=frozenset({Ability.TOP_N, Ability.SAVE}),
    load=PopularityModel.load,
)
