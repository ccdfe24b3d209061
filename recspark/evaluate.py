"""Accuracy metrics of rating predictions, as rows of the run's metrics table."""

from __future__ import annotations

from typing import Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.schema import (
    METRICS_SCHEMA,
    PERSONALISED,
    PREDICTION,
    RATING,
    require_columns,
)


def regression_metrics(predictions: DataFrame) -> dict[str, float]:
    """RMSE, MAE, the share of rows with a personalised prediction, and the row count.

    Input columns: ``rating``, ``prediction``, ``personalised``. Action: one aggregation.

        RMSE = sqrt(mean((r − r̂)²)),  MAE = mean(|r − r̂|)
    """
    require_columns(predictions, [RATING, PREDICTION, PERSONALISED], stage="regression_metrics")
    err = F.col(RATING) - F.col(PREDICTION)
    row = predictions.agg(
        F.sqrt(F.avg(err * err)).alias("rmse"),
        F.avg(F.abs(err)).alias("mae"),
        F.avg(F.col(PERSONALISED).cast("double")).alias("personalised_share"),
        F.count(F.lit(1)).cast("double").alias("rows"),
    ).first()
    return {k: (float(v) if v is not None else float("nan")) for k, v in row.asDict().items()}


def metrics_frame(
    spark: SparkSession, *, run_id: str, model: str, split: str, values: Mapping[str, float]
) -> DataFrame:
    """Rows (run_id, model, split, metric, value) for the metrics table."""
    return spark.createDataFrame(
        [(run_id, model, split, name, float(v)) for name, v in values.items()], METRICS_SCHEMA
    )
