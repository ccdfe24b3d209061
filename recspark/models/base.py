"""What every rating model offers, and the bias fallback they all share.

A model is fitted on a ratings DataFrame with :data:`~recspark.schema.USER_ID`,
:data:`~recspark.schema.MOVIE_ID`, :data:`~recspark.schema.USER_IDX`,
:data:`~recspark.schema.MOVIE_IDX` and :data:`~recspark.schema.RATING`, and predicts for any
DataFrame of (``user_id``, ``movie_id``) pairs. Rows the model cannot score personally (a
user or movie unseen in training) get the bias model's prediction, so no row is dropped.
"""

from __future__ import annotations

from typing import Protocol

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recspark.schema import PERSONALISED, PREDICTION


class RatingModel(Protocol):
    """A fitted model: ``predict`` keeps every input row and adds two columns."""

    name: str

    def predict(self, pairs: DataFrame) -> DataFrame:
        """``pairs`` (``user_id``, ``movie_id``, any other columns) plus ``prediction``
        (clipped to the rating scale) and ``personalised`` (false where the bias fallback
        scored the row)."""
        ...


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
