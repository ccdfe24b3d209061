"""Index-space helpers shared by the SVD and NMF models.

Both families predict

    r̂(u, i) = clip(f(u, i) + L(u, i), rating_min, rating_max),   f(u, i) = c + a_u + d_i

where ``f`` is a fill (the bias model's μ + b_u + b_i, a user's mean, or a constant) and
``L`` a low-rank term that lives on the driver as dense factor matrices over the dense
indices (user_idx 0..m−1, movie_idx 0..n−1). This module holds what they share:

- :class:`Offsets`: a fill as two dense vectors and a constant (O(m + n) doubles);
- :class:`IndexSpace`: matrix shape, the bias model's fallback and which users/movies
  training saw, all collected once from small (id, idx, bias) tables;
- :func:`low_rank_at`: ``L`` on a list of (row, col) entries, vectorised in O(nnz) memory;
- :class:`ErrorStats`: clipped squared/absolute error sums that add across blocks;
- :func:`entry_blocks`: ratings into cached blocks holding rating and fill per entry;
- :func:`factor_tables`: NumPy factor matrices back into (id, idx, bias, factors) tables.

Pairs whose user or movie was not in training are scored by the bias model (``fallback``),
exactly as :meth:`recspark.models.factor.FactorModel.predict` does, so errors computed here
match the ones the pipeline measures on the finished model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
import numpy as np
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.blocks import Block, build_blocks
from recspark.errors import ConfigError, DataQualityError
from recspark.models.bias import BiasModel
from recspark.models.factor import factor_frame
from recspark.schema import (
    BIAS,
    FACTORS,
    MOVIE_ID,
    MOVIE_IDX,
    RATING,
    USER_ID,
    USER_IDX,
    require_columns,
)

_logger = logging.getLogger(__name__)

STORAGE = StorageLevel.MEMORY_AND_DISK
#: Entries per chunk in :func:`low_rank_at` (bounds per-task temporaries to ~50 MB).
CHUNK = 1 << 21


@dataclass(frozen=True)
class Offsets:
    """A fill f(i, j) = ``mu`` + ``user[i]`` + ``item[j]`` over dense indices."""

    mu: float
    user: np.ndarray  # float64 [m]
    item: np.ndarray  # float64 [n]

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The fill at entries (rows[e], cols[e])."""
        return self.mu + self.user[rows] + self.item[cols]


@dataclass(frozen=True)
class IndexSpace:
    """Shape, fallback and training coverage of a ratings matrix in dense index space.

    ``fallback`` is the bias model (unknown biases 0); ``known_user`` / ``known_movie``
    mark the indices with training ratings. Driver memory: 2 (m + n) doubles and m + n
    booleans (≈ 4.6 MB at ml-32m's 200,948 × 87,585).
    """

    n_users: int
    n_movies: int
    fallback: Offsets
    known_user: np.ndarray
    known_movie: np.ndarray
    lo: float
    hi: float

    def base(
        self, fill: Offsets, rows: np.ndarray, cols: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(value the low-rank term is added to, mask of entries the model scores): the
        fill where user and movie are known, else the fallback with the mask false."""
        known = self.known_user[rows] & self.known_movie[cols]
        return np.where(known, fill.at(rows, cols), self.fallback.at(rows, cols)), known


def index_space(
    ratings: DataFrame,
    *,
    bias: BiasModel,
    lo: float,
    hi: float,
    validation: DataFrame | None = None,
) -> IndexSpace:
    """Collect the :class:`IndexSpace` of ``ratings`` (user_id, movie_id, user_idx, movie_idx).

    m, n are the largest indices in ``ratings`` and ``validation`` plus one. Actions: one
    aggregation for the shape and two collects of (idx, bias) for the training users and
    movies (O(m + n) rows; the ratings themselves never reach the driver).
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX], stage="index space")
    if lo >= hi:
        raise ConfigError(f"train.rating_min ({lo}) must be below train.rating_max ({hi})")
    frames = [ratings] if validation is None else [ratings, validation]
    maxima = [
        f.agg(F.max(USER_IDX).alias("u"), F.max(MOVIE_IDX).alias("i")).first() for f in frames
    ]
    if maxima[0]["u"] is None:
        raise DataQualityError("the training ratings are empty: nothing to factorise")
    m = max(int(r["u"]) for r in maxima if r["u"] is not None) + 1
    n = max(int(r["i"]) for r in maxima if r["i"] is not None) + 1

    def side(
        id_col: str, idx_col: str, table: DataFrame, size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        pdf = (
            ratings.select(id_col, idx_col)
            .distinct()
            .join(table, id_col, "left")
            .select(idx_col, F.coalesce(F.col(BIAS), F.lit(0.0)).alias(BIAS))
            .toPandas()
        )
        idx = pdf[idx_col].to_numpy(np.int64)
        values = np.zeros(size)
        values[idx] = pdf[BIAS].to_numpy(np.float64)
        known = np.zeros(size, dtype=bool)
        known[idx] = True
        return values, known

    user_bias, known_user = side(USER_ID, USER_IDX, bias.user_bias, m)
    item_bias, known_movie = side(MOVIE_ID, MOVIE_IDX, bias.item_bias, n)
    _logger.info(
        "index space %d users x %d movies (%d and %d with training ratings)",
        m, n, int(known_user.sum()), int(known_movie.sum()),
    )
    return IndexSpace(
        m, n, Offsets(float(bias.global_mean), user_bias, item_bias), known_user, known_movie,
        float(lo), float(hi),
    )


def user_mean_offsets(ratings: DataFrame, space: IndexSpace) -> Offsets:
    """The fill f(u, i) = mean training rating of u. Action: collects m (idx, mean) rows."""
    pdf = ratings.groupBy(USER_IDX).agg(F.avg(RATING).alias(RATING)).toPandas()
    user = np.zeros(space.n_users)
    user[pdf[USER_IDX].to_numpy(np.int64)] = pdf[RATING].to_numpy(np.float64)
    return Offsets(0.0, user, np.zeros(space.n_movies))


def constant_offsets(value: float, space: IndexSpace) -> Offsets:
    """The fill f(u, i) = ``value``."""
    return Offsets(float(value), np.zeros(space.n_users), np.zeros(space.n_movies))


def low_rank_at(
    left: np.ndarray, right: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """L[e] = Σ_c left[rows[e], c] · right[cols[e], c] for every entry e.

    Vectorised per latent column over chunks of :data:`CHUNK` entries, so the temporaries
    are O(chunk) doubles whatever the rank (never an nnz × k gather).
    """
    out = np.zeros(rows.shape[0])
    k = left.shape[1]
    for start in range(0, rows.shape[0], CHUNK):
        r, c = rows[start : start + CHUNK], cols[start : start + CHUNK]
        acc = out[start : start + CHUNK]
        for a in range(k):
            acc += left[r, a] * right[c, a]
    return out


@dataclass(frozen=True)
class ErrorStats:
    """Sums of squared and absolute errors of clipped predictions; adds across blocks."""

    sse: float = 0.0
    sae: float = 0.0
    count: int = 0

    def __add__(self, other: "ErrorStats") -> "ErrorStats":
        return ErrorStats(self.sse + other.sse, self.sae + other.sae, self.count + other.count)

    @property
    def rmse(self) -> float:
        return float(np.sqrt(self.sse / self.count)) if self.count else float("nan")

    @property
    def mae(self) -> float:
        return self.sae / self.count if self.count else float("nan")

    @staticmethod
    def of(prediction: np.ndarray, rating: np.ndarray, lo: float, hi: float) -> "ErrorStats":
        err = np.clip(prediction, lo, hi) - rating
        return ErrorStats(float(err @ err), float(np.abs(err).sum()), int(err.shape[0]))


@dataclass(frozen=True)
class EntryBlock:
    """One user block of ratings with, per entry, the value the low-rank term is added to.

    ``block.vals`` are the targets of the low-rank term (r − base); ``base`` the fill or,
    for pairs the model does not know, the fallback; ``known`` marks the former. The
    global row of entry e is ``block.ids[row[e]]``.
    """

    block: Block
    base: np.ndarray
    known: np.ndarray

    @property
    def rating(self) -> np.ndarray:
        return self.base + self.block.vals

    def rows(self) -> np.ndarray:
        """Global row (user) index of every entry, aligned with ``block.cols``."""
        return self.block.ids[self.block.row_of_value()].astype(np.int64)


def entry_blocks(
    ratings: DataFrame,
    *,
    space: IndexSpace,
    fill: Offsets,
    n_blocks: int,
    name: str,
) -> RDD:
    """Ratings (user_idx, movie_idx, rating) into persisted ``(block id, EntryBlock)`` pairs.

    One shuffle (:func:`recspark.blocks.build_blocks`); the fill arrays are broadcast and
    applied per block, vectorised. The block RDD is materialised (action: one count) and
    the raw in-blocks it was built from are released.
    """
    require_columns(ratings, [USER_IDX, MOVIE_IDX, RATING], stage=name)
    sc = ratings.sparkSession.sparkContext
    raw = build_blocks(ratings, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=n_blocks)
    bc = sc.broadcast((space, fill))

    def attach(b: Block) -> EntryBlock:
        sp_, fill_ = bc.value
        rows = b.ids[b.row_of_value()].astype(np.int64)
        base, known = sp_.base(fill_, rows, b.cols)
        return EntryBlock(b.with_vals(b.vals - base), base, known)

    out = raw.mapValues(attach).persist(STORAGE).setName(name)
    out.count()
    raw.unpersist()
    bc.unpersist()
    return out


def block_stats(
    blocks: RDD, left: np.ndarray, right: np.ndarray, *, lo: float, hi: float
) -> ErrorStats:
    """Clipped-error sums of base + left·rightᵀ over every entry of ``blocks``.

    ``left`` (m × k) and ``right`` (n × k) are broadcast. Action: one pass.
    """
    sc = blocks.context
    bc = sc.broadcast((left, right))

    def stats(item: tuple[int, EntryBlock]) -> ErrorStats:
        eb = item[1]
        lft, rgt = bc.value
        low = low_rank_at(lft, rgt, eb.rows(), eb.block.cols) * eb.known
        return ErrorStats.of(eb.base + low, eb.rating, lo, hi)

    total = blocks.map(stats).fold(ErrorStats(), lambda a, b: a + b)
    bc.destroy()
    return total


def factor_tables(
    spark: SparkSession,
    ratings: DataFrame,
    *,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    fill: Offsets,
    space: IndexSpace,
) -> tuple[DataFrame, DataFrame]:
    """(user_id, user_idx, bias, factors) and (movie_id, movie_idx, bias, factors) tables.

    Rows for the users and movies with training ratings; ``bias`` is the fill's per-user /
    per-movie part, so :class:`~recspark.models.factor.FactorModel` with global mean
    ``fill.mu`` predicts fill + p_u·q_i. The factor matrices go to Spark through Arrow
    (m × k doubles, 26 MB at ml-32m with k = 16). Actions: materialises both (cached).
    """

    def table(
        ids_col: str, idx_col: str, known: np.ndarray, rows: np.ndarray, bias: np.ndarray
    ) -> DataFrame:
        idx = np.flatnonzero(known)
        values = factor_frame(spark, idx_col, idx, bias[idx], rows[idx])
        df = (
            ratings.select(ids_col, idx_col)
            .distinct()
            .join(values, idx_col)
            .select(ids_col, idx_col, BIAS, FACTORS)
            .cache()
        )
        df.count()
        return df

    users = table(USER_ID, USER_IDX, space.known_user, user_factors, fill.user)
    items = table(MOVIE_ID, MOVIE_IDX, space.known_movie, item_factors, fill.item)
    return users, items

