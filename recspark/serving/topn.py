"""Top-N recommendations from any ``TOP_N`` model, excluding movies the user already rated.

A model hands over its :class:`~recspark.models.contract.RankingInputs`: a users table
(user_id plus whatever per-user columns its scorer reads) and a picklable
:class:`~recspark.models.contract.BlockScorer` that gives the ranking score s(u, i) of a
block of users × every movie it knows (for a biased factor model the raw, unclipped
μ + b_u + b_i + p_u·q_i; clipping would tie every movie above the scale's top).

The top-N list of u holds the N movies with the largest s(u, i) among movies u has not
rated, best first; ties go to the smaller movie id, so the output is deterministic. A user
who rated all but m < N of the scorer's movies gets m rows.

Distribution: the scorer (for a factor model the item table, 87,585 × 11 doubles ≈ 8 MB at
ml-32m) is broadcast once. Users are hashed into blocks of about ``block_users`` (a multiple
of the cores, so the last wave of tasks keeps every core busy too); each block, alone in its
Spark partition (:func:`recspark.index.by_block`), arrives in one Spark task (a cogroup's
``applyInArrow``) with its users' columns on one side and the flat (user, movie) pairs they
rated on the other, shuffled as they are (no per-user lists, no ratings), from which the
task builds a :class:`~recspark.models.contract.UserBlock` (rated CSR, positions into
``scorer.item_ids``). The task scores at most
``max_chunk_cells`` (users × movies) cells at a time with ``scorer.scores``, sets the rated
cells to −∞ and keeps the top N with :func:`top_columns`: one pass of elementwise maxima
over groups of movies bounds each user's N-th best score from below, and only the movies
of the groups that reach the bound are sorted (exact, ties included): memory
O(scorer + max_chunk_cells) per task. No users × movies cross join exists in Spark.

A minimum support (:func:`with_min_support`, ``recommend.min_support``) wraps any scorer so
that movies with fewer training ratings are never ranked.

When every user gets the same scores (``scorer.shared_scores`` is not None, e.g. the
popularity model), only the first n + (most movies a user of the chunk rated) movies of
that one order can be in a list, so ranking costs O(n + rated) per user, not O(movies).
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.arrow import arrow_cogroup_task
from recspark.errors import ConfigError
from recspark.index import by_block
from recspark.models.contract import BlockScorer, Ranker, RankingInputs, UserBlock
from recspark.schema import (
    BLOCK_KEY,
    MODEL,
    MOVIE_ID,
    N_RATINGS,
    RANK,
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
#: Columns per group in the selection's pre-pass (:func:`top_columns`).
_GROUP_WIDTH = 32


# --------------------------------------------------------------------------- NumPy kernel


def top_n(
    scorer: BlockScorer, block: UserBlock, *, n: int, max_chunk_cells: int = MAX_CHUNK_CELLS
) -> tuple[np.ndarray, np.ndarray]:
    """The top-``n`` movies of every user of ``block``, excluding each user's rated movies.

    Returns ``(items, scores)``, both (U × min(n, M)), best first, ties by the smaller item
    position; ``items`` are positions into ``scorer.item_ids`` (ascending ids, so the
    smaller position is the smaller id). Where a user has fewer eligible movies than n, the
    surplus entries have score −∞. Vectorised per chunk of at most ``max_chunk_cells``
    cells (one ``scorer.scores`` call, one :func:`top_columns`); with ``shared_scores`` only
    the first n + (most movies a user of the chunk rated) movies of the shared order are
    candidates.
    """
    m = scorer.item_ids.size
    u = block.user_ids.size
    n_eff = min(int(n), m)
    out_idx = np.zeros((u, n_eff), dtype=np.int64)
    out_score = np.full((u, n_eff), -np.inf)
    if n_eff <= 0 or u == 0:
        return out_idx, out_score
    counts = np.diff(block.rated_indptr)
    shared = scorer.shared_scores
    ranked = np.lexsort((np.arange(m), -shared)) if shared is not None else None  # best first
    position = np.full(m, -1, dtype=np.int64)
    chunk = max(1, int(max_chunk_cells) // m)
    for r0 in range(0, u, chunk):
        r1 = min(u, r0 + chunk)
        c = r1 - r0
        lo, hi = int(block.rated_indptr[r0]), int(block.rated_indptr[r1])
        rows = np.repeat(np.arange(c), counts[r0:r1])
        if ranked is not None:
            cand = ranked[: min(m, n_eff + int(counts[r0:r1].max(initial=0)))]
            scores = np.broadcast_to(shared[cand], (c, cand.size)).copy()
            position[cand] = np.arange(cand.size)
            at = position[block.rated_items[lo:hi]]
            scores[rows[at >= 0], at[at >= 0]] = -np.inf
            position[cand] = -1
        else:
            scores = scorer.scores(block, slice(r0, r1))
            scores[rows, block.rated_items[lo:hi]] = -np.inf
        cols, vals = top_columns(scores, n_eff)
        if ranked is not None:  # candidate positions -> item positions, re-sorted by them
            cols = cand[cols]
            order = np.lexsort((cols, -vals), axis=1)
            cols = np.take_along_axis(cols, order, axis=1)
            vals = np.take_along_axis(vals, order, axis=1)
        out_idx[r0:r1] = cols
        out_score[r0:r1] = vals
    return out_idx, out_score


def top_columns(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n`` largest scores, best first, ties to the smaller column.

    ``scores``: (c × m) float, no NaN (−∞ allowed: such cells sort last). Returns
    ``(columns, values)``, both (c × min(n, m)): ``columns[r]`` are the columns of the
    first min(n, m) entries of row r sorted by (−score, column), ``values`` their scores.
    Raises ValueError when a row holds NaN (its order is undefined).

    Selection without sorting a whole row, exact: with w = ``_GROUP_WIDTH`` and
    g = ⌊m / w⌋ ≥ n, group j < g is the w columns {j, j + g, …, j + (w − 1)·g} (the last
    m − w·g columns belong to no group and are always candidates). Let t(r) be the n-th
    largest of the g group maxima of row r. The n groups with the largest maxima hold n
    distinct cells ≥ t, so the row's n-th largest score s₍ₙ₎ ≥ t; every cell that sorts into
    the top n (ties included) scores ≥ s₍ₙ₎ ≥ t, so it lies in a group whose maximum is ≥ t
    or in the tail. Those cells with score ≥ t are the candidates (≥ n per row, about n
    when scores are spread); sorting them by (row, −score, column) gives exactly the top n
    of a full sort. Cost: one elementwise-maximum pass over the chunk (contiguous runs of g
    columns, so it vectorises), a partition of the c × g maxima and a sort of the
    candidates, instead of a full ``np.partition`` of every row. With g < n (m < n·w)
    every row is sorted whole.
    """
    c, m = scores.shape
    n = min(int(n), m)
    w = _GROUP_WIDTH
    g = m // w
    if g < max(n, 1):
        cols = np.lexsort((np.broadcast_to(np.arange(m), (c, m)), -scores), axis=1)[:, :n]
        vals = np.take_along_axis(scores, cols, axis=1)
        if np.isnan(vals).any():
            raise ValueError("top-N scores hold NaN: the scorer's model is corrupt")
        return cols, vals
    group_max = scores[:, : w * g].reshape(c, w, g).max(axis=1)  # (c × g)
    cut = np.partition(group_max, g - n, axis=1)[:, g - n]  # n-th largest group maximum
    rows, groups = np.nonzero(group_max >= cut[:, None])  # rows ascending
    rows = np.repeat(rows, w)
    cols = (groups[:, None] + g * np.arange(w)).ravel()
    if w * g < m:
        tail = np.arange(w * g, m)
        rows = np.concatenate([rows, np.repeat(np.arange(c), tail.size)])
        cols = np.concatenate([cols, np.tile(tail, c)])
    vals = scores[rows, cols]
    keep = vals >= cut[rows]
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    per_row = np.bincount(rows, minlength=c)
    if (per_row < n).any():  # only NaN compares false both ways
        raise ValueError("top-N scores hold NaN: the scorer's model is corrupt")
    order = np.lexsort((cols, -vals, rows))
    first = np.zeros(c, dtype=np.int64)
    np.cumsum(per_row[:-1], out=first[1:])
    pick = order[first[:, None] + np.arange(n)]
    return cols[pick], vals[pick]


def user_block(
    user_ids: np.ndarray, columns: pa.Table, rated_users: np.ndarray, rated_movies: np.ndarray,
    *, item_ids: np.ndarray,
) -> UserBlock:
    """A :class:`UserBlock` of the users ``user_ids`` ((U,) int64, ascending, rows of
    ``columns``) from rated (user id, movie id) pairs given flat and in any order
    (``rated_users``, ``rated_movies``: (P,) int64). Pairs of a user not in ``user_ids`` or of a
    movie not in ``item_ids`` ((M,) ascending) are left out; each user's rated positions come
    out ascending."""
    pos = np.searchsorted(item_ids, rated_movies)
    row = np.searchsorted(user_ids, rated_users)
    known = (pos < item_ids.size) & (row < user_ids.size)
    known[known] = (item_ids[pos[known]] == rated_movies[known]) & (
        user_ids[row[known]] == rated_users[known]
    )
    pos, row = pos[known], row[known]
    order = np.lexsort((pos, row))
    indptr = np.zeros(user_ids.size + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=user_ids.size), out=indptr[1:])
    return UserBlock(
        user_ids=user_ids,
        columns=columns,
        rated_indptr=indptr,
        rated_items=pos[order].astype(np.int64),
    )


@dataclass(frozen=True)
class SupportedScorer:
    """A :class:`~recspark.models.contract.BlockScorer` that ranks only the movies marked in
    ``allowed`` ((M,) bool over ``inner.item_ids``): the others score −∞, so they are never
    in a list (:func:`with_min_support`)."""

    inner: BlockScorer
    allowed: np.ndarray

    @property
    def item_ids(self) -> np.ndarray:
        return self.inner.item_ids

    @property
    def shared_scores(self) -> np.ndarray | None:
        shared = self.inner.shared_scores
        return None if shared is None else np.where(self.allowed, shared, -np.inf)

    def scores(self, block: UserBlock, rows: slice) -> np.ndarray:
        out = self.inner.scores(block, rows)
        out[:, ~self.allowed] = -np.inf
        return out


def with_min_support(inputs: RankingInputs, counts: DataFrame, *, min_support: int) -> RankingInputs:
    """``inputs`` whose lists hold only movies with at least ``min_support`` ratings in
    ``counts`` (movie_id, n_ratings; a movie absent from it has 0); unchanged when
    ``min_support`` <= 1 (every movie a model learnt from has a rating). The same rule for
    every model (``recommend.min_support``). Action: collects the ids of the movies kept."""
    if min_support <= 1:
        return inputs
    require_columns(counts, [MOVIE_ID, N_RATINGS], stage="with_min_support")
    kept = counts.where(F.col(N_RATINGS) >= F.lit(int(min_support))).select(MOVIE_ID).toPandas()
    allowed = np.isin(inputs.scorer.item_ids, kept[MOVIE_ID].to_numpy(np.int64))
    _logger.info(
        "recommendable: %d of %d movies have at least %d ratings",
        int(allowed.sum()), allowed.size, min_support,
    )
    return RankingInputs(inputs.users, SupportedScorer(inputs.scorer, allowed))


# --------------------------------------------------------------------------- Spark


def _block_task(
    users: pa.Table,
    rated: pa.Table,
    *,
    scorer: Broadcast,
    user_columns: list[str],
    n: int,
    model: str,
    max_chunk_cells: int,
) -> pa.Table:
    """Cogroup body: the top-N rows of one block of users (``users``: the model's users
    table; ``rated``: user_id, movie_id of the block's rated pairs)."""
    s: BlockScorer = scorer.value
    users = users.sort_by(USER_ID)
    user_ids = users.column(USER_ID).to_numpy().astype(np.int64)
    block = user_block(
        user_ids,
        users.select(user_columns),
        rated.column(USER_ID).to_numpy().astype(np.int64),
        rated.column(MOVIE_ID).to_numpy().astype(np.int64),
        item_ids=s.item_ids,
    )
    idx, score = top_n(s, block, n=n, max_chunk_cells=max_chunk_cells)
    width, c = idx.shape[1], user_ids.size
    keep = np.isfinite(score).ravel()
    return pa.table(
        {
            USER_ID: pa.array(np.repeat(user_ids, width)[keep]),
            RANK: pa.array(np.tile(np.arange(1, width + 1, dtype=np.int32), c)[keep]),
            MOVIE_ID: pa.array(s.item_ids[idx.ravel()][keep]),
            SCORE: pa.array(score.ravel()[keep]),
            MODEL: pa.array(np.full(keep.sum(), model, dtype=object), pa.string()),
        },
        schema=_ARROW_SCHEMA,
    )


def recommend(
    source: Ranker | RankingInputs,
    rated: DataFrame,
    *,
    n: int,
    model: str | None = None,
    block_users: int = 2048,
    max_chunk_cells: int = MAX_CHUNK_CELLS,
) -> DataFrame:
    """Top-``n`` movies for every user of a ``TOP_N`` model (see the module docstring).

    ``source``: a fitted ``TOP_N`` model (its ``ranking_inputs()`` are taken and ``model``
    defaults to its name) or :class:`RankingInputs` (then ``model`` names the lists).
    ``rated`` (user_id, movie_id, any other columns are ignored): pairs never recommended
    (the users' known ratings); rated movies the scorer does not know are ignored. Output
    (``RECOMMENDATIONS_SCHEMA``): user_id, rank (1 = best), movie_id, score, model.

    Raises ConfigError for n or block_users below 1. Actions: the model's
    ``ranking_inputs()`` (a factor model collects its item table), one count of the users
    to size the blocks, one small job per side to key the blocks (:func:`by_block`); the
    result is lazy: one shuffle of the users and one of the flat rated pairs, both into the
    same blocks, read side by side by a cogroup.
    """
    if n < 1:
        raise ConfigError(f"recommend.n must be at least 1, got {n}")
    if block_users < 1:
        raise ConfigError(f"recommend.block_users must be at least 1, got {block_users}")
    inputs = source if isinstance(source, RankingInputs) else source.ranking_inputs()
    name = model or source.name
    require_columns(inputs.users, [USER_ID], stage=f"recommend ({name} users)")
    require_columns(rated, [USER_ID, MOVIE_ID], stage="recommend (rated movies)")
    spark = inputs.users.sparkSession
    scorer = spark.sparkContext.broadcast(inputs.scorer)
    n_users = inputs.users.count()
    # a multiple of the cores, so the last wave of tasks keeps every core busy too
    cores = max(1, spark.sparkContext.defaultParallelism)
    n_blocks = cores * max(1, math.ceil(n_users / (block_users * cores)))
    _logger.info(
        "top-%d for %d users × %d movies (model %s) in %d block(s)",
        n, n_users, inputs.scorer.item_ids.size, name, n_blocks,
    )
    task = arrow_cogroup_task(
        functools.partial(
            _block_task, scorer=scorer, user_columns=inputs.users.columns, n=n, model=name,
            max_chunk_cells=max_chunk_cells,
        )
    )
    block = F.pmod(F.xxhash64(F.col(USER_ID).cast("long")), F.lit(n_blocks))
    users = inputs.users.withColumn(USER_ID, F.col(USER_ID).cast("long"))
    pairs = rated.select(
        F.col(USER_ID).cast("long").alias(USER_ID), F.col(MOVIE_ID).cast("long").alias(MOVIE_ID)
    )
    # each block alone in its Spark partition on both sides, so the cogroup adds no shuffle
    left = by_block(users.withColumn(_BLOCK, block), blocks=n_blocks, column=_BLOCK)
    right = by_block(pairs.withColumn(_BLOCK, block), blocks=n_blocks, column=_BLOCK)
    # grouped by the key alone (one key per block): a cogroup needs both sides partitioned on
    # exactly its keys to skip the shuffle
    return (
        left.groupBy(BLOCK_KEY)
        .cogroup(right.groupBy(BLOCK_KEY))
        .applyInArrow(task, RECOMMENDATIONS_SCHEMA)
    )


def with_titles(recommendations: DataFrame, movies: DataFrame) -> DataFrame:
    """Add ``title`` from ``movies`` (movie_id, title, e.g. the ingested movies table); the
    title of a movie missing there is null. Output: the input columns plus ``title``."""
    require_columns(movies, [MOVIE_ID, TITLE], stage="recommendation titles")
    titles = F.broadcast(movies.select(MOVIE_ID, TITLE))
    return recommendations.join(titles, MOVIE_ID, "left").select(*recommendations.columns, TITLE)
