"""Train-run step: top-N lists and ranking metrics of every ``TOP_N`` model, written into
the run folder.

Called by :func:`recspark.pipeline.train.run_train` once per split kind (the run's own and
every ``recommend.extra_splits``). Writes

- ``recommendations/`` Parquet partitioned by ``model``: user_id, rank, movie_id, score
  (top ``recommend.n`` per user the model ranks, training ratings excluded, and movies with
  fewer than ``recommend.min_support`` training ratings too, whatever the model)

and returns metric rows (run_id, model, split, metric, value) for split ``<kind>/test``:
precision@k, recall@k, ndcg@k, map@k, hit_rate@k, coverage@k and ranking_users (see
:mod:`recspark.evaluation.ranking`), and beside them the beyond-accuracy figures ild@k,
novelty@k, popularity_bias@k (:mod:`recspark.evaluation.beyond`). Relevance follows the run's split: on ``random`` a test
rating >= ``recommend.relevance_threshold`` is relevant, on ``leave_last_out`` every
held-out item is.
"""

from __future__ import annotations

import logging
from typing import Mapping

from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config
from recspark.evaluation.beyond import beyond_accuracy, movie_popularity
from recspark.evaluation.ranking import ranking_metrics, relevant_items
from recspark.evaluation.rating import metrics_frame
from recspark.io.runs import RECOMMENDATIONS_DIR
from recspark.log import stage
from recspark.models.contract import Ranker
from recspark.schema import MODEL, MOVIE_ID, RATING, USER_ID
from recspark.serving.topn import recommend, with_min_support

_logger = logging.getLogger(__name__)


def recommend_and_rank(
    spark: SparkSession,
    cfg: Config,
    *,
    rankers: Mapping[str, Ranker],
    train: DataFrame,
    test: DataFrame,
    run_id: str,
    out_dir: str,
    kind: str,
    movies: DataFrame | None = None,
) -> list[DataFrame]:
    """Write ``<out_dir>/recommendations/model=<name>/`` for every model in ``rankers``
    (fitted ``TOP_N`` models by registered name) and return their ranking and
    beyond-accuracy metric rows on split ``<kind>/test`` (``kind``: how ``train``/``test``
    were split; ``movies``: movie_id, genres for the diversity, None to skip it). ``train``
    is a part of the ingested ratings, so it holds each (user, movie) pair once (ingest
    deduplicates; :func:`movie_popularity` counts on it). Returns [] when
    ``recommend.enabled`` is false.

    Actions: per model one top-N job (written, then read back for the metrics) and the
    metrics' aggregations.
    """
    rc = cfg.recommend
    if not rc.enabled or not rankers:
        return []
    threshold = None if kind == "leave_last_out" else rc.relevance_threshold
    split = f"{kind}/test"
    rated = train.select(USER_ID, MOVIE_ID, RATING)
    with stage(f"relevant items and movie popularity on {split}", spark):
        relevant = relevant_items(test, threshold=threshold).cache()
        popularity = movie_popularity(train, distinct_pairs=True).cache()
        catalogue = popularity.select(MOVIE_ID)  # one row per movie of train, held small
    rows = []
    for name, model in rankers.items():
        path = f"{out_dir.rstrip('/')}/{RECOMMENDATIONS_DIR}/{MODEL}={name}"
        with stage(f"top-{rc.n} recommendations of {name}", spark):
            inputs = with_min_support(
                model.ranking_inputs(), popularity, min_support=rc.min_support
            )
            recs = recommend(
                inputs, rated, n=rc.n, model=name, block_users=rc.block_users,
                max_chunk_cells=rc.max_chunk_cells,
            )
            recs.drop(MODEL).write.parquet(path)
        with stage(f"ranking metrics of {name} on {split}", spark):
            lists = spark.read.parquet(path)
            values = ranking_metrics(lists, relevant, k=rc.k, catalogue=catalogue)
            values.update(beyond_accuracy(lists, k=rc.k, popularity=popularity, movies=movies))
        _logger.info(
            "%s %s: %s", name, split, "  ".join(f"{m} {v:.4f}" for m, v in values.items())
        )
        rows.append(metrics_frame(spark, run_id=run_id, model=name, split=split, values=values))
    relevant.unpersist()
    popularity.unpersist()
    return rows
