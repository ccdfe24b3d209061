"""Top-N recommendations from any factor model, excluding movies the user already rated.

Score of movie i for user u (the raw, unclipped model score; clipping would tie every
movie above the scale's top):

    s(u, i) = μ + b_u + b_i + p_u · q_i        (biased factor models: ALS, SVD, NMF)
    s(u, i) = p_u · q_i                        (MLlib ALS factors, no biases: μ = b = 0)

The top-N list of u holds the N movies with the largest s(u, i) among movies u has not
rated, best first; ties go to the smaller movie id, so the output is deterministic. A user
who rated all but m < N movies gets m rows.

Distribution: the item table (movie id, bias, factors: 87,585 × 11 doubles ≈ 8 MB at
ml-32m) is collected to the driver, sorted by movie id and broadcast. Users are hashed into
blocks of about ``block_users``; each block arrives in one Spark task (``applyInArrow``)
with its users' factors and the list of movies each has rated. The task scores a
(chunk users × all movies) matrix in NumPy, at most ``max_chunk_cells`` cells at a time,
sets the rated cells (CSR built from the lists) to −∞, and keeps the top N with
``np.partition`` plus a sort of the N kept: cost U·M·rank multiply-adds spread over the
tasks, memory O(M·rank + max_chunk_cells) per task. No users × movies cross join exists
in Spark.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any, Callable

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.errors import ConfigError, ModelError
from recspark.schema import (
    BIAS,
    FACTORS,
    MODEL,
    MOVIE_ID,
    RANK,
    RATED,
    RECOMMENDATIONS_SCHEMA,
    SCORE,
    TITLE,
    USER_ID,
    require_columns,
)

_logger = logging.getLogger(__name__)

_BLOCK = "_rec_block"
_ARROW_SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.int64(), nullable=False),
        pa.field(RANK, pa.int32(), nullable=False),
        pa.field(MOVIE_ID, pa.int64(), nullable=False),
        pa.field(SCORE, pa.float64(), nullable=False),
        pa.field(MODEL, pa.string(), nullable=False),
    ]
)
#: Default bound on the (users × movies) score cells a task holds at once (32 MB of doubles).
MAX_CHUNK_CELLS = 4_000_000


# --------------------------------------------------------------------------- NumPy kernel


def top_n(
    user_factors: np.ndarray,
    user_bias: np.ndarray,
    item_factors: np.ndarray,
    item_bias: np.ndarray,
    *,
    rated_indptr: np.ndarray,
    rated_cols: np.ndarray,
    n: int,
    global_mean: float = 0.0,
    max_chunk_cells: int = MAX_CHUNK_CELLS,
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``n`` items of every user row, excluding each row's rated items.

    ``user_factors`` (U × k), ``user_bias`` (U), ``item_factors`` (M × k), ``item_bias`` (M);
    row u's rated items are ``rated_cols[rated_indptr[u]:rated_indptr[u+1]]`` (column indices
    into the items). Scores are μ + b_u + b_i + p_u·q_i (k may be 0: a pure bias ranking).

    Returns ``(items, scores)``, both (U × min(n, M)), best first, ties by smaller item
    index. Where a row has fewer eligible items than n, the surplus entries have score −∞.
    Vectorised per chunk of rows (one matrix product, one ``np.partition``). With k = 0
    every user ranks the items in the same order, so only the first n + (most items a row
    of the chunk rated) items of that order are candidates: a popularity ranking costs
    O(U · (n + rated)), not O(U · M).
    """
    m = item_factors.shape[0]
    u = user_factors.shape[0]
    n_eff = min(int(n), m)
    out_idx = np.zeros((u, n_eff), dtype=np.int64)
    out_score = np.full((u, n_eff), -np.inf)
    if n_eff <= 0 or u == 0:
        return out_idx, out_score
    counts = np.diff(rated_indptr)
    shared = item_factors.shape[1] == 0
    ranked = np.lexsort((np.arange(m), -item_bias)) if shared else None  # best first
    position = np.full(m, -1, dtype=np.int64)
    chunk = max(1, int(max_chunk_cells) // m)
    for r0 in range(0, u, chunk):
        r1 = min(u, r0 + chunk)
        c = r1 - r0
        if shared:
            cand = ranked[: min(m, n_eff + int(counts[r0:r1].max(initial=0)))]
            scores = np.broadcast_to(item_bias[cand], (c, cand.size)).copy()
        else:
            cand = None
            scores = user_factors[r0:r1] @ item_factors.T
            scores += item_bias[None, :]
        scores += (global_mean + user_bias[r0:r1])[:, None]
        lo, hi = int(rated_indptr[r0]), int(rated_indptr[r1])
        rows = np.repeat(np.arange(c), counts[r0:r1])
        if shared:
            position[cand] = np.arange(cand.size)
            at = position[rated_cols[lo:hi]]
            scores[rows[at >= 0], at[at >= 0]] = -np.inf
            position[cand] = -1
        else:
            scores[rows, rated_cols[lo:hi]] = -np.inf
        cols = _top_columns(scores, n_eff)
        vals = np.take_along_axis(scores, cols, axis=1)
        if shared:
            cols = cand[cols]  # candidate positions -> item indices
        order = np.lexsort((cols, -vals), axis=1)
        out_idx[r0:r1] = np.take_along_axis(cols, order, axis=1)
        out_score[r0:r1] = np.take_along_axis(vals, order, axis=1)
    return out_idx, out_score


def _top_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """Column indices (rows × n, unordered) of each row's n largest scores; among equal
    scores at the cut-off the smaller columns win."""
    c, m = scores.shape
    if n >= m:
        return np.broadcast_to(np.arange(m), (c, m)).copy()
    cut = np.partition(scores, m - n, axis=1)[:, m - n][:, None]  # n-th largest per row
    take = scores >= cut
    if (take.sum(axis=1) != n).any():  # ties at the cut-off: keep the first ones
        above = scores > cut
        need = n - above.sum(axis=1)
        tied = scores == cut
        take = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= need[:, None]))
    return np.nonzero(take)[1].reshape(c, n)


# --------------------------------------------------------------------------- Spark


def _item_arrays(item_table: DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(movie ids sorted, biases, factor matrix) of the item table, collected to the driver."""
    bias = F.col(BIAS).cast("double") if BIAS in item_table.columns else F.lit(0.0)
    pdf = (
        item_table.select(MOVIE_ID, bias.alias(BIAS), F.col(FACTORS).cast("array<double>"))
        .orderBy(MOVIE_ID)
        .toPandas()
    )
    ids = pdf[MOVIE_ID].to_numpy(np.int64)
    lengths = {len(v) for v in pdf[FACTORS]}
    if len(lengths) > 1:
        raise ModelError(
            f"item factors have mixed lengths {sorted(lengths)}: the model is corrupt; re-train it"
        )
    k = lengths.pop() if lengths else 0
    factors = (
        np.vstack(pdf[FACTORS].to_numpy()).astype(np.float64).reshape(ids.size, k)
        if ids.size
        else np.zeros((0, k))
    )
    return ids, pdf[BIAS].to_numpy(np.float64), factors


def _list_values(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, flat values) of an Arrow list column, as NumPy (no Python loop per row)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.offset != 0:  # a sliced list array: rebase so offsets index flat values
        arr = pa.concat_arrays([arr])
    offsets = arr.offsets.to_numpy().astype(np.int64)
    flat = arr.values.to_numpy(zero_copy_only=False)
    return offsets - offsets[0], flat[offsets[0] : offsets[-1]]


def _block_task(
    table: pa.Table,
    *,
    items: Broadcast,
    n: int,
    global_mean: float,
    model: str,
    max_chunk_cells: int,
) -> pa.Table:
    """applyInArrow body: the top-N rows of one block of users."""
    item_ids, item_bias, item_factors = items.value
    table = table.sort_by(USER_ID)
    user_ids = table.column(USER_ID).to_numpy().astype(np.int64)
    c = user_ids.size
    k = item_factors.shape[1]
    f_off, f_flat = _list_values(table.column(FACTORS))
    if not np.array_equal(np.diff(f_off), np.full(c, k)):
        raise ModelError(
            f"user factors of model {model!r} do not all have the item factors' length {k}: "
            "the model is corrupt; re-train it"
        )
    user_factors = f_flat.astype(np.float64).reshape(c, k)
    user_bias = table.column(BIAS).to_numpy().astype(np.float64)
    r_off, r_flat = _list_values(table.column(RATED))
    pos = np.searchsorted(item_ids, r_flat.astype(np.int64))
    known = pos < item_ids.size
    known[known] = item_ids[pos[known]] == r_flat[known]
    row = np.repeat(np.arange(c), np.diff(r_off))
    indptr = np.zeros(c + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[known], minlength=c), out=indptr[1:])
    idx, score = top_n(
        user_factors,
        user_bias,
        item_factors,
        item_bias,
        rated_indptr=indptr,
        rated_cols=pos[known],
        n=n,
        global_mean=global_mean,
        max_chunk_cells=max_chunk_cells,
    )
    width = idx.shape[1]
    keep = np.isfinite(score).ravel()
    return pa.table(
        {
            USER_ID: pa.array(np.repeat(user_ids, width)[keep]),
            RANK: pa.array(np.tile(np.arange(1, width + 1, dtype=np.int32), c)[keep]),
            MOVIE_ID: pa.array(item_ids[idx.ravel()][keep]),
            SCORE: pa.array(score.ravel()[keep]),
            MODEL: pa.array(np.full(keep.sum(), model, dtype=object), pa.string()),
        },
        schema=_ARROW_SCHEMA,
    )


def recommend(
    user_table: DataFrame,
    item_table: DataFrame,
    rated: DataFrame,
    *,
    n: int,
    model: str,
    global_mean: float = 0.0,
    block_users: int = 2048,
    max_chunk_cells: int = MAX_CHUNK_CELLS,
) -> DataFrame:
    """Top-``n`` movies for every user of ``user_table`` (see the module docstring).

    Inputs: ``user_table`` (user_id, factors array<double>[, bias]), ``item_table``
    (movie_id, factors[, bias]); a missing ``bias`` column counts as 0. ``rated``
    (user_id, movie_id): pairs never recommended (the user's training ratings); rated movies
    absent from ``item_table`` are ignored. Output (``RECOMMENDATIONS_SCHEMA``): user_id,
    rank (1 = best), movie_id, score (raw μ + b_u + b_i + p_u·q_i), model.

    Actions: collects and broadcasts the item table, counts the users to size the blocks;
    the result is lazy (one shuffle of the users with their rated lists).
    """
    if n < 1:
        raise ConfigError(f"recommend.n must be at least 1, got {n}")
    if block_users < 1:
        raise ConfigError(f"recommend.block_users must be at least 1, got {block_users}")
    require_columns(user_table, [USER_ID, FACTORS], stage="recommend (user factors)")
    require_columns(item_table, [MOVIE_ID, FACTORS], stage="recommend (item factors)")
    require_columns(rated, [USER_ID, MOVIE_ID], stage="recommend (rated movies)")
    spark = user_table.sparkSession
    ids, bias, factors = _item_arrays(item_table)
    items = spark.sparkContext.broadcast((ids, bias, factors))
    n_users = user_table.count()
    n_blocks = max(1, math.ceil(n_users / block_users))
    _logger.info(
        "top-%d for %d users × %d movies (rank %d, model %s) in %d block(s)",
        n, n_users, ids.size, factors.shape[1], model, n_blocks,
    )
    user_bias = F.col(BIAS).cast("double") if BIAS in user_table.columns else F.lit(0.0)
    lists = rated.groupBy(USER_ID).agg(F.collect_list(F.col(MOVIE_ID).cast("long")).alias(RATED))
    users = (
        user_table.select(
            F.col(USER_ID).cast("long").alias(USER_ID),
            user_bias.alias(BIAS),
            F.col(FACTORS).cast("array<double>").alias(FACTORS),
        )
        .join(lists, USER_ID, "left")
        .select(
            USER_ID,
            BIAS,
            FACTORS,
            F.coalesce(F.col(RATED), F.array().cast("array<bigint>")).alias(RATED),
            F.pmod(F.xxhash64(USER_ID), F.lit(n_blocks)).alias(_BLOCK),
        )
    )
    task = _arrow_task(
        functools.partial(
            _block_task,
            items=items,
            n=n,
            global_mean=float(global_mean),
            model=model,
            max_chunk_cells=max_chunk_cells,
        )
    )
    return users.groupBy(_BLOCK).applyInArrow(task, RECOMMENDATIONS_SCHEMA)


def _arrow_task(fn: Callable[[pa.Table], pa.Table]) -> Callable[[pa.Table], pa.Table]:
    """``fn`` as a plain function with real ``pa.Table`` annotations: ``applyInArrow`` infers
    its calling convention from them (a ``functools.partial`` has none, which PySpark 4.3
    fails on)."""

    def task(table: pa.Table) -> pa.Table:
        return fn(table)

    task.__annotations__ = {"table": pa.Table, "return": pa.Table}
    return task


def is_factor_model(model: Any) -> bool:
    """True for models the top-N can rank: they expose ``user_factors`` and ``item_factors``."""
    return hasattr(model, "user_factors") and hasattr(model, "item_factors")


def recommend_for_model(
    model: Any,
    rated: DataFrame,
    *,
    n: int,
    block_users: int = 2048,
    max_chunk_cells: int = MAX_CHUNK_CELLS,
) -> DataFrame:
    """:func:`recommend` for a fitted factor model (``FactorModel`` with biases and μ, or
    ``MllibAlsModel`` without). Output as :func:`recommend`, ``model`` = ``model.name``."""
    if not is_factor_model(model):
        raise ModelError(
            f"model {getattr(model, 'name', model)!r} has no user_factors/item_factors: "
            "top-N needs a factor model (als, svd, nmf, mllib_als)"
        )
    biased = BIAS in model.item_factors.columns
    return recommend(
        model.user_factors,
        model.item_factors,
        rated,
        n=n,
        model=model.name,
        global_mean=float(getattr(model, "global_mean", 0.0)) if biased else 0.0,
        block_users=block_users,
        max_chunk_cells=max_chunk_cells,
    )


def with_titles(recommendations: DataFrame, movies: DataFrame) -> DataFrame:
    """Add ``title`` from ``movies`` (movie_id, title, e.g. the ingested movies table); the
    title of a movie missing there is null. Output: the input columns plus ``title``."""
    require_columns(movies, [MOVIE_ID, TITLE], stage="recommendation titles")
    titles = F.broadcast(movies.select(MOVIE_ID, TITLE))
    return recommendations.join(titles, MOVIE_ID, "left").select(*recommendations.columns, TITLE)
