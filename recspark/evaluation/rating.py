"""Accuracy metrics of rating predictions, and the rows of the run's metrics table."""

from __future__ import annotations

from typing import Mapping

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.schema import (
    FOLD,
    MAE,
    METRIC,
    METRICS_SCHEMA,
    MODEL,
    PERSONALISED,
    PERSONALISED_SHARE,
    PREDICTION,
    RATING,
    RMSE,
    ROWS,
    RUN_ID,
    SPLIT,
    VALUE,
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
        F.sqrt(F.avg(err * err)).alias(RMSE),
        F.avg(F.abs(err)).alias(MAE),
        F.avg(F.col(PERSONALISED).cast("double")).alias(PERSONALISED_SHARE),
        F.count(F.lit(1)).cast("double").alias(ROWS),
    ).first()
    return {k: (float(v) if v is not None else float("nan")) for k, v in row.asDict().items()}


def metrics_frame(
    spark: SparkSession,
    *,
    run_id: str,
    model: str,
    split: str,
    values: Mapping[str, float],
    fold: int | None = None,
) -> DataFrame:
    """Rows (run_id, model, split, metric, value, fold) for the metrics table; ``fold`` is
    the cross-validation fold of per-fold rows, None otherwise."""
    return spark.createDataFrame(
        [(run_id, model, split, name, float(v), fold) for name, v in values.items()],
        METRICS_SCHEMA,
    )


def metrics_table(spark: SparkSession, metrics: pd.DataFrame) -> DataFrame:
    """The pandas metrics table ``metrics`` (the columns of ``METRICS_SCHEMA``; NaN or None
    for a null fold) as a Spark DataFrame of that schema."""
    rows = [
        (r[RUN_ID], r[MODEL], r[SPLIT], r[METRIC], float(r[VALUE]),
         None if pd.isna(r[FOLD]) else int(r[FOLD]))
        for r in metrics.to_dict("records")
    ]
    return spark.createDataFrame(rows, METRICS_SCHEMA)


def union_all(frames: list[DataFrame]) -> DataFrame:
    """The rows of every frame of ``frames`` (same columns, matched by name); at least one."""
    out = frames[0]
    for more in frames[1:]:
        out = out.unionByName(more)
    return out


def metric_value(metrics: pd.DataFrame, *, model: str, split: str, metric: str) -> float:
    """One value of a metrics table read into pandas (raises KeyError if absent)."""
    hit = metrics[(metrics[MODEL] == model) & (metrics[SPLIT] == split) & (metrics[METRIC] == metric)]
    if hit.empty:
        raise KeyError(f"no metric {metric} for {model} on {split}")
    return float(hit[VALUE].iloc[0])
