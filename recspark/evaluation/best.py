"""The run's best models: the lowest test RMSE, and the highest ranking metric.

From a run's metrics table (pandas; rows run_id, model, split, metric, value), on one split
(the run's main test split, e.g. ``random/test``):

- by RMSE: every model with an ``rmse`` row, ascending (rank-sweep rows ``<model>@k=<k>``
  are truncations of a model, not models, and are left out);
- by the ranking metric (``recommend.best_metric`` at ``recommend.k``, e.g. ``ndcg@10``):
  every model with that row, descending.

NaN values are left out; ties go to the model named first alphabetically, so the choice is
deterministic. The result is what :func:`recspark.io.runs.write_best` saves as
``best.json`` and :func:`best_rows` adds to the metrics table (metric ``best_by_rmse``,
``best_by_ndcg@10``: the model column names the winner, the value is its figure).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from recspark.schema import FOLD, METRIC, METRICS_SCHEMA, MODEL, RMSE, RUN_ID, SPLIT, VALUE, best_by

#: Keys of the :func:`best_models` dict (and of ``best.json``).
SPLIT_KEY, RMSE_KEY, RANKING_METRIC_KEY, RANKING_KEY = "split", "rmse", "ranking_metric", "ranking"


def _ordered(metrics: pd.DataFrame, *, split: str, metric: str, descending: bool) -> list[dict[str, Any]]:
    rows = metrics[(metrics[SPLIT] == split) & (metrics[METRIC] == metric)]
    rows = rows[~rows[MODEL].str.contains("@", regex=False)]
    pairs = [(str(m), float(v)) for m, v in zip(rows[MODEL], rows[VALUE]) if v is not None and not math.isnan(v)]
    pairs.sort(key=lambda p: ((-p[1] if descending else p[1]), p[0]))
    return [{MODEL: m, VALUE: v} for m, v in pairs]


def best_models(metrics: pd.DataFrame, *, split: str, ranking_metric: str) -> dict[str, Any]:
    """``{"split", "rmse": [{model, value}, ...] best first, "ranking_metric",
    "ranking": [...] best first}`` from a metrics table (module docstring). A list is
    empty when no model has the metric on ``split``."""
    return {
        SPLIT_KEY: split,
        RMSE_KEY: _ordered(metrics, split=split, metric=RMSE, descending=False),
        RANKING_METRIC_KEY: ranking_metric,
        RANKING_KEY: _ordered(metrics, split=split, metric=ranking_metric, descending=True),
    }


def best_rows(best: dict[str, Any], *, run_id: str) -> pd.DataFrame:
    """The metrics-table rows naming the winners of :func:`best_models`:
    (run_id, <best model>, split, ``best_by_rmse`` / ``best_by_<ranking metric>``, its value,
    fold null); no row for an empty list."""
    rows = [
        {RUN_ID: run_id, MODEL: ranked[0][MODEL], SPLIT: best[SPLIT_KEY], METRIC: best_by(metric),
         VALUE: ranked[0][VALUE], FOLD: None}
        for metric, ranked in ((RMSE, best[RMSE_KEY]), (best[RANKING_METRIC_KEY], best[RANKING_KEY]))
        if ranked
    ]
    return pd.DataFrame(rows, columns=METRICS_SCHEMA.names)
