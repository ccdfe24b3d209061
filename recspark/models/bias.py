"""Damped baseline predictor: global mean plus regularised user and item biases.

    r̂(u, i) = μ + b_u + b_i

μ is the mean training rating. The biases minimise
Σ (r_ui − μ − b_u − b_i)² + λ_u Σ b_u² + λ_i Σ b_i², fitted by alternating closed-form
updates (each is the exact minimiser with the other side fixed):

    b_i = Σ_{u ∈ R(i)} (r_ui − μ − b_u) / (λ_i + |R(i)|)
    b_u = Σ_{i ∈ R(u)} (r_ui − μ − b_i) / (λ_u + |R(u)|)

starting from b_u = 0, so one round is the classic "damped means" baseline (Koren 2008).
All sums are DataFrame aggregations; nothing is collected but μ.

Saved as ``user_bias/`` (user_id, bias), ``item_bias/`` (movie_id, bias) and ``model.json``
(μ, rating scale); factor models save their fallback with the same tables
(:meth:`BiasModel.write_tables`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import Field
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Section
from recspark.errors import DataQualityError
from recspark.io import runs, storage
from recspark.models.base import BROADCAST_MAX_BYTES, with_fallback
from recspark.models.contract import Ability, ModelSpec
from recspark.schema import (
    BIAS,
    BIAS_PREDICTION,
    GLOBAL_MEAN,
    ITEM_BIAS,
    MOVIE_ID,
    RATING,
    USER_BIAS,
    USER_ID,
    require_columns,
)

_logger = logging.getLogger(__name__)

__all__ = ["BIAS_PREDICTION", "ITEM_BIAS", "SPEC", "USER_BIAS", "BiasConfig", "BiasModel", "fit_bias"]

_RAW = "_bias_raw"

MODEL_FORMAT = "recspark-bias-model"
MODEL_VERSION = 1
USER_BIAS_SCHEMA = T.StructType(
    [T.StructField(USER_ID, T.LongType(), False), T.StructField(BIAS, T.DoubleType(), False)]
)
ITEM_BIAS_SCHEMA = T.StructType(
    [T.StructField(MOVIE_ID, T.LongType(), False), T.StructField(BIAS, T.DoubleType(), False)]
)
#: Folder names of the two tables in a saved bias model.
TABLES = ("user_bias", "item_bias")


class BiasConfig(Section):
    """Damped baseline: μ + b_u + b_i with shrinkage ``user_reg`` and ``item_reg``,
    ``rounds`` alternations."""

    rounds: int = Field(3, ge=1)
    user_reg: float = Field(5.0, ge=0)
    item_reg: float = Field(5.0, ge=0)


@dataclass(frozen=True)
class BiasModel:
    """Fitted baseline. ``user_bias``: (user_id, bias); ``item_bias``: (movie_id, bias)."""

    global_mean: float
    user_bias: DataFrame
    item_bias: DataFrame
    lo: float = 0.5
    hi: float = 5.0
    name: str = "bias"

    def annotate(self, pairs: DataFrame) -> DataFrame:
        """Add ``user_bias``, ``item_bias`` (null when unseen) and the unclipped
        ``bias_prediction`` = μ + b_u + b_i (unseen biases count as 0)."""
        require_columns(pairs, [USER_ID, MOVIE_ID], stage="bias prediction")
        return (
            pairs.join(self.user_bias.withColumnRenamed(BIAS, USER_BIAS), USER_ID, "left")
            .join(self.item_bias.withColumnRenamed(BIAS, ITEM_BIAS), MOVIE_ID, "left")
            .withColumn(BIAS_PREDICTION, self.baseline())
        )

    def baseline(self) -> Column:
        """μ + b_u + b_i over the columns :meth:`annotate` adds."""
        return (
            F.lit(self.global_mean)
            + F.coalesce(F.col(USER_BIAS), F.lit(0.0))
            + F.coalesce(F.col(ITEM_BIAS), F.lit(0.0))
        )

    def predict(self, pairs: DataFrame) -> DataFrame:
        """Baseline prediction; ``personalised`` is true where both biases were learned."""
        annotated = self.annotate(pairs).withColumn(
            _RAW,
            F.when(
                F.col(USER_BIAS).isNotNull() & F.col(ITEM_BIAS).isNotNull(), F.col(BIAS_PREDICTION)
            ),
        )
        return with_fallback(
            annotated, _RAW, F.col(BIAS_PREDICTION), lo=self.lo, hi=self.hi
        ).drop(USER_BIAS, ITEM_BIAS, BIAS_PREDICTION)

    # ------------------------------------------------------------------ persistence

    def meta(self) -> dict:
        """What ``model.json`` records besides the tables: name, μ, rating scale."""
        return {runs.NAME_KEY: self.name, GLOBAL_MEAN: self.global_mean, "lo": self.lo, "hi": self.hi}

    def write_tables(self, folder: str, names: tuple[str, str] = TABLES) -> None:
        """Write the user and item bias tables into ``folder`` as ``names``. Action."""
        runs.write_model_table(self.user_bias, USER_BIAS_SCHEMA, f"{folder}/{names[0]}")
        runs.write_model_table(self.item_bias, ITEM_BIAS_SCHEMA, f"{folder}/{names[1]}")

    @classmethod
    def read_tables(
        cls, spark: SparkSession, folder: str, meta: dict, names: tuple[str, str] = TABLES
    ) -> "BiasModel":
        """The model whose tables :meth:`write_tables` wrote into ``folder`` and whose
        :meth:`meta` is ``meta`` (lazily). Raises ModelError for a missing or bad table."""
        return cls(
            float(meta[GLOBAL_MEAN]),
            runs.read_model_table(spark, folder, names[0], USER_BIAS_SCHEMA),
            runs.read_model_table(spark, folder, names[1], ITEM_BIAS_SCHEMA),
            lo=float(meta["lo"]),
            hi=float(meta["hi"]),
            name=str(meta[runs.NAME_KEY]),
        )

    def save(self, path: str) -> None:
        """``SAVE``: the two tables and ``model.json`` into the folder ``path`` (replaced
        atomically). Action: writes the tables."""
        spark = self.user_bias.sparkSession
        with storage.staged(spark, path) as tmp:
            self.write_tables(tmp)
            runs.write_model_meta(
                spark, tmp, {**self.meta(), "format": MODEL_FORMAT, "version": MODEL_VERSION}
            )
        _logger.info("saved %s model to %s", self.name, path)

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "BiasModel":
        """Read what :meth:`save` wrote (lazily). Raises :class:`ModelError` when the folder
        is missing, incomplete or of another format or version."""
        meta = runs.read_model_meta(
            spark, path, expect=(MODEL_FORMAT, MODEL_VERSION), what="bias model"
        )
        return cls.read_tables(spark, path, meta)


def fit_bias(
    ratings: DataFrame, *, cfg: BiasConfig, lo: float = 0.5, hi: float = 5.0
) -> BiasModel:
    """Fit :class:`BiasModel` on ``ratings`` (user_id, movie_id, rating).

    Actions: one aggregation for μ; per round (``rounds`` alternations) the two bias tables
    are checkpointed and counted (:func:`_checkpointed`).
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, RATING], stage="bias fit")
    r = ratings.select(USER_ID, MOVIE_ID, RATING)
    mu = r.agg(F.avg(RATING)).first()[0]
    if mu is None:
        raise DataQualityError("bias fit: the training ratings are empty")
    user_bias = None
    item_bias = None
    for _ in range(cfg.rounds):
        resid = r if user_bias is None else r.join(user_bias, USER_ID, "left")
        ub = F.coalesce(F.col(BIAS), F.lit(0.0)) if user_bias is not None else F.lit(0.0)
        new_item = resid.groupBy(MOVIE_ID).agg(
            (F.sum(F.col(RATING) - mu - ub) / (F.count(F.lit(1)) + cfg.item_reg)).alias(BIAS)
        )
        new_item = _checkpointed(new_item)
        new_user = _checkpointed(
            r.join(new_item, MOVIE_ID)
            .groupBy(USER_ID)
            .agg((F.sum(F.col(RATING) - mu - F.col(BIAS)) / (F.count(F.lit(1)) + cfg.user_reg)).alias(BIAS))
        )
        item_bias, user_bias = new_item, new_user
    _logger.info("bias model: global mean %.4f after %d round(s)", mu, cfg.rounds)
    return BiasModel(float(mu), user_bias, item_bias, lo=lo, hi=hi)


#: Bytes a bias table's row takes in a broadcast hash relation (an 8-byte id and bias in a
#: 24-byte row, and the hash map's share), for deciding to broadcast it.
_ROW_BYTES = 48


def _checkpointed(table: DataFrame) -> DataFrame:
    """``table`` (id, bias) materialised by ``localCheckpoint`` (which cuts the rounds'
    lineage) and, when its rows × _ROW_BYTES fit BROADCAST_MAX_BYTES, marked for broadcast
    joins. Spark cannot estimate a checkpointed table's size and would otherwise shuffle and
    sort every ratings row to sort-merge join it: in the later rounds here, in every
    prediction's fallback, in the factor models' residuals. The mark travels with the
    table into every join it takes part in. Action: one count of the checkpointed rows.
    """
    table = table.localCheckpoint()
    return F.broadcast(table) if table.count() * _ROW_BYTES <= BROADCAST_MAX_BYTES else table


def _baseline(train: DataFrame, *, bias: BiasModel) -> BiasModel:
    """The ``bias`` model is the baseline every fit receives, already fitted on ``train``."""
    return bias


SPEC = ModelSpec(
    name="bias",
    summary="μ + b_u + b_i, damped; the fallback of every other model",
    fit=_baseline,
    abilities=frozenset({Ability.PREDICT, Ability.SAVE}),
    config=BiasConfig,
    load=BiasModel.load,
)
