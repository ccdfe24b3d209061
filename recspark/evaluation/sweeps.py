"""Rank sweeps: a ``RANK_SWEEP`` model (SVD) evaluated at every smaller rank in one pass.

For a model whose components are ordered (the first k of p_u and q_i give the rank-k
model), the prediction at rank k is

    r̂_k(u, i) = clip(μ + b_u + b_i + Σ_{j<k} p_uj q_ij)

so one join of the pairs with the full factors and prefix sums of the products
p_uj q_ij score every k in a single aggregation. Unknown pairs get the bias fallback, as in
:meth:`recspark.models.factor.FactorModel.predict`.
"""

from __future__ import annotations

import logging
from typing import Sequence

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.errors import ConfigError
from recspark.models.base import broadcast_if_small, clip
from recspark.models.factor import dot
from recspark.schema import (
    BIAS,
    BIAS_PREDICTION,
    FACTORS,
    MAE,
    METRIC,
    MODEL,
    MOVIE_ID,
    RATING,
    RMSE,
    SWEEP_K,
    USER_ID,
    VALUE,
    require_columns,
)

_logger = logging.getLogger(__name__)

_UB, _UF, _IB, _IF = "_svd_ub", "_svd_uf", "_svd_ib", "_svd_if"


def sweep_rows(model, data: DataFrame, *, ks: Sequence[int] | None = None) -> pd.DataFrame:
    """RMSE and MAE of ``model`` (a ``RANK_SWEEP`` model, see
    :class:`recspark.models.contract.RankSweepable`) truncated to each rank in ``ks`` on
    ``data``.

    ``data``: user_id, movie_id, rating. ``ks`` defaults to the fitted ``settings["sweep"]``
    (or the model's rank); ranks above the computed components are skipped with a warning.
    Uses ``model.sweep_model`` (all computed components) when not None, else the model.
    Returns a pandas frame with columns model, k, metric (``rmse`` / ``mae``), value.
    Raises ConfigError when no rank is usable. Action: one aggregation.
    """
    require_columns(data, [USER_ID, MOVIE_ID, RATING], stage="svd sweep")
    full = model.sweep_model or model
    wanted = list(ks) if ks is not None else list(model.settings.get("sweep") or [model.rank])
    usable = sorted({k for k in wanted if 1 <= k <= full.rank})
    skipped = sorted(set(wanted) - set(usable))
    if skipped:
        _logger.warning(
            "%s sweep: skipping k=%s (only %d components)", model.name, skipped, full.rank
        )
    if not usable:
        raise ConfigError(f"{model.name} sweep: no rank in {wanted} is between 1 and {full.rank}")
    users = full.user_factors.select(USER_ID, F.col(BIAS).alias(_UB), F.col(FACTORS).alias(_UF))
    items = full.item_factors.select(MOVIE_ID, F.col(BIAS).alias(_IB), F.col(FACTORS).alias(_IF))
    scored = data.select(USER_ID, MOVIE_ID, RATING)
    if full.fallback is not None:
        scored = full.fallback.annotate(scored)
        fallback = F.col(BIAS_PREDICTION)
    else:
        fallback = F.lit(full.global_mean) + F.coalesce(F.col(_UB), F.lit(0.0)) + F.coalesce(
            F.col(_IB), F.lit(0.0)
        )
    scored = scored.join(broadcast_if_small(users), USER_ID, "left").join(
        broadcast_if_small(items), MOVIE_ID, "left"
    )
    base = F.lit(full.global_mean) + F.col(_UB) + F.col(_IB)
    aggs = []
    for k in usable:
        pred = clip(F.coalesce(base + dot(_UF, _IF, k), fallback), full.lo, full.hi)
        err = pred - F.col(RATING)
        aggs += [F.sqrt(F.avg(err * err)).alias(f"{RMSE}_{k}"), F.avg(F.abs(err)).alias(f"{MAE}_{k}")]
    row = scored.agg(*aggs).first().asDict()
    return pd.DataFrame(
        [
            {MODEL: model.name, SWEEP_K: k, METRIC: metric, VALUE: float(row[f"{metric}_{k}"])}
            for k in usable
            for metric in (RMSE, MAE)
        ]
    )
