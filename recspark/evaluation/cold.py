"""Accuracy on cold movies: test rows whose movie has fewer than ``below`` training ratings.

    rmse@cold<5 = sqrt(mean((r − r̂)²)) over test rows (u, i) with |R_train(i)| < 5

(a movie absent from training counts 0), plus the number of such rows (``rows@cold<5``).
This is the slice where a content-based prediction can beat the bias model, which knows
nothing of such a movie beyond a damped mean of its few ratings.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.schema import MOVIE_ID, N_RATINGS, PREDICTION, RATING, RMSE, ROWS, at_cold, require_columns

#: The training-rating count under which a test movie is "cold".
COLD_BELOW = 5


def cold_metrics(predicted: DataFrame, train: DataFrame, *, below: int = COLD_BELOW) -> dict[str, float]:
    """``rmse@cold<below`` and ``rows@cold<below`` of ``predicted`` (movie_id, rating,
    prediction) on movies with fewer than ``below`` ratings in ``train`` (movie_id). RMSE
    is NaN when there are no such rows. Action: one aggregation."""
    require_columns(predicted, [MOVIE_ID, RATING, PREDICTION], stage="cold_metrics")
    counts = train.groupBy(MOVIE_ID).agg(F.count(F.lit(1)).alias(N_RATINGS))
    cold = (
        predicted.join(counts, MOVIE_ID, "left")
        .where(F.coalesce(F.col(N_RATINGS), F.lit(0)) < below)
    )
    err = F.col(RATING) - F.col(PREDICTION)
    row = cold.agg(F.sqrt(F.avg(err * err)).alias(RMSE), F.count(F.lit(1)).alias(ROWS)).first()
    return {
        at_cold(RMSE, below): float("nan") if row[RMSE] is None else float(row[RMSE]),
        at_cold(ROWS, below): float(row[ROWS]),
    }
