"""Damped baseline predictor: global mean plus regularised user and item biases.

    r̂(u, i) = μ + b_u + b_i

μ is the mean training rating. The biases minimise
Σ (r_ui − μ − b_u − b_i)² + λ_u Σ b_u² + λ_i Σ b_i², fitted by alternating closed-form
updates (each is the exact minimiser with the other side fixed):

    b_i = Σ_{u ∈ R(i)} (r_ui − μ − b_u) / (λ_i + |R(i)|)
    b_u = Σ_{i ∈ R(u)} (r_ui − μ − b_i) / (λ_u + |R(u)|)

starting from b_u = 0, so one round is the classic "damped means" baseline (Koren 2008).
All sums are DataFrame aggregations; nothing is collected but μ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import Field
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recspark.config import Section
from recspark.errors import DataQualityError
from recspark.models.base import with_fallback
from recspark.models.contract import Ability, ModelSpec
from recspark.schema import (
    BIAS,
    BIAS_PREDICTION,
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


def fit_bias(
    ratings: DataFrame, *, cfg: BiasConfig, lo: float = 0.5, hi: float = 5.0
) -> BiasModel:
    """Fit :class:`BiasModel` on ``ratings`` (user_id, movie_id, rating).

    Action: one aggregation for μ; the bias tables are cached (``rounds`` alternations).
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
        new_item = new_item.localCheckpoint()
        new_user = (
            r.join(new_item, MOVIE_ID)
            .groupBy(USER_ID)
            .agg((F.sum(F.col(RATING) - mu - F.col(BIAS)) / (F.count(F.lit(1)) + cfg.user_reg)).alias(BIAS))
            .localCheckpoint()
        )
        item_bias, user_bias = new_item, new_user
    _logger.info("bias model: global mean %.4f after %d round(s)", mu, cfg.rounds)
    return BiasModel(float(mu), user_bias, item_bias, lo=lo, hi=hi)


def _baseline(train: DataFrame, *, bias: BiasModel) -> BiasModel:
    """The ``bias`` model is the baseline every fit receives, already fitted on ``train``."""
    return bias


SPEC = ModelSpec(
    name="bias",
    summary="μ + b_u + b_i, damped; the fallback of every other model",
    fit=_baseline,
    abilities=frozenset({Ability.PREDICT}),
    config=BiasConfig,
)
