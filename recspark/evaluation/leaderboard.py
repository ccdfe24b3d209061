"""The leaderboard: one row per model of a run's metrics table, the figures people compare.

Input: the metrics table as pandas (run_id, model, split, metric, value, and a nullable
``fold`` column when cross-validation folds were used). With folds, only the summary rows
(``fold`` null) are read: metric ``<name>`` holds the mean over folds and ``<name>_std``
its standard deviation.

Output columns, per model (rank-sweep rows ``<model>@k=K`` left out):

- ``rmse``, ``mae`` of split ``<kind>/test`` (lower is better)
- ``ndcg@k``, ``hit_rate@k``, ``coverage@k`` of split ``<kind>/test`` (higher is better)
- ``fit_seconds`` of split ``<kind>/train`` (lower is better)

and ``<column>_std`` beside any column that has ``_std`` rows. A model that cannot predict
or rank has NaN in those columns. Rows are sorted by one chosen column, best first (NaN
last).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from recspark.errors import ConfigError
from recspark.schema import (
    FIT_SECONDS,
    FOLD,
    MAE,
    METRIC,
    MODEL,
    RMSE,
    RUN_ID,
    SPLIT,
    VALUE,
    coverage_at,
    hit_rate_at,
    ndcg_at,
    std_of,
)

#: Suffix of the metric holding the standard deviation over folds of ``<name>``.
STD = std_of("")


def fold_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof = 1) over folds of every per-fold metric,

        mean = Σ_f x_f / K,   std = sqrt(Σ_f (x_f − mean)² / (K − 1))

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
    """The leaderboard column of metric ``name`` as ``train.leaderboard_by`` spells it
    (``ndcg`` → ``ndcg@k``; a column name passes). Raises :class:`ConfigError` for a metric
    not on the board."""
    cols = columns(k)
    for column in cols:
        if name in (column, column.split("@", 1)[0]):
            return column
    raise ConfigError(f"cannot sort the leaderboard by {name!r}; choose one of {', '.join(cols)}")


def columns(k: int) -> list[str]:
    """The leaderboard's metric columns at ranking cut-off ``k``, in display order."""
    return [RMSE, MAE, ndcg_at(k), hit_rate_at(k), coverage_at(k), FIT_SECONDS]


def lower_is_better(column: str) -> bool:
    """True for error and time columns (RMSE, MAE, fit seconds), False for ranking ones."""
    return column in (RMSE, MAE, FIT_SECONDS)


def leaderboard(metrics: pd.DataFrame, *, kind: str, k: int, sort_by: str = RMSE) -> pd.DataFrame:
    """The leaderboard of ``metrics`` on split kind ``kind`` (see the module docstring).

    Returns a frame with a ``model`` column, the :func:`columns` and any ``_std`` columns,
    sorted by ``sort_by`` (best first, by :func:`lower_is_better`; ties by model name).
    Raises ValueError when ``sort_by`` is not one of the :func:`columns`.
    """
    cols = columns(k)
    if sort_by not in cols:
        raise ValueError(f"cannot sort the leaderboard by {sort_by!r}; choose one of {cols}")
    rows = metrics
    if FOLD in rows.columns:
        rows = rows[rows[FOLD].isna()]
    rows = rows[~rows[MODEL].str.contains("@", regex=False)]
    split_of = {c: f"{kind}/train" if c == FIT_SECONDS else f"{kind}/test" for c in cols}
    pick = pd.concat(
        [
            rows[rows[METRIC].isin([c, c + STD]) & (rows[SPLIT] == split_of[c])]
            for c in cols
        ]
    )
    wide = pick.pivot_table(index=MODEL, columns=METRIC, values=VALUE, aggfunc="first")
    keep = [n for c in cols for n in (c, c + STD) if n == c or n in wide.columns]
    board = wide.reindex(index=sorted(rows[MODEL].unique()), columns=keep)
    board = board.rename_axis(index=MODEL, columns=None).reset_index()
    return board.sort_values(
        [sort_by, MODEL], ascending=[lower_is_better(sort_by), True], na_position="last"
    ).reset_index(drop=True)


def best(board: pd.DataFrame, *, k: int) -> dict[str, str]:
    """Column → model with the best value of that column (NaN ignored; ties: the first
    row); columns where no model has a value are left out."""
    out = {}
    for column in columns(k):
        values = board[column]
        if values.notna().any():
            at = values.idxmin() if lower_is_better(column) else values.idxmax()
            out[column] = board.at[at, MODEL]
    return out


def cell(board: pd.DataFrame, row: int, column: str) -> str:
    """One leaderboard value as text: 4 decimals (1 for seconds), ``mean ± std`` when the
    column has a standard deviation, empty for NaN."""
    value = board.at[row, column]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    digits = 1 if column == FIT_SECONDS else 4
    text = f"{value:.{digits}f}"
    std = column + STD
    if std in board.columns and not np.isnan(board.at[row, std]):
        text += f" ± {board.at[row, std]:.{digits}f}"
    return text


def format_board(board: pd.DataFrame, *, k: int, width: int = 120) -> str:
    """The leaderboard as a plain-text table for the terminal, best values marked ``*``.

    Columns are as wide as their longest cell; model names longer than what fits in
    ``width`` characters are shortened with ``…`` so every line is at most ``width``.
    """
    cols = columns(k)
    winners = best(board, k=k)
    header = [MODEL, *cols]
    body = [
        [str(board.at[i, MODEL])]
        + [cell(board, i, c) + ("*" if winners.get(c) == board.at[i, MODEL] else "") for c in cols]
        for i in range(len(board))
    ]
    widths = [max(len(r[j]) for r in [header, *body]) for j in range(len(header))]
    spare = width - (sum(widths) + 2 * (len(widths) - 1))
    if spare < 0:
        widths[0] = max(8, widths[0] + spare)
    lines = []
    for r in [header, *body]:
        first = r[0] if len(r[0]) <= widths[0] else r[0][: widths[0] - 1] + "…"
        cells = [first.ljust(widths[0])] + [v.rjust(w) for v, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * min(width, len(lines[0])))
    lines.append("* best value of the column")
    return "\n".join(lines)
