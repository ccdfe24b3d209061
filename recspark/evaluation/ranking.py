"""Ranking metrics of top-N lists.

Binary relevance. A test rating (u, i, r) is *relevant* when r >= ``threshold`` (random
split, default 4.0); on the leave-last-out split every held-out item is relevant
(``threshold=None``). For a user u with relevant set Rel_u (|Rel_u| >= 1) and top-k list
L_u = (l_1, …, l_k), rel_r = 1 if l_r ∈ Rel_u else 0, hits_u = Σ_r rel_r:

    precision@k = hits_u / k
    recall@k    = hits_u / |Rel_u|
    NDCG@k      = DCG / IDCG,  DCG = Σ_r rel_r / log2(r + 1),
                  IDCG = Σ_{r=1}^{min(|Rel_u|, k)} 1 / log2(r + 1)
    AP@k        = Σ_r rel_r · (Σ_{s<=r} rel_s) / r  /  min(|Rel_u|, k)
    hit@k       = 1 if hits_u > 0 else 0

Each is averaged over the users with at least one relevant test item (MAP@k is the mean
AP@k, hit rate@k the mean hit@k); a user with no list (unknown to the model) scores 0.
A list shorter than k still divides precision by k.

    coverage@k = |∪_u L_u| / |catalogue|

over every user's list (not only evaluated users); the catalogue is the set of movies in
training. All of it is computed in Spark (join lists with relevance, aggregate per user,
then average); only the final figures reach the driver.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.errors import ConfigError
from recspark.schema import (
    MOVIE_ID,
    RANK,
    RANKING_USERS,
    RATING,
    RELEVANT,
    USER_ID,
    coverage_at,
    hit_rate_at,
    map_at,
    ndcg_at,
    precision_at,
    recall_at,
    require_columns,
)

_logger = logging.getLogger(__name__)

_CUM, _NREL, _HITS, _DCG, _AP = "_cum_hits", "_n_relevant", "_hits", "_dcg", "_ap_sum"
_COVERED, _TOTAL = "_covered", "_total"


def metric_names(k: int) -> list[str]:
    """The metric names :func:`ranking_metrics` returns, in order."""
    return [
        precision_at(k),
        recall_at(k),
        ndcg_at(k),
        map_at(k),
        hit_rate_at(k),
        coverage_at(k),
        RANKING_USERS,
    ]


def relevant_items(test: DataFrame, *, threshold: float | None) -> DataFrame:
    """The relevant test pairs (user_id, movie_id): rating >= ``threshold``, or every test
    pair when ``threshold`` is None (leave-last-out)."""
    require_columns(test, [USER_ID, MOVIE_ID] + ([RATING] if threshold is not None else []),
                    stage="relevant_items")
    rel = test if threshold is None else test.where(F.col(RATING) >= F.lit(float(threshold)))
    return rel.select(USER_ID, MOVIE_ID).distinct()


def ranking_metrics(
    recommendations: DataFrame, relevant: DataFrame, *, k: int, catalogue: DataFrame
) -> dict[str, float]:
    """Precision, recall, NDCG, MAP, hit rate and coverage at ``k`` (module docstring).

    ``recommendations``: user_id, rank, movie_id (one model's lists, rank 1 = best; ranks
    above k are ignored); ``relevant``: user_id, movie_id (from :func:`relevant_items`);
    ``catalogue``: movie_id of every recommendable movie (duplicates allowed). Returns the
    figures keyed by :func:`metric_names`, plus ``ranking_users`` (users evaluated); NaN
    when no user has a relevant item. Action: one aggregation job.
    """
    if k < 1:
        raise ConfigError(f"recommend.k must be at least 1, got {k}")
    require_columns(recommendations, [USER_ID, RANK, MOVIE_ID], stage="ranking_metrics")
    require_columns(relevant, [USER_ID, MOVIE_ID], stage="ranking_metrics (relevant)")
    require_columns(catalogue, [MOVIE_ID], stage="ranking_metrics (catalogue)")
    top = recommendations.where(F.col(RANK) <= k).select(USER_ID, RANK, MOVIE_ID)
    rel = relevant.select(USER_ID, MOVIE_ID).distinct().withColumn(RELEVANT, F.lit(1))
    flagged = top.join(rel, [USER_ID, MOVIE_ID], "left").fillna(0, subset=[RELEVANT])
    w = Window.partitionBy(USER_ID).orderBy(RANK).rowsBetween(Window.unboundedPreceding, 0)
    flagged = flagged.withColumn(_CUM, F.sum(RELEVANT).over(w))
    per_user_lists = flagged.groupBy(USER_ID).agg(
        F.sum(RELEVANT).alias(_HITS),
        F.sum(F.col(RELEVANT) / F.log2(F.col(RANK) + 1.0)).alias(_DCG),
        F.sum(F.col(RELEVANT) * F.col(_CUM) / F.col(RANK)).alias(_AP),
    )
    n_rel = rel.groupBy(USER_ID).agg(F.count(F.lit(1)).alias(_NREL))
    per_user = n_rel.join(per_user_lists, USER_ID, "left").fillna(0.0, subset=[_HITS, _DCG, _AP])
    ideal = F.least(F.col(_NREL), F.lit(k))
    idcg = F.aggregate(
        F.sequence(F.lit(1), ideal.cast("int")),
        F.lit(0.0),
        lambda acc, r: acc + 1.0 / F.log2(r + 1.0),
    )
    names = metric_names(k)
    means = per_user.agg(
        F.avg(F.col(_HITS) / F.lit(float(k))).alias(names[0]),
        F.avg(F.col(_HITS) / F.col(_NREL)).alias(names[1]),
        F.avg(F.col(_DCG) / idcg).alias(names[2]),
        F.avg(F.col(_AP) / ideal).alias(names[3]),
        F.avg((F.col(_HITS) > 0).cast("double")).alias(names[4]),
        F.count(F.lit(1)).cast("double").alias(names[6]),
    )
    covered = top.agg(F.countDistinct(MOVIE_ID).alias(_COVERED))
    total = catalogue.agg(F.countDistinct(MOVIE_ID).alias(_TOTAL))
    row = means.crossJoin(covered).crossJoin(total).first()
    values = {name: (float(row[name]) if row[name] is not None else float("nan"))
              for name in names if name != names[5]}
    values[names[5]] = float(row[_COVERED]) / row[_TOTAL] if row[_TOTAL] else float("nan")
    return {name: values[name] for name in names}
