"""A tiny extra model, registered by the tests only: the whole of what a new model needs.

"Movie mean" predicts each movie's mean training rating (the global mean for a movie it
never saw), ranks every user's unrated movies by that mean, and saves its means. It claims
PREDICT, TOP_N and SAVE; nothing outside this module knows it except one registry line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.io import runs, storage
from recspark.models.contract import Ability, ModelSpec, RankingInputs, UserBlock
from recspark.schema import MOVIE_ID, PERSONALISED, PREDICTION, RATING, USER_ID

NAME = "tiny"
_MEAN = "mean_rating"
_MEANS = T.StructType(
    [T.StructField(MOVIE_ID, T.LongType(), False), T.StructField(_MEAN, T.DoubleType(), False)]
)
_USERS = T.StructType([T.StructField(USER_ID, T.LongType(), False)])


@dataclass(frozen=True)
class MeanScorer:
    """Scores every user's row with the movie means (a personalised-path scorer)."""

    item_ids: np.ndarray
    means: np.ndarray
    shared_scores: np.ndarray | None = None

    def scores(self, block: UserBlock, rows: slice) -> np.ndarray:
        return np.tile(self.means, (rows.stop - rows.start, 1))


@dataclass(frozen=True)
class MovieMeanModel:
    means: DataFrame  # movie_id, mean_rating
    users: DataFrame  # user_id
    global_mean: float
    name: str = NAME

    def predict(self, pairs: DataFrame) -> DataFrame:
        joined = pairs.join(self.means, MOVIE_ID, "left")
        return joined.select(
            *pairs.columns,
            F.coalesce(F.col(_MEAN), F.lit(self.global_mean)).alias(PREDICTION),
            F.col(_MEAN).isNotNull().alias(PERSONALISED),
        )

    def ranking_inputs(self) -> RankingInputs:
        pdf = self.means.orderBy(MOVIE_ID).toPandas()
        return RankingInputs(
            self.users, MeanScorer(pdf[MOVIE_ID].to_numpy(np.int64), pdf[_MEAN].to_numpy())
        )

    def save(self, path: str) -> None:
        spark = self.means.sparkSession
        with storage.staged(spark, path) as tmp:
            self.means.write.parquet(f"{tmp}/means")
            self.users.write.parquet(f"{tmp}/users")
            runs.write_model_meta(spark, tmp, {"name": self.name, "global_mean": self.global_mean})

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "MovieMeanModel":
        meta = runs.read_model_meta(spark, path)
        return cls(
            means=runs.read_model_table(spark, path, "means", _MEANS),
            users=runs.read_model_table(spark, path, "users", _USERS),
            global_mean=float(meta["global_mean"]),
        )


def fit(train: DataFrame) -> MovieMeanModel:
    means = train.groupBy(MOVIE_ID).agg(F.avg(RATING).alias(_MEAN))
    users = train.select(USER_ID).distinct()
    return MovieMeanModel(means, users, float(train.agg(F.avg(RATING)).first()[0]))


SPEC = ModelSpec(
    name=NAME,
    summary="each movie's mean training rating (a test model)",
    fit=fit,
    abilities=frozenset({Ability.PREDICT, Ability.TOP_N, Ability.SAVE}),
    load=MovieMeanModel.load,
)
