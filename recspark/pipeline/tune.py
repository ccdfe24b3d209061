"""Hyper-parameter search: grid or seeded random search over any model's config keys.

    python jobs/tune.py --model als --grid 'als.rank=[10,20,30]' --grid 'als.reg_factors=[0.1,0.15]'

The ratings are split by ``split`` (as a train run would) and the test part is set aside,
never read: every trial is scored on the training part only, either by k-fold
cross-validation (``--folds K``: :func:`recspark.split.kfold_split` of the training part)
or on one validation part carved from it (``--folds 0``: :func:`recspark.split.random_split`
with ``train.validation_fraction``, 0.2 when unset, seed derived from ``"validation"``, the
split the ``conf/`` overlays were first tuned on). The parts and their bias models are
built once and shared by every trial (refitted per trial only when the grid searches
``bias.*``).

A trial's score is the mean over parts of ``rmse`` (lower is better) or ``ndcg@k``
(``recommend.k``, relevance as in a train run; higher is better; ``TOP_N`` models only),
with its standard deviation over folds. Trials run ``--parallel`` at a time from a thread
pool: Spark runs jobs submitted from several threads concurrently, each thread in its own
scheduler pool (fair between trials when ``spark.scheduler.mode=FAIR``). MLlib's
``RowMatrix.computeSVD`` (ARPACK in the driver JVM) is not thread-safe (concurrent ``svd``
trials failed with an ArrayIndexOutOfBoundsException), so ``svd`` fits take turns at that
step (a lock in :mod:`recspark.models.svd.truncated`); two ALS trials at a time ran fine.

Writes into ``--output``: ``trials/`` Parquet and ``trials.csv`` (trial, one column per
searched key, ``<metric>``, ``<metric>_std``, the means of the other metrics the model
gives (RMSE and MAE when it predicts; precision, recall, NDCG, MAP, hit rate and coverage
at k when it ranks), ``fit_seconds`` summed over parts, ``rank`` 1 = best), one PNG per searched key (``<metric>_by_<key>.png``:
:func:`recspark.plots.trial_chart`) and the winning settings as a TOML overlay (the whole
config section of every searched key, with a header recording the command, the scoring
and the best trials), ready for ``-c``.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, config_from_dict, expand, to_toml
from recspark.errors import ConfigError
from recspark.evaluation.ranking import metric_names, ranking_metrics, relevant_items
from recspark.evaluation.rating import regression_metrics
from recspark.io import storage
from recspark.io.ingested import read_ratings
from recspark.log import stage
from recspark.models import registry
from recspark.models.bias import BiasModel, fit_bias
from recspark.models.contract import Ability, require
from recspark.plots import trial_chart
from recspark.schema import (
    FIT_SECONDS, MAE, MOVIE_ID, N_RATINGS, NDCG, RATING, RMSE, USER_ID, ndcg_at, std_of,
)
from recspark.seeds import derive_seed
from recspark.session import map_in_pools
from recspark.serving.topn import recommend, with_min_support
from recspark.split import kfold_split, random_split, split_ratings

_logger = logging.getLogger(__name__)

TRIAL = "trial"
RANK = "rank"
METRICS = (RMSE, NDCG)


def parse_grid(texts: Sequence[str]) -> dict[str, list[Any]]:
    """``["als.rank=[10,20]", "als.reg_factors=0.1"]`` → ``{"als.rank": [10, 20],
    "als.reg_factors": [0.1]}``: values read as TOML (a bare value is one choice). Raises
    ConfigError for a malformed entry, an empty list or a key given twice."""
    grid: dict[str, list[Any]] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or key.count(".") != 1 or not all(key.split(".")):
            raise ConfigError(f"--grid {text!r}: expected section.key=[v1, v2, ...]")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        values = value if isinstance(value, list) else [value]
        if not values or key in grid:
            raise ConfigError(f"--grid {text!r}: {'no values' if not values else 'key given twice'}")
        grid[key] = values
    if not grid:
        raise ConfigError("give at least one --grid section.key=[v1, v2, ...]")
    return grid


def trial_settings(grid: dict[str, list[Any]], *, trials: int, seed: int) -> list[dict[str, Any]]:
    """The settings of every trial: the whole grid (its product, in order) when ``trials``
    is 0 or at least its size, else ``trials`` combinations drawn without replacement by
    ``numpy.random.default_rng(seed)`` (kept in grid order)."""
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if 0 < trials < len(combos):
        picked = np.sort(np.random.default_rng(seed).choice(len(combos), trials, replace=False))
        combos = [combos[i] for i in picked]
    return combos


def with_settings(cfg: Config, settings: dict[str, Any]) -> Config:
    """``cfg`` with dotted ``settings`` applied, validated (ConfigError names a bad key)."""
    raw = cfg.model_dump()
    for key, value in settings.items():
        section, name = key.split(".")
        if not isinstance(raw.get(section), dict):
            raise ConfigError(f"--grid {key}: no config section {section!r}")
        raw[section] = {**raw[section], name: value}
    return config_from_dict(raw)


@dataclass(frozen=True)
class Part:
    """One scoring part: fit on ``train`` (cached), score on ``holdout``; ``bias`` is the
    baseline fitted on ``train``; ``counts`` (movie_id, n_ratings, cached) the training
    ratings per movie, for ``recommend.min_support``."""

    train: DataFrame
    holdout: DataFrame
    bias: BiasModel
    counts: DataFrame


def scoring_parts(cfg: Config, ratings: DataFrame, *, folds: int) -> list[Part]:
    """The parts every trial is scored on (module docstring): the training part of
    ``cfg.split``, cut into ``folds`` k-fold parts, or one validation part when
    ``folds`` = 0. The test part is never used."""
    train, _test = split_ratings(ratings, cfg=cfg.split, seed=derive_seed(cfg.seed, "split"))
    if folds >= 2:
        seed = derive_seed(cfg.seed, "tune")
        pairs = [kfold_split(train, folds=folds, fold=f, seed=seed) for f in range(folds)]
    else:
        fraction = cfg.train.validation_fraction or 0.2
        pairs = [random_split(train, test_fraction=fraction,
                              seed=derive_seed(cfg.seed, "validation"))]
    lo, hi = cfg.train.rating_min, cfg.train.rating_max
    parts = []
    for fit_part, holdout in pairs:
        fit_part, holdout = fit_part.cache(), holdout.cache()
        counts = fit_part.groupBy(MOVIE_ID).agg(F.count(F.lit(1)).alias(N_RATINGS)).cache()
        parts.append(Part(fit_part, holdout, fit_bias(fit_part, cfg=cfg.bias, lo=lo, hi=hi), counts))
    return parts


def score(cfg: Config, model: str, part: Part, *, refit_bias: bool = False) -> dict[str, float]:
    """``model`` fitted with ``cfg`` on ``part.train`` and measured on ``part.holdout``:
    RMSE and MAE when it predicts, and when it ranks (and ``recommend.enabled``) precision,
    recall, NDCG, MAP, hit rate and coverage at ``recommend.k`` (relevance: rating >=
    ``recommend.relevance_threshold``; movies with fewer than ``recommend.min_support``
    ratings in ``part.train`` never listed, as in a train run). ``refit_bias``: fit the
    baseline with ``cfg.bias`` instead of using ``part.bias``. Returns {metric: value}.
    Actions: the fit(s), one aggregation per metric family."""
    lo, hi = cfg.train.rating_min, cfg.train.rating_max
    bias = fit_bias(part.train, cfg=cfg.bias, lo=lo, hi=hi) if refit_bias else part.bias
    fitted = registry.fit(model, part.train, cfg=cfg, bias=bias)
    spec = registry.spec(model)
    values: dict[str, float] = {}
    if spec.can(Ability.PREDICT):
        errors = regression_metrics(fitted.predict(part.holdout.select(USER_ID, MOVIE_ID, RATING)))
        values.update({RMSE: errors[RMSE], MAE: errors[MAE]})
    rc = cfg.recommend
    if spec.can(Ability.TOP_N) and rc.enabled:
        inputs = with_min_support(fitted.ranking_inputs(), part.counts, min_support=rc.min_support)
        lists = recommend(inputs, part.train.select(USER_ID, MOVIE_ID, RATING), n=rc.k,
                          model=model, block_users=rc.block_users,
                          max_chunk_cells=rc.max_chunk_cells)
        relevant = relevant_items(part.holdout, threshold=rc.relevance_threshold)
        ranking = ranking_metrics(lists, relevant, k=rc.k, catalogue=part.train.select(MOVIE_ID))
        values.update({m: v for m, v in ranking.items() if m in metric_names(rc.k)})
    return values


def search(
    spark: SparkSession,
    cfg: Config,
    ratings: DataFrame,
    *,
    model: str,
    grid: dict[str, list[Any]],
    metric: str = RMSE,
    folds: int = 0,
    trials: int = 0,
    parallel: int = 1,
) -> pd.DataFrame:
    """Score every trial of ``grid`` (:func:`trial_settings`, seed derived from ``"tune"``)
    for ``model`` on the training part of ``ratings`` (module docstring); returns the
    trials table sorted best first. Raises ConfigError for an unknown model or key, a
    bad value, a metric other than ``rmse``/``ndcg`` or one the model cannot produce."""
    spec = registry.spec(model)
    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    needed = Ability.PREDICT if metric == RMSE else Ability.TOP_N
    require(spec, needed, setting="--model", choices=registry.with_ability(needed))
    if metric == NDCG and not cfg.recommend.enabled:
        raise ConfigError("--metric ndcg needs recommend.enabled = true")
    settings = trial_settings(grid, trials=trials, seed=derive_seed(cfg.seed, "tune"))
    configs = [with_settings(cfg, s) for s in settings]  # every bad value fails before Spark work
    refit_bias = any(key.startswith("bias.") for key in grid)
    with stage(f"tune {model}: scoring parts", spark):
        parts = scoring_parts(cfg, ratings, folds=folds)
    name = metric if metric == RMSE else ndcg_at(cfg.recommend.k)

    def run(i: int) -> dict[str, Any]:
        start = time.perf_counter()
        with stage(f"tune {model}: trial {i} {settings[i]}", spark):
            values = pd.DataFrame([score(configs[i], model, p, refit_bias=refit_bias) for p in parts])
        chosen = values.pop(name)
        row = {TRIAL: i, **settings[i], name: float(chosen.mean()),
               std_of(name): float(chosen.std(ddof=1)) if len(chosen) > 1 else math.nan,
               **values.mean().to_dict(), FIT_SECONDS: time.perf_counter() - start}
        _logger.info("trial %d %s: %s %.4f", i, settings[i], name, row[name])
        return row

    rows = map_in_pools(spark, run, range(len(settings)), parallel=parallel, pool="trial")
    for p in parts:
        p.train.unpersist()
        p.holdout.unpersist()
        p.counts.unpersist()
    table = pd.DataFrame(rows).sort_values([name, TRIAL], ascending=[metric == RMSE, True])
    table[RANK] = np.arange(1, len(table) + 1)
    return table.reset_index(drop=True)


def overlay_text(cfg: Config, table: pd.DataFrame, grid: dict[str, list[Any]], *,
                 command: str, scoring: str, top: int = 5) -> str:
    """The winning trial's settings as a TOML overlay: a header (the command, the scoring,
    the ``top`` best trials) and the whole config section of every searched key."""
    best = {key: table.iloc[0][key] for key in grid}
    best = {k: v.item() if isinstance(v, np.generic) else v for k, v in best.items()}
    winner = with_settings(cfg, best)
    shown = table.head(top).drop(columns=[RANK]).to_string(index=False, float_format=lambda v: f"{v:.4f}")
    lines = [
        "# Generated by recspark's search (jobs/tune.py); do not edit by hand, re-run:",
        f"#   {command}",
        f"# Scoring: {scoring}. Best {min(top, len(table))} of {len(table)} trials:",
        *[f"#   {line}" for line in shown.splitlines()],
    ]
    for section in dict.fromkeys(key.split(".")[0] for key in grid):
        lines += ["", f"[{section}]", to_toml(winner.section(section)).rstrip("\n")]
    return "\n".join(lines) + "\n"


def run_tune(spark: SparkSession, cfg: Config, args: Any) -> pd.DataFrame:
    """The search job (``jobs/tune.py``): read the ingested ratings, :func:`search`, write
    the trials table, the PNGs and the overlay (module docstring); returns the table."""
    grid = parse_grid(args.grid)
    metric = args.metric
    ratings = read_ratings(spark, expand(cfg.ingest_dir()))
    table = search(spark, cfg, ratings, model=args.model, grid=grid, metric=metric,
                   folds=args.folds, trials=args.trials, parallel=args.parallel)
    out = expand(args.output or f"out/tune/{args.model}").rstrip("/")
    with stage(f"tune {args.model}: write trials", spark):
        spark.createDataFrame(table.astype({k: str for k in grid if table[k].dtype == object})) \
            .coalesce(1).write.mode("overwrite").parquet(f"{out}/trials")
        storage.write_text(spark, f"{out}/trials.csv", table.to_csv(index=False))
    name = table.columns[len(grid) + 1]
    for key in grid:
        trial_chart(spark, table, param=key, metric=name, path=f"{out}/{name}_by_{key}.png",
                    title=f"{args.model}: {name} by {key}")
    scoring = (f"{args.folds}-fold CV of the {cfg.split.kind} training part" if args.folds >= 2
               else f"validation part ({cfg.train.validation_fraction or 0.2:g}) of the "
                    f"{cfg.split.kind} training part") + f", {cfg.data.dataset}, seed {cfg.seed}"
    text = overlay_text(cfg, table, grid, command=args.command, scoring=scoring)
    overlay = args.overlay or f"{out}/best.toml"
    if "://" in overlay:
        storage.write_text(spark, overlay, text)
    else:
        Path(overlay).write_text(text, encoding="utf-8")
    _logger.info("best of %d trials: %s; overlay %s", len(table),
                 table.iloc[0][list(grid) + [name]].to_dict(), overlay)
    return table
