"""The train pipeline: ingested ratings → split → models → predictions and metrics.

One run writes one folder, ``<train.output_dir>/<run_id>/``, published atomically:

- ``predictions/`` Parquet partitioned by ``model``: user_id, movie_id, rating, prediction,
  personalised (test rows of every model; no row is dropped)
- ``metrics/`` Parquet: run_id, model, split, metric, value
- ``recommendations/`` Parquet partitioned by ``model``: top-N lists of every factor model and
  the popularity baseline (when ``recommend.enabled``; see :mod:`recspark.pipeline.ranking`)
- ``splits/<kind>/recommendations/``: the same for every ``recommend.extra_splits`` kind, whose
  models are refitted on that split for its RMSE and ranking metrics (same metrics table)
- ``models/<name>/`` saved models (for those that can be saved)
- ``config.toml``: the resolved configuration
- model-specific extras (convergence curves, sweeps) under ``models/<name>/``
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timezone

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config, SplitConfig, expand, to_toml
from recspark.evaluate import metrics_frame, regression_metrics
from recspark.io import storage
from recspark.io.ingested import read_ratings
from recspark.log import stage
from recspark.models.bias import BiasModel, fit_bias
from recspark.models import registry
from recspark.models.svd import sweep_chart, sweep_rows
from recspark.pipeline.ranking import recommend_and_rank
from recspark.schema import (
    ITERATION,
    METRICS_SCHEMA,
    SWEEP_K,
    METRIC,
    MODEL,
    MOVIE_ID,
    PERSONALISED,
    PREDICTION,
    RATING,
    SPLIT,
    USER_ID,
    VALUE,
)
from recspark.seeds import derive_seed
from recspark.split import random_split, split_config, split_ratings

_logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Where the run was written and its metrics as a small pandas frame."""

    run_id: str
    run_dir: str
    metrics: pd.DataFrame

    def summary(self) -> str:
        """The metrics as a model × (split, metric) table for the terminal."""
        table = self.metrics.pivot_table(
            index=MODEL, columns=[SPLIT, METRIC], values=VALUE, aggfunc="first"
        )
        return table.to_string(float_format=lambda v: f"{v:.4f}")


def new_run_id() -> str:
    """A sortable run id: UTC time to the second."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def run_train(spark: SparkSession, cfg: Config, args: object | None = None) -> TrainResult:
    """Fit every model in ``cfg.train.models`` and write the run folder (see module doc)."""
    run_id = cfg.train.run_id or new_run_id()
    run_dir = f"{expand(cfg.train.output_dir).rstrip('/')}/{run_id}"
    ratings = read_ratings(spark, expand(cfg.ingest_dir()))
    extra_kinds = [split_config(cfg.split, k).kind for k in cfg.recommend.extra_splits]  # fail early
    extra_kinds = [k for k in dict.fromkeys(extra_kinds) if k != cfg.split.kind]
    train, validation, test, bias = _split_and_bias(spark, cfg, ratings, cfg.split)

    rows: list[DataFrame] = []
    fitted: dict[str, object] = {}  # for the top-N / ranking step after the loop
    with storage.staged(spark, run_dir) as staging:
        for name in cfg.train.models:
            with stage(f"fit {name}", spark):
                start = time.perf_counter()
                model = registry.fit(name, train, cfg=cfg, bias=bias, validation=validation)
                fit_seconds = time.perf_counter() - start
            fitted[name] = model
            if hasattr(model, "save"):
                with stage(f"save {name}", spark):
                    model.save(f"{staging}/models/{name}")
            if hasattr(model, "write_extras"):
                model.write_extras(spark, f"{staging}/models/{name}")
            rows.append(
                _evaluate(spark, model, name, run_id, f"{cfg.split.kind}/train", train, None)
            )
            pred_path = f"{staging}/predictions/{MODEL}={name}"
            rows.append(
                _evaluate(spark, model, name, run_id, f"{cfg.split.kind}/test", test, pred_path)
            )
            rows.append(
                metrics_frame(
                    spark,
                    run_id=run_id,
                    model=name,
                    split=f"{cfg.split.kind}/train",
                    values={"fit_seconds": fit_seconds, **_history_values(model)},
                )
            )
            if getattr(model, "sweep_model", None) is not None:
                rows.append(_rank_sweep(spark, model, run_id, f"{cfg.split.kind}/test", test, staging))
        # ---- top-N recommendations and ranking metrics (recspark.pipeline.ranking)
        rows += recommend_and_rank(
            spark, cfg, models=fitted, train=train, test=test, run_id=run_id, out_dir=staging,
            kind=cfg.split.kind,
        )
        train.unpersist()
        test.unpersist()
        if cfg.recommend.enabled:
            for kind in extra_kinds:
                rows += _extra_split(spark, cfg, ratings, kind, run_id, staging)
        metrics = rows[0]
        for more in rows[1:]:
            metrics = metrics.unionByName(more)
        metrics.coalesce(1).write.parquet(f"{staging}/metrics")
        storage.write_text(spark, f"{staging}/config.toml", to_toml(cfg))
    result = TrainResult(run_id, run_dir, spark.read.parquet(f"{run_dir}/metrics").toPandas())
    _logger.info("run %s written to %s", run_id, run_dir)
    return result


def _split_and_bias(
    spark: SparkSession, cfg: Config, ratings: DataFrame, split_cfg: SplitConfig
) -> tuple[DataFrame, DataFrame | None, DataFrame, BiasModel]:
    """(train, validation or None, test) of ``split_cfg`` (cached) and the bias model on train."""
    with stage(f"split ({split_cfg.kind})", spark):
        train, test = split_ratings(ratings, cfg=split_cfg, seed=derive_seed(cfg.seed, "split"))
        validation = None
        if cfg.train.validation_fraction > 0:
            train, validation = random_split(
                train,
                test_fraction=cfg.train.validation_fraction,
                seed=derive_seed(cfg.seed, "validation"),
            )
            validation = validation.cache()
        train, test = train.cache(), test.cache()
    with stage("bias model", spark):
        bias = fit_bias(train, cfg=cfg.bias, lo=cfg.train.rating_min, hi=cfg.train.rating_max)
    return train, validation, test, bias


def _extra_split(
    spark: SparkSession,
    cfg: Config,
    ratings: DataFrame,
    kind: str,
    run_id: str,
    staging: str,
) -> list[DataFrame]:
    """Refit every model on split ``kind``; its test RMSE/MAE and ranking metric rows."""
    with stage(f"ranking on the {kind} split", spark):
        train, validation, test, bias = _split_and_bias(
            spark, cfg, ratings, split_config(cfg.split, kind)
        )
        fitted, rows = {}, []
        for name in cfg.train.models:
            with stage(f"fit {name} ({kind})", spark):
                fitted[name] = registry.fit(name, train, cfg=cfg, bias=bias, validation=validation)
            rows.append(_evaluate(spark, fitted[name], name, run_id, f"{kind}/test", test, None))
        rows += recommend_and_rank(
            spark, cfg, models=fitted, train=train, test=test, run_id=run_id,
            out_dir=f"{staging}/splits/{kind}", kind=kind,
        )
        for df in (train, test, validation):
            if df is not None:
                df.unpersist()
    return rows


def _history_values(model) -> dict[str, float]:
    """Per-iteration convergence figures of iterative models as metric name → value,
    e.g. ``train_rmse@iter=003`` (the same table is plotted by the model's extras)."""
    history = getattr(model, "history", None)
    if history is None or ITERATION not in history:
        return {}
    values = {}
    for record in history.to_dict("records"):
        for column, value in record.items():
            if column != ITERATION and value is not None and value == value:
                values[f"{column}@iter={int(record[ITERATION]):03d}"] = float(value)
    return values


def _rank_sweep(spark: SparkSession, model, run_id: str, split: str, test: DataFrame, staging: str) -> DataFrame:
    """RMSE and MAE of an SVD model truncated to every rank of ``svd.sweep``: metric rows
    with model ``<name>@k=<k>`` and a PNG curve in the model's folder."""
    with stage(f"rank sweep of {model.name}", spark):
        sweep = sweep_rows(model, test)
        sweep_chart(spark, sweep, out_dir=f"{staging}/models/{model.name}")
    return spark.createDataFrame(
        [
            (run_id, f"{r[MODEL]}@k={int(r[SWEEP_K])}", split, r[METRIC], float(r[VALUE]))
            for r in sweep.to_dict("records")
        ],
        METRICS_SCHEMA,
    )


def _evaluate(
    spark: SparkSession,
    model,
    name: str,
    run_id: str,
    split: str,
    data: DataFrame,
    write_to: str | None,
) -> DataFrame:
    """Predict ``data`` with ``model``; optionally write the predictions; return metric rows.

    When ``write_to`` is given the predictions are written first and the metrics read back
    from Parquet, so the model scores the rows once.
    """
    with stage(f"evaluate {name} on {split}", spark):
        predicted = model.predict(data.select(USER_ID, MOVIE_ID, RATING)).select(
            USER_ID, MOVIE_ID, RATING, PREDICTION, PERSONALISED
        )
        if write_to is not None:
            predicted.write.parquet(write_to)
            predicted = spark.read.parquet(write_to)
        values = regression_metrics(predicted)
    _logger.info(
        "%s %s: RMSE %.4f  MAE %.4f  personalised %.1f%%",
        name,
        split,
        values["rmse"],
        values["mae"],
        100 * values["personalised_share"],
    )
    return metrics_frame(spark, run_id=run_id, model=name, split=split, values=values)


def metric_value(metrics: pd.DataFrame, *, model: str, split: str, metric: str) -> float:
    """One value from a run's metrics frame (raises KeyError if absent)."""
    hit = metrics[(metrics[MODEL] == model) & (metrics[SPLIT] == split) & (metrics[METRIC] == metric)]
    if hit.empty:
        raise KeyError(f"no metric {metric} for {model} on {split}")
    return float(hit[VALUE].iloc[0])

