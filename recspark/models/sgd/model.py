"""The fitted SVD++ model: a factor model over effective user factors, plus the y_j.

For a user seen in training N(u) is fixed, so SVD++'s prediction

    r̂(u, i) = μ + b_u + b_i + q_i · (p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j)

is a biased factor model with the effective user factors p̃_u = p_u + |N(u)|^-½ Σ y_j.
:class:`SvdppModel` holds that :class:`~recspark.models.factor.FactorModel` (prediction,
top-N, factors) and the implicit table (movie_id, movie_idx, factors = y_j), which only
folding in new users needs: their N(u) is the movies of their ratings.

Saved form: ``factors/`` (the factor model's own folder), ``implicit/`` (Parquet) and a
``model.json`` naming ``svdpp``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.errors import ModelError
from recspark.io import runs, storage
from recspark.models.contract import RankingInputs
from recspark.models.factor import USER_FACTORS_SCHEMA, FactorModel, dot
from recspark.schema import FACTORS, MOVIE_ID, MOVIE_IDX, RATING, USER_ID, require_columns

_logger = logging.getLogger(__name__)

MODEL_FORMAT = "recspark-svdpp-model"
MODEL_VERSION = 1
_FACTORS_DIR, _IMPLICIT_DIR = "factors", "implicit"
_Z, _Y, _Q, _N = "_svdpp_z", "_svdpp_y", "_svdpp_q", "_svdpp_n"

IMPLICIT_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(MOVIE_IDX, T.IntegerType(), False),
        T.StructField(FACTORS, T.ArrayType(T.DoubleType()), False),
    ]
)


def _add(a: Any, b: Any) -> Any:
    return F.zip_with(a, b, lambda x, y: x + y)


def implicit_sums(ratings: DataFrame, implicit: DataFrame, rank: int) -> DataFrame:
    """user_id, ``_svdpp_z`` = |N(u)|^-½ Σ_{j∈N(u)} y_j and ``_svdpp_n`` = |N(u)|, with
    N(u) the movies of ``ratings`` (user_id, movie_id) found in ``implicit`` (movie_id,
    factors). Native Spark SQL (array aggregates), lazy."""
    y = implicit.select(MOVIE_ID, F.col(FACTORS).alias(_Y))
    zero = F.array_repeat(F.lit(0.0), rank)
    return (
        ratings.select(USER_ID, MOVIE_ID)
        .join(y, MOVIE_ID)
        .groupBy(USER_ID)
        .agg(F.aggregate(F.collect_list(_Y), zero, _add).alias(_Z), F.count(F.lit(1)).alias(_N))
        .select(USER_ID, F.transform(_Z, lambda v: v / F.sqrt(F.col(_N))).alias(_Z), _N)
    )


@dataclass(frozen=True)
class SvdppModel:
    """A fitted SVD++ (module docstring): ``factors`` with effective user factors and the
    ``implicit`` y table. Prediction, top-N and the factor tables are the factor model's."""

    factors: FactorModel
    implicit: DataFrame

    name = property(lambda self: self.factors.name)
    user_factors = property(lambda self: self.factors.user_factors)
    item_factors = property(lambda self: self.factors.item_factors)
    history = property(lambda self: self.factors.history)
    settings = property(lambda self: self.factors.settings)
    global_mean = property(lambda self: self.factors.global_mean)
    rank = property(lambda self: self.factors.rank)

    def predict(self, pairs: DataFrame) -> DataFrame:
        """As :meth:`FactorModel.predict` (input ``pairs``: user_id, movie_id, ...)."""
        return self.factors.predict(pairs)

    def ranking_inputs(self) -> RankingInputs:
        """``TOP_N``: μ + b_u + b_i + q_i·p̃_u for every known user (collects the items)."""
        return self.factors.ranking_inputs()

    def fold_in(self, ratings: DataFrame) -> "SvdppModel":
        """``FOLD_IN``: also score the users of ``ratings`` (user_id, movie_id, rating) not
        seen in training. Their z_u = |N(u)|^-½ Σ y_j over their rated known movies is
        fixed, so (p_u, b_u) is the exact minimiser of the weighted-λ least squares on
        r_ui − q_i·z_u: one ALS half-step (:mod:`recspark.serving.foldin`); p̃_u = p_u + z_u.
        Unknown movies are ignored; users with none known stay with the fallback. Lazy but
        for collecting the item table."""
        from recspark.serving.foldin import fold_in_model_users

        require_columns(ratings, [USER_ID, MOVIE_ID, RATING], stage="svdpp fold_in")
        new = ratings.join(self.user_factors.select(USER_ID), USER_ID, "left_anti")
        sums = implicit_sums(new, self.implicit, self.rank).select(USER_ID, _Z)
        q = self.item_factors.select(MOVIE_ID, F.col(FACTORS).alias(_Q))
        adjusted = (
            new.join(q, MOVIE_ID)
            .join(sums, USER_ID)
            .select(USER_ID, MOVIE_ID, (F.col(RATING) - dot(_Q, _Z, self.rank)).alias(RATING))
        )
        folded = (
            fold_in_model_users(self.factors, adjusted)
            .join(sums, USER_ID)
            .withColumn(FACTORS, _add(F.col(FACTORS), F.col(_Z)))
            .drop(_Z)
            .cache()
        )
        users = runs.to_schema(self.user_factors, USER_FACTORS_SCHEMA).unionByName(
            runs.to_schema(folded, USER_FACTORS_SCHEMA)
        )
        return SvdppModel(dataclasses.replace(self.factors, user_factors=users), self.implicit)

    def save(self, path: str) -> None:
        """Write ``factors/``, ``implicit/`` and ``model.json`` to ``path`` (replaced
        atomically). Action: writes the tables."""
        spark = self.implicit.sparkSession
        with storage.staged(spark, path) as tmp:
            self.factors.save(f"{tmp}/{_FACTORS_DIR}")
            runs.write_model_table(self.implicit, IMPLICIT_SCHEMA, f"{tmp}/{_IMPLICIT_DIR}")
            meta = {"format": MODEL_FORMAT, "version": MODEL_VERSION, runs.NAME_KEY: self.name}
            runs.write_model_meta(spark, tmp, meta)
        _logger.info("saved %s model to %s", self.name, path)

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "SvdppModel":
        """Read a model written by :meth:`save`; raises :class:`ModelError` when the folder
        is missing, incomplete or of another format. Lazy."""
        meta = runs.read_model_meta(spark, path)
        if meta.get("format") != MODEL_FORMAT or meta.get("version") != MODEL_VERSION:
            raise ModelError(
                f"{path} is not a recspark SVD++ model of version {MODEL_VERSION} (format "
                f"{meta.get('format')!r}, version {meta.get('version')!r}): re-train and save it"
            )
        factors = FactorModel.load(spark, f"{path.rstrip('/')}/{_FACTORS_DIR}")
        implicit = runs.read_model_table(spark, path, _IMPLICIT_DIR, IMPLICIT_SCHEMA)
        return cls(factors, implicit)

