"""The finishing steps every rating model shares: clipping and the bias fallback.

A model predicts for any DataFrame of (``user_id``, ``movie_id``) pairs (see
:class:`recspark.models.contract.RatingModel`). Rows the model cannot score personally (a
user or movie unseen in training) get the bias model's prediction, so no row is dropped.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recspark.schema import PERSONALISED, PREDICTION


def clip(col: Column, lo: float, hi: float) -> Column:
    """Clip a prediction column to the rating scale [lo, hi]."""
    return F.least(F.greatest(col, F.lit(lo)), F.lit(hi))


def with_fallback(
    scored: DataFrame, raw: str, fallback: Column, *, lo: float, hi: float
) -> DataFrame:
    """Finish a model's scoring: where ``raw`` is null use ``fallback``; clip; drop ``raw``.

    ``raw`` is the model's own (unclipped) score column, null for rows it cannot score.
    """
    return (
        scored.withColumn(PERSONALISED, F.col(raw).isNotNull())
        .withColumn(PREDICTION, clip(F.coalesce(F.col(raw), fallback), lo, hi))
        .drop(raw)
    )
