"""The train pipeline: ingested ratings → split → models → predictions, metrics, top-N lists.

One run writes one folder, ``<train.output_dir>/<run_id>/`` (layout: :mod:`recspark.io.runs`),
published atomically. Every model of ``train.models`` is fitted through its registered spec
(:func:`recspark.models.registry.fit`), and what is written for it follows the abilities the
spec claims:

- ``PREDICT``: ``predictions/`` Parquet partitioned by ``model`` (user_id, movie_id, rating,
  prediction, personalised; every test row, none dropped) and RMSE, MAE, personalised_share,
  rows on the train and test parts in ``metrics/``
- ``SAVE``: ``models/<name>/``
- ``HISTORY``: ``models/<name>/<name>_history/`` Parquet, ``<name>_convergence.png`` and one
  metric row per recorded figure and iteration (``train_rmse@iter=003``, ...)
- ``RANK_SWEEP``: RMSE and MAE at every rank of the model's sweep (model ``<name>@k=<k>``)
  and ``models/<name>/<name>_sweep.png``
- ``TOP_N``: ``recommendations/`` partitioned by ``model`` and ranking metrics
  (:mod:`recspark.pipeline.ranking`), when ``recommend.enabled``

plus ``fit_seconds`` of every model (its baseline's fit included), ``metrics/`` Parquet
(run_id, model, split, metric, value, fold), ``splits/<kind>/recommendations/`` and the
test metrics of every ``recommend.extra_splits`` kind (every model refitted on that split),
``leaderboard/`` Parquet and ``leaderboard.csv`` (:mod:`recspark.evaluation.leaderboard`,
sorted by ``train.leaderboard_by``), ``config.toml``, and ``best.json``: the run's models
ordered by test RMSE and by ``recommend.best_metric`` at ``recommend.k`` on the main split
(:mod:`recspark.evaluation.best`), whose winners are also metric rows ``best_by_rmse`` /
``best_by_ndcg@10`` and logged.

With ``train.folds`` = K >= 2 the run cross-validates instead (:func:`cross_validate`):
every model is fitted on each of K hashed folds (:func:`recspark.split.kfold_split`); no
model or prediction is kept, top-N lists go to ``folds/<i>/recommendations/``, and the
metrics table holds the per-fold rows (``fold`` = i, split ``kfold/test`` or
``kfold/train``) plus their mean and standard deviation per model (``fold`` null, metric
``<name>`` and ``<name>_std``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, SplitConfig, expand
from recspark.evaluation.best import RANKING_KEY, RANKING_METRIC_KEY, RMSE_KEY, best_models, best_rows
from recspark.evaluation.cold import cold_metrics
from recspark.evaluation.leaderboard import board_metric, fold_summary, format_board, leaderboard
from recspark.evaluation.rating import metrics_frame, metrics_table, regression_metrics, union_all
from recspark.evaluation.sweeps import sweep_rows
from recspark.io import runs, storage
from recspark.io.ingested import read_movies, read_ratings
from recspark.log import stage
from recspark.models import registry
from recspark.models.bias import BiasModel, fit_bias
from recspark.models.contract import Ability
from recspark.pipeline.ranking import recommend_and_rank
from recspark.pipeline.sizes import config_for_data
from recspark.plots import convergence_chart, sweep_chart
from recspark.schema import (
    FIT_SECONDS,
    FOLD,
    ITERATION,
    KFOLD,
    MAE,
    METRIC,
    METRICS_SCHEMA,
    MODEL,
    MOVIE_ID,
    PERSONALISED,
    PERSONALISED_SHARE,
    PREDICTION,
    RATING,
    RMSE,
    SWEEP_K,
    USER_ID,
    VALUE,
    at_iteration,
    at_k,
    at_rank,
)
from recspark.seeds import derive_seed
from recspark.session import map_in_pools
from recspark.split import kfold_split, random_split, split_config, split_ratings

_logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Where the run was written, its metrics as a small pandas frame, its main split kind
    and ranking cut-off k."""

    run_id: str
    run_dir: str
    metrics: pd.DataFrame
    kind: str = "random"
    k: int = 10

    def summary(self, width: int = 120) -> str:
        """The leaderboard of the main split for the terminal, at most ``width`` columns
        (:func:`recspark.evaluation.leaderboard.format_board`); per-iteration figures stay
        in the metrics table and the report."""
        board = leaderboard(self.metrics, kind=self.kind, k=self.k)
        return format_board(board, k=self.k, width=width)


@dataclasses.dataclass(frozen=True)
class _Split:
    """One split kind's cached parts and the bias model fitted on its train part."""

    kind: str
    train: DataFrame
    validation: DataFrame | None
    test: DataFrame
    bias: BiasModel
    bias_seconds: float = 0.0  # the baseline's fit, counted in every model's fit_seconds
    fold: int | None = None
    #: the models fitted on ``train`` so far and their own fit seconds, by name
    fitted: dict[str, Any] = dataclasses.field(default_factory=dict)
    fit_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

    def unpersist(self) -> None:
        self.fitted.clear()
        for df in (self.train, self.validation, self.test):
            if df is not None:
                df.unpersist()


def run_train(spark: SparkSession, cfg: Config, args: object | None = None) -> TrainResult:
    """Fit every model in ``cfg.train.models`` and write the run folder (see module doc)."""
    cfg = config_for_data(spark, cfg, models=cfg.train.models)
    run_id = cfg.train.run_id or runs.new_run_id()
    run_dir = runs.run_path(cfg, run_id)
    storage.clean_scratch(spark, runs.runs_dir(cfg))
    ratings = read_ratings(spark, expand(cfg.ingest_dir()))
    movies = read_movies(spark, expand(cfg.ingest_dir()))
    extra_kinds = [split_config(cfg.split, k).kind for k in cfg.recommend.extra_splits]  # fail early
    extra_kinds = [k for k in dict.fromkeys(extra_kinds) if k != cfg.split.kind]
    with storage.staged(spark, run_dir) as staging, storage.checkpoints(
        spark, cfg.spark.checkpoint_dir, work_dir=runs.runs_dir(cfg), name=run_id
    ):
        if cfg.train.folds >= 2:
            kind = KFOLD
            rows = cross_validate(spark, cfg, ratings, movies, run_id, staging)
        else:
            kind = cfg.split.kind
            rows = _fit_main_split(spark, cfg, ratings, movies, run_id, staging, extra_kinds)
        _finish(spark, cfg, rows, run_id=run_id, kind=kind, staging=staging)
    with stage("train: read metrics back", spark):
        metrics = spark.read.parquet(f"{run_dir}/{runs.METRICS_DIR}").toPandas()
    _logger.info("run %s written to %s", run_id, run_dir)
    return TrainResult(run_id, run_dir, metrics, kind=kind, k=cfg.recommend.k)


def _fit_main_split(
    spark: SparkSession, cfg: Config, ratings: DataFrame, movies: DataFrame, run_id: str,
    staging: str, extra_kinds: list[str],
) -> list[DataFrame]:
    """Fit every model on the ``split`` split (models, predictions and lists written into
    ``staging``), then refit on each extra split kind; return the metric rows."""
    main = _split_and_bias(spark, cfg, ratings, cfg.split)
    rows: list[DataFrame] = []
    rankers: dict[str, Any] = {}
    for name in cfg.train.models:
        model, more = _fit_and_report(spark, cfg, name, main, run_id=run_id, staging=staging)
        rows += more
        if registry.spec(name).can(Ability.TOP_N):
            rankers[name] = model
    rows += recommend_and_rank(
        spark, cfg, rankers=rankers, train=main.train, test=main.test, run_id=run_id,
        out_dir=staging, kind=main.kind, movies=movies,
    )
    main.unpersist()
    if cfg.recommend.enabled:
        for kind in extra_kinds:
            rows += _extra_split(spark, cfg, ratings, movies, kind, run_id, staging)
    return rows


def _finish(
    spark: SparkSession, cfg: Config, rows: list[DataFrame], *, run_id: str, kind: str,
    staging: str,
) -> None:
    """Write the metrics table (plus fold summaries when there are per-fold rows, and the
    ``best_by_*`` rows), ``best.json``, the leaderboard of split kind ``kind`` and the
    config into ``staging``."""
    with stage("train: write metrics", spark):
        metrics = union_all(rows).toPandas()
        if metrics[FOLD].notna().any():
            metrics = pd.concat([metrics, fold_summary(metrics)], ignore_index=True)
        write_metrics(spark, cfg, metrics, run_id=run_id, kind=kind, out_dir=staging)
        k = cfg.recommend.k
        board = leaderboard(metrics, kind=kind, k=k, sort_by=board_metric(cfg.train.leaderboard_by, k))
        where = f"{staging}/{runs.LEADERBOARD_DIR}"
        spark.createDataFrame(board).coalesce(1).write.parquet(where)
        storage.write_text(spark, f"{where}.csv", board.to_csv(index=False))
    _logger.info("leaderboard by %s:\n%s", cfg.train.leaderboard_by, format_board(board, k=k))
    runs.write_run_config(spark, staging, cfg)


def cross_validate(
    spark: SparkSession, cfg: Config, ratings: DataFrame, movies: DataFrame, run_id: str,
    staging: str,
) -> list[DataFrame]:
    """Fit every model of ``train.models`` on each of the ``train.folds`` folds; return the
    per-fold metric rows (``fold`` = i): fit seconds on ``kfold/train``, test RMSE/MAE of
    ``PREDICT`` models and ranking metrics of ``TOP_N`` models on ``kfold/test`` (lists in
    ``folds/<i>/``). ``train.parallel`` folds run at once, each from its own thread in its
    own scheduler pool (:mod:`recspark.pipeline.tune` runs trials the same way)."""
    def one_fold(fold: int) -> list[DataFrame]:
        rows: list[DataFrame] = []
        split = _split_and_bias(spark, cfg, ratings, cfg.split, fold=fold)
        rankers: dict[str, Any] = {}
        for name in cfg.train.models:
            spec = registry.spec(name)
            model, fit_seconds = _fit(spark, cfg, name, split, label=f" (fold {fold})")
            seconds = {FIT_SECONDS: fit_seconds}
            rows.append(metrics_frame(
                spark, run_id=run_id, model=name, split=f"{KFOLD}/train", values=seconds, fold=fold
            ))
            if spec.can(Ability.PREDICT):
                rows.append(_evaluate(spark, model, name, run_id, f"{KFOLD}/test", split.test, None,
                                      fold=fold))
            if spec.can(Ability.TOP_N):
                rankers[name] = model
        ranked = recommend_and_rank(
            spark, cfg, rankers=rankers, train=split.train, test=split.test, run_id=run_id,
            out_dir=f"{staging}/{runs.FOLDS_DIR}/{fold}", kind=KFOLD, movies=movies,
        )
        rows += [r.withColumn(FOLD, F.lit(fold).cast("int")) for r in ranked]
        split.unpersist()
        # The fold's models are dropped, but their cached tables (and the broadcast join
        # relations their cached plans pin) stay in the driver until uncached: a 17-model
        # 5-fold run filled a 4g driver heap by fold 4. Another fold running now only
        # recomputes what it loses (every split and fit is deterministic).
        spark.catalog.clearCache()
        return rows

    folds = map_in_pools(spark, one_fold, range(cfg.train.folds), parallel=cfg.train.parallel, pool="fold")
    return [row for rows in folds for row in rows]


def _split_and_bias(
    spark: SparkSession, cfg: Config, ratings: DataFrame, split_cfg: SplitConfig,
    fold: int | None = None,
) -> _Split:
    """The (train, validation or None, test) parts of ``split_cfg`` (or of k-fold fold
    ``fold`` of ``train.folds``), cached and materialised (so the time of reading and
    splitting the ratings is the split's, not the first fit's), and the bias model fitted on
    train (timed)."""
    kind = split_cfg.kind if fold is None else KFOLD
    with stage(f"split ({kind}{'' if fold is None else f' {fold}'})", spark):
        seed = derive_seed(cfg.seed, "split")
        train, test = (
            split_ratings(ratings, cfg=split_cfg, seed=seed) if fold is None
            else kfold_split(ratings, folds=cfg.train.folds, fold=fold, seed=seed)
        )
        validation = None
        if cfg.train.validation_fraction > 0:
            train, validation = random_split(
                train,
                test_fraction=cfg.train.validation_fraction,
                seed=derive_seed(cfg.seed, "validation"),
            )
            validation = validation.cache()
        train, test = train.cache(), test.cache()
        for part in (train, validation, test):  # read and cached here, not inside the first fit
            if part is not None:
                part.count()
    start = time.perf_counter()
    with stage("bias model", spark):
        bias = fit_bias(train, cfg=cfg.bias, lo=cfg.train.rating_min, hi=cfg.train.rating_max)
    return _Split(kind, train, validation, test, bias, time.perf_counter() - start, fold)


def _fit(
    spark: SparkSession, cfg: Config, name: str, split: _Split, *, label: str = ""
) -> tuple[Any, float]:
    """Model ``name`` fitted on ``split`` through its spec (offered the split's earlier
    fits), and its fit seconds: its own, the baseline's, and those of the earlier fits it
    reused (a model names them in ``reused``; a blend's refit members)."""
    start = time.perf_counter()
    with stage(f"fit {name}{label}", spark):
        model = registry.fit(
            name, split.train, cfg=cfg, bias=split.bias, validation=split.validation,
            fitted=split.fitted,
        )
    split.fit_seconds[name] = time.perf_counter() - start
    split.fitted[name] = model
    reused = sum(split.fit_seconds[n] for n in getattr(model, "reused", ()))
    return model, split.bias_seconds + split.fit_seconds[name] + reused


def _fit_and_report(
    spark: SparkSession, cfg: Config, name: str, split: _Split, *, run_id: str, staging: str
) -> tuple[Any, list[DataFrame]]:
    """Fit ``name`` on the run's main split and write what its abilities offer (module
    docstring) except the top-N lists; returns the model and its metric rows."""
    spec = registry.spec(name)
    model, fit_seconds = _fit(spark, cfg, name, split)
    extra = {FIT_SECONDS: fit_seconds}
    model_dir = runs.model_dir(staging, name)
    rows = []
    if spec.can(Ability.SAVE):
        with stage(f"save {name}", spark):
            model.save(model_dir)
    if spec.can(Ability.HISTORY) and model.history is not None and not model.history.empty:
        with stage(f"convergence history of {name}", spark):
            extra.update(write_history(spark, model, model_dir))
    if spec.can(Ability.PREDICT):
        pred_path = f"{staging}/{runs.PREDICTIONS_DIR}/{MODEL}={name}"
        rows.append(_evaluate(spark, model, name, run_id, f"{split.kind}/train", split.train, None))
        rows.append(
            _evaluate(spark, model, name, run_id, f"{split.kind}/test", split.test, pred_path)
        )
        with stage(f"cold-movie metrics of {name}", spark):
            cold = cold_metrics(spark.read.parquet(pred_path), split.train)
        rows.append(metrics_frame(spark, run_id=run_id, model=name, split=f"{split.kind}/test", values=cold))
    rows.append(
        metrics_frame(spark, run_id=run_id, model=name, split=f"{split.kind}/train", values=extra)
    )
    if spec.can(Ability.RANK_SWEEP) and model.sweep_model is not None:
        rows.append(_rank_sweep(spark, model, run_id, f"{split.kind}/test", split.test, model_dir))
    return model, rows


def _extra_split(
    spark: SparkSession,
    cfg: Config,
    ratings: DataFrame,
    movies: DataFrame,
    kind: str,
    run_id: str,
    staging: str,
) -> list[DataFrame]:
    """Refit every model on split ``kind``; its test RMSE/MAE and ranking metric rows."""
    with stage(f"ranking on the {kind} split", spark):
        split = _split_and_bias(spark, cfg, ratings, split_config(cfg.split, kind))
        rankers, rows = {}, []
        for name in cfg.train.models:
            spec = registry.spec(name)
            model, _ = _fit(spark, cfg, name, split, label=f" ({kind})")
            if spec.can(Ability.PREDICT):
                rows.append(_evaluate(spark, model, name, run_id, f"{kind}/test", split.test, None))
            if spec.can(Ability.TOP_N):
                rankers[name] = model
        rows += recommend_and_rank(
            spark, cfg, rankers=rankers, train=split.train, test=split.test, run_id=run_id,
            out_dir=f"{staging}/{runs.SPLITS_DIR}/{kind}", kind=kind, movies=movies,
        )
        split.unpersist()
    return rows


def write_metrics(
    spark: SparkSession, cfg: Config, metrics: pd.DataFrame, *, run_id: str, kind: str,
    out_dir: str,
) -> dict[str, Any]:
    """Name the run's best models on ``<kind>/test`` (:func:`recspark.evaluation.best.best_models`
    by RMSE and by ``recommend.best_metric`` at ``recommend.k``), log them, write
    ``best.json`` and the metrics table (``metrics`` plus the ``best_by_*`` rows) into
    ``out_dir``; returns the best dict."""
    summary = metrics[metrics[FOLD].isna()] if FOLD in metrics else metrics  # not per-fold rows
    best = best_models(
        summary, split=f"{kind}/test", ranking_metric=at_k(cfg.recommend.best_metric, cfg.recommend.k)
    )
    for label, ranked in (("test RMSE", best[RMSE_KEY]), (best[RANKING_METRIC_KEY], best[RANKING_KEY])):
        if ranked:
            _logger.info("best model by %s: %s (%.4f)", label, ranked[0][MODEL], ranked[0][VALUE])
    winners = best_rows(best, run_id=run_id)
    table = pd.concat([metrics, winners], ignore_index=True) if len(winners) else metrics
    metrics_table(spark, table).coalesce(1).write.parquet(
        f"{out_dir}/{runs.METRICS_DIR}"
    )
    runs.write_best(spark, out_dir, best)
    return best


def write_history(spark: SparkSession, model: Any, model_dir: str) -> dict[str, float]:
    """Write a ``HISTORY`` model's convergence table into its folder (``<name>_history/``
    Parquet and ``<name>_convergence.png``) and return its points as metric name → value,
    e.g. ``train_rmse@iter=003`` (NaN and missing figures skipped)."""
    history, name = model.history, model.name
    spark.createDataFrame(history).coalesce(1).write.mode("overwrite").parquet(
        f"{model_dir}/{name}_history"
    )
    convergence_chart(
        spark, history, path=f"{model_dir}/{name}_convergence.png",
        title=f"{name}: convergence per iteration",
    )
    _logger.info("wrote %s convergence history to %s", name, model_dir)
    values = {}
    for record in history.to_dict("records"):
        for column, value in record.items():
            if column != ITERATION and value is not None and value == value:
                values[at_iteration(column, int(record[ITERATION]))] = float(value)
    return values


def _rank_sweep(
    spark: SparkSession, model: Any, run_id: str, split: str, test: DataFrame, model_dir: str
) -> DataFrame:
    """RMSE and MAE of a ``RANK_SWEEP`` model truncated to every rank of its sweep: metric
    rows with model ``<name>@k=<k>`` and a PNG curve in the model's folder."""
    with stage(f"rank sweep of {model.name}", spark):
        sweep = sweep_rows(model, test)
        sweep_chart(spark, sweep, out_dir=model_dir)
    return spark.createDataFrame(
        [
            (run_id, at_rank(r[MODEL], int(r[SWEEP_K])), split, r[METRIC], float(r[VALUE]), None)
            for r in sweep.to_dict("records")
        ],
        METRICS_SCHEMA,
    )


def _evaluate(
    spark: SparkSession,
    model: Any,
    name: str,
    run_id: str,
    split: str,
    data: DataFrame,
    write_to: str | None,
    fold: int | None = None,
) -> DataFrame:
    """Predict ``data`` with a ``PREDICT`` model; optionally write the predictions; return
    metric rows.

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
        name, split, values[RMSE], values[MAE], 100 * values[PERSONALISED_SHARE],
    )
    return metrics_frame(spark, run_id=run_id, model=name, split=split, values=values, fold=fold)
