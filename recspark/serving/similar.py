"""Similar movies: for every movie, the k nearest others by cosine of their item factors.

    sim(i, j) = q_i · q_j / (||q_i|| ||q_j||)

A movie whose factor vector is all zeros has no direction; its norm is taken as 1, so its
similarity to everything is 0 (it still gets k neighbours, in movie_idx order of ties).

Distribution: the item factor table is small (87,585 × rank doubles is 7 MB at rank 10), so
it is collected to the driver, L2-normalised and broadcast once. The query movies are cut
into blocks of ``block`` rows; a Spark task per block computes the dense (chunk × movies)
similarity matrix in NumPy chunks small enough to bound memory (about
``max_chunk_cells`` doubles at once), masks the movie itself, and keeps the top k with
the top-N lists' exact grouped selection (:func:`recspark.serving.topn.top_columns`: a pass
of group maxima, then a sort of the few candidates, instead of a partition of every row).
There is no all-pairs cross join in Spark: cost is M²·rank multiply-adds spread over the
tasks, memory O(M·rank + chunk·M) per task.
"""

from __future__ import annotations

import functools
import logging
from typing import Iterator

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.errors import ConfigError
from recspark.schema import (
    COUNT,
    FACTORS,
    MOVIE_ID,
    RANK,
    SIMILAR_MOVIE_ID,
    SIMILAR_SCHEMA,
    SIMILAR_TITLE,
    SIMILARITY,
    TITLE,
    require_columns,
)
from recspark.serving.topn import top_columns

_logger = logging.getLogger(__name__)

_BLOCK = "_block"


def normalise_rows(factors: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return factors / np.where(norms > 0, norms, 1.0)


def top_k_cosine(
    normed: np.ndarray, rows: np.ndarray, *, k: int, max_chunk_cells: int = 4_000_000
) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar other rows of ``normed`` for each query row index in ``rows``.

    ``normed`` (M × r) holds unit (or zero) rows, so the cosine is the dot product. Returns
    (neighbours, similarities), both (len(rows) × k), best first; the query row itself is
    never among its neighbours. Ties keep the smaller index first. Vectorised per chunk of
    at most ``max_chunk_cells`` similarity cells.
    """
    m = normed.shape[0]
    k = min(k, m - 1)
    n = rows.size
    out_idx = np.empty((n, max(k, 0)), dtype=np.int64)
    out_sim = np.empty((n, max(k, 0)), dtype=np.float64)
    if k <= 0 or n == 0:
        return out_idx, out_sim
    chunk = max(1, max_chunk_cells // m)
    for start in range(0, n, chunk):
        q = rows[start : start + chunk]
        sims = normed[q] @ normed.T  # (c × M)
        sims[np.arange(q.size), q] = -np.inf  # never the movie itself
        out_idx[start : start + q.size], out_sim[start : start + q.size] = top_columns(sims, k)
    return out_idx, out_sim


def _similar_task(
    batches: Iterator[pa.RecordBatch], *, table: Broadcast, k: int, block: int
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: each input row is a block number; emit that block's neighbours."""
    ids, normed = table.value
    m = ids.size
    for batch in batches:
        for b in batch.column(0).to_numpy():
            rows = np.arange(int(b) * block, min((int(b) + 1) * block, m), dtype=np.int64)
            nbr, sim = top_k_cosine(normed, rows, k=k)
            kk = nbr.shape[1]
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(np.repeat(ids[rows], kk)),
                    pa.array(np.tile(np.arange(1, kk + 1, dtype=np.int32), rows.size)),
                    pa.array(ids[nbr.ravel()]),
                    pa.array(sim.ravel()),
                ],
                names=SIMILAR_SCHEMA.names,
            )


def similar_movies(item_factors: DataFrame, *, k: int = 10, block: int = 2048) -> DataFrame:
    """For every movie in ``item_factors`` (movie_id, factors array<double>), its ``k`` most
    similar other movies by cosine of the factors (see the module docstring).

    Output (schema ``SIMILAR_SCHEMA``): movie_id, rank (1 = most similar), similar_movie_id,
    similarity; min(k, M − 1) rows per movie. Action: collects the item factor table to the
    driver (M × rank doubles) and broadcasts it; the result itself is lazy.
    """
    if k < 1:
        raise ConfigError(f"segment.similar_k must be at least 1, got {k}")
    if block < 1:
        raise ConfigError(f"segment.similar_block must be at least 1, got {block}")
    require_columns(item_factors, [MOVIE_ID, FACTORS], stage="similar_movies")
    spark = item_factors.sparkSession
    pdf = item_factors.select(MOVIE_ID, FACTORS).orderBy(MOVIE_ID).toPandas()
    ids = pdf[MOVIE_ID].to_numpy(dtype=np.int64)
    if ids.size < 2:
        _logger.warning("similar movies: %d movie(s) with factors, nothing to compare", ids.size)
        return spark.createDataFrame([], SIMILAR_SCHEMA)
    factors = np.vstack(pdf[FACTORS].to_numpy()).astype(np.float64)
    table = spark.sparkContext.broadcast((ids, normalise_rows(factors)))
    n_blocks = -(-ids.size // block)
    _logger.info(
        "similar movies: %d movies × rank %d, %d block(s) of %d", ids.size, factors.shape[1],
        n_blocks, block,
    )
    blocks = spark.range(0, n_blocks, 1, numPartitions=n_blocks).toDF(_BLOCK)
    task = functools.partial(_similar_task, table=table, k=k, block=block)
    return blocks.mapInArrow(task, SIMILAR_SCHEMA)


def with_min_support(item_factors: DataFrame, ratings: DataFrame, min_ratings: int) -> DataFrame:
    """The rows of ``item_factors`` whose movie has at least ``min_ratings`` rows in
    ``ratings`` (movie_id, ...). A movie with a handful of ratings has factors that are
    mostly the regulariser's prior, so its "neighbours" are noise: such movies are left out
    both as queries and as neighbours. ``min_ratings`` <= 1 keeps every movie."""
    require_columns(item_factors, [MOVIE_ID], stage="similar movies support")
    require_columns(ratings, [MOVIE_ID], stage="similar movies support")
    if min_ratings <= 1:
        return item_factors
    supported = (
        ratings.groupBy(MOVIE_ID).count().where(F.col(COUNT) >= min_ratings).select(MOVIE_ID)
    )
    return item_factors.join(supported, MOVIE_ID, "left_semi")


def with_titles(similar: DataFrame, movies: DataFrame) -> DataFrame:
    """Add ``title`` and ``similar_title`` from ``movies`` (movie_id, title); titles of movies
    missing from ``movies`` are null. Output: movie_id, rank, similar_movie_id, similarity,
    title, similar_title."""
    require_columns(movies, [MOVIE_ID, TITLE], stage="similar movie titles")
    titles = F.broadcast(movies.select(MOVIE_ID, TITLE))
    other = F.broadcast(
        movies.select(F.col(MOVIE_ID).alias(SIMILAR_MOVIE_ID), F.col(TITLE).alias(SIMILAR_TITLE))
    )
    return (
        similar.join(titles, MOVIE_ID, "left")
        .join(other, SIMILAR_MOVIE_ID, "left")
        .select(MOVIE_ID, RANK, SIMILAR_MOVIE_ID, SIMILARITY, TITLE, SIMILAR_TITLE)
    )
