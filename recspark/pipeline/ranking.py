"""Train-run step: top-N lists and ranking metrics of every factor model and the popularity
baseline, written into the run folder.

Called by :func:`recspark.pipeline.train.run_train` after the model loop, once per split
kind (the run's own and every ``recommend.extra_splits``). Writes

- ``recommendations/`` Parquet partitioned by ``model``: user_id, rank, movie_id, score
  (top ``recommend.n`` per training user, training ratings excluded)

and returns metric rows (run_id, model, split, metric, value) for split
``<kind>/test``: precision@k, recall@k, ndcg@k, map@k, hit_rate@k, coverage@k and
ranking_users (see :mod:`recspark.ranking`). Relevance follows the run's split: on
``random`` a test rating >= ``recommend.relevance_threshold`` is relevant, on
``leave_last_out`` every held-out item is.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config
from recspark.errors import ConfigError
from recspark.evaluate import metrics_frame
from recspark.log import stage
from recspark.ranking import (
    POPULARITY_MODEL,
    popularity_recommendations,
    ranking_metrics,
    relevant_items,
)
from recspark.recommend import is_factor_model, recommend_for_model
from recspark.schema import MODEL, MOVIE_ID, USER_ID

_logger = logging.getLogger(__name__)

RECOMMENDATIONS_DIR = "recommendations"


def recommend_and_rank(
    spark: SparkSession,
    cfg: Config,
    *,
    models: Mapping[str, Any],
    train: DataFrame,
    test: DataFrame,
    run_id: str,
    out_dir: str,
    kind: str,
) -> list[DataFrame]:
    """Write ``<out_dir>/recommendations/model=<name>/`` for every factor model in
    ``models`` (and the popularity baseline when ``recommend.popularity``) and return their
    ranking metric rows on split ``<kind>/test`` (``kind``: how ``train``/``test`` were
    split). Returns [] when ``recommend.enabled`` is false.

    Actions: per model one top-N job (written, then read back for the metrics) and one
    metrics aggregation.
    """
    rc = cfg.recommend
    if not rc.enabled:
        return []
    if rc.k > rc.n:
        raise ConfigError(
            f"recommend.k = {rc.k} exceeds the list length recommend.n = {rc.n}: "
            "set recommend.n >= recommend.k"
        )
    threshold = None if kind == "leave_last_out" else rc.relevance_threshold
    split = f"{kind}/test"
    rated = train.select(USER_ID, MOVIE_ID)
    relevant = relevant_items(test, threshold=threshold).cache()
    catalogue = train.select(MOVIE_ID).distinct()
    lists: dict[str, DataFrame] = {}
    for name, model in models.items():
        if is_factor_model(model):
            lists[name] = recommend_for_model(
                model, rated, n=rc.n, block_users=rc.block_users, max_chunk_cells=rc.max_chunk_cells
            )
        else:
            _logger.info("%s is not a factor model: no top-N lists", name)
    if rc.popularity:
        lists[POPULARITY_MODEL] = popularity_recommendations(
            rated, n=rc.n, block_users=rc.block_users, max_chunk_cells=rc.max_chunk_cells
        )
    rows = []
    for name, recs in lists.items():
        path = f"{out_dir.rstrip('/')}/{RECOMMENDATIONS_DIR}/{MODEL}={name}"
        with stage(f"top-{rc.n} recommendations of {name}", spark):
            recs.drop(MODEL).write.parquet(path)
        with stage(f"ranking metrics of {name} on {split}", spark):
            values = ranking_metrics(
                spark.read.parquet(path), relevant, k=rc.k, catalogue=catalogue
            )
        _logger.info(
            "%s %s: %s",
            name,
            split,
            "  ".join(f"{m} {v:.4f}" for m, v in values.items()),
        )
        rows.append(metrics_frame(spark, run_id=run_id, model=name, split=split, values=values))
    relevant.unpersist()
    return rows
