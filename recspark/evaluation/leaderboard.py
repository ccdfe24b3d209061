"""The leaderboard: one row per model of a train run, its accuracy, ranking and cost figures.

Read from the run's metrics table (run_id, model, split, metric, value, fold). A run on one
split contributes its main split's ``<kind>/test`` rows (the split of its ``fit_seconds``
rows names the kind); a cross-validated run (``train.folds`` = K) contributes its fold
summaries (:func:`fold_summary`): split ``kfold/test`` (``kfold/train`` for fit seconds),
``fold`` null, metric ``<name>`` the mean over the K folds and ``<name>_std`` their
standard deviation (ddof = 1),

    mean = Σ_f x_f / K,   std = sqrt(Σ_f (x_f − mean)² / (K − 1))

Columns of :func:`leaderboard`: ``model``, then for each of RMSE, MAE, NDCG@k, hit
rate@k, coverage@k and fit seconds the figure and its ``_std`` (NaN without folds, and
NaN where a model has no such figure, e.g. RMSE of a ranking-only model).
"""

from __future__ import annotations

import math

import pandas as pd

from recspark.errors import ConfigError
from recspark.schema import (
    COVERAGE,
    FIT_SECONDS,
    FOLD,
    HIT_RATE,
    KFOLD,
    MAE,
    METRIC,
    MODEL,
    NDCG,
    RMSE,
    RUN_ID,
    SPLIT,
    VALUE,
    at_k,
    std_of,
)

#: Metrics where smaller is better (the leaderboard sorts them ascending).
_SMALLER_IS_BETTER = (RMSE, MAE, FIT_SECONDS)
#: The leaderboard's metrics; ranking ones are taken at the cut-off k.
BOARD_METRICS = (RMSE, MAE, NDCG, HIT_RATE, COVERAGE, FIT_SECONDS)
_AT_K = (NDCG, HIT_RATE, COVERAGE)


def fold_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof = 1) over folds of every per-fold metric.

    ``metrics``: the metrics table in pandas; rows with a non-null ``fold`` are per-fold.
    Returns rows of the same columns, ``fold`` null: for each (run_id, model, split, metric)
    with per-fold rows, ``<metric>`` = mean and ``<metric>_std`` = std (NaN for one fold).
    """
    per_fold = metrics[metrics[FOLD].notna()]
    keys = [RUN_ID, MODEL, SPLIT, METRIC]
    grouped = per_fold.groupby(keys, sort=True)[VALUE]
    mean = grouped.mean().reset_index()
    std = grouped.std(ddof=1).reset_index()
    std[METRIC] = std[METRIC].map(std_of)
    out = pd.concat([mean, std], ignore_index=True)
    out[FOLD] = pd.Series([None] * len(out), dtype="object")
    return out[keys + [VALUE, FOLD]]


def board_metric(name: str, k: int) -> str:
    """The metric-table name of leaderboard metric ``name`` (``ndcg`` → ``ndcg@k``; a name
    already at k passes). Raises :class:`ConfigError` for a metric not on the board."""
    base = name.split("@", 1)[0]
    if base not in BOARD_METRICS or ("@" in name and name != at_k(base, k)):
        choices = ", ".join(at_k(m, k) if m in _AT_K else m for m in BOARD_METRICS)
        raise ConfigError(f"cannot sort the leaderboard by {name!r}; choose from {choices}")
    return at_k(base, k) if base in _AT_K else base


def leaderboard(metrics: pd.DataFrame, *, k: int, sort_by: str = RMSE) -> pd.DataFrame:
    """One row per model of the run whose metrics table is ``metrics`` (module docstring),
    sorted by ``sort_by`` (RMSE, MAE and fit seconds ascending, the ranking metrics
    descending; missing figures last, ties by model name).

    ``k``: the ranking cut-off (``recommend.k``). Raises :class:`ConfigError` when
    ``sort_by`` is not a board metric and ValueError when ``metrics`` holds no
    ``fit_seconds`` rows (not a train run's table).
    """
    key = board_metric(sort_by, k)
    if FOLD not in metrics.columns:  # a table written before folds existed
        metrics = metrics.assign(**{FOLD: None})
    summary = metrics[metrics[FOLD].isna()]
    fits = summary[summary[METRIC] == FIT_SECONDS]
    if fits.empty:
        raise ValueError("the metrics table has no fit_seconds rows: not a train run's metrics")
    kfold = (fits[SPLIT] == f"{KFOLD}/train").any()
    kind = KFOLD if kfold else str(fits[SPLIT].iloc[0]).rsplit("/", 1)[0]
    models = sorted(fits.loc[fits[SPLIT] == f"{kind}/train", MODEL].unique())
    wanted = {}
    for name in BOARD_METRICS:
        metric = at_k(name, k) if name in _AT_K else name
        split = f"{kind}/train" if name == FIT_SECONDS else f"{kind}/test"
        wanted[metric] = (split, metric)
        wanted[std_of(metric)] = (split, std_of(metric))
    table = pd.DataFrame({MODEL: models})
    for column, (split, metric) in wanted.items():
        rows = summary[(summary[SPLIT] == split) & (summary[METRIC] == metric)]
        values = rows.drop_duplicates(MODEL).set_index(MODEL)[VALUE]
        table[column] = [float(values.get(m, math.nan)) for m in models]
    ascending = key.split("@", 1)[0] in _SMALLER_IS_BETTER
    table = table.sort_values([key, MODEL], ascending=[ascending, True], na_position="last")
    return table.reset_index(drop=True)


def format_leaderboard(table: pd.DataFrame) -> str:
    """The leaderboard as aligned text: ``mean ± std`` where a std is known."""
    figures = [c for c in table.columns if c != MODEL and not c.endswith("_std")]
    cells = {MODEL: table[MODEL].tolist()}
    for column in figures:
        digits = 1 if column == FIT_SECONDS else 4
        out = []
        for value, std in zip(table[column], table.get(std_of(column), [math.nan] * len(table))):
            text = "—" if pd.isna(value) else f"{value:.{digits}f}"
            out.append(text if pd.isna(std) else f"{text} ± {std:.{digits}f}")
        cells[column] = out
    return pd.DataFrame(cells).to_string(index=False)
