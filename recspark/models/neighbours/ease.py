"""EASE, the embarrassingly shallow autoencoder (Steck 2019, WWW): closed-form item-item
weights for top-N lists (``ease``).

On the binarised training matrix X (users × movies, 1 where rated) the weights minimise
||X − XB||²_F + λ||B||²_F subject to diag(B) = 0, solved in closed form:

    P = (XᵀX + λI)⁻¹,   B = I − P · diag(1 / diag P),  i.e. B_ij = −P_ij / P_jj (i ≠ j), B_jj = 0

and a user's scores are x_u B (the sum of the rows of B of the movies u rated). It only
ranks (no rating predictions).

The Gram matrix XᵀX is built by Spark tasks, one sparse product per block of movies
(:func:`recspark.models.neighbours.matrix.map_column_blocks`), and assembled on the driver;
the inverse is dense, so only the ``max_items`` most-rated training movies (ties by the
smaller id) take part: M² doubles for the Gram, which becomes P and then B in place
(800 MB at 10,000 movies), and an O(M³) inversion. At the ml-32m shape (87,585 movies) the default 10,000
most-rated movies hold most of the ratings (the popularity curve is a power law); the other
movies get no EASE score, are never recommended by it, and a user's ratings of them do not
enter the scores. The broadcast weights of the
top-N lists are float32 (400 MB at 10,000 movies).

``EaseModel.save`` / ``load`` write and read ``weights/part-NNNNN.npy`` (B, float32, in
NumPy's format, row chunks of at most ``CHUNK_BYTES``), ``items/`` (position, movie_id:
B's row and column order), ``users/`` (user_id) and ``model.json``. The chunks go through
the Hadoop file system (so a run folder on HDFS or S3 works) one at a time: a single
byte array of B (323 MB on ml-latest-small) crossing the py4j bridge ran the driver's
Java heap out in a train run, 32 MB pieces do not.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.linalg
import scipy.sparse as sp
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Section
from recspark.errors import DataQualityError, ModelError
from recspark.io import runs, storage
from recspark.models.contract import Ability, ModelSpec, RankingInputs, UserBlock
from recspark.models.neighbours.matrix import collect_matrix, map_column_blocks
from recspark.schema import MOVIE_ID, N_RATINGS, RATING, USER_ID, require_columns

_logger = logging.getLogger(__name__)

_GRAM_SCHEMA = T.StructType(
    [T.StructField("start", T.LongType(), False), T.StructField("width", T.LongType(), False),
     T.StructField("gram", T.BinaryType(), False)]
)
_ONE = "_ease_one"
MODEL_FORMAT, MODEL_VERSION = "recspark-ease-model", 2
CHUNK_BYTES = 32 << 20  # bytes of B per weights file
_WEIGHTS, _ITEMS, _USERS, _POSITION = "weights", "items", "users", "position"
_ITEMS_SCHEMA = T.StructType(
    [T.StructField(_POSITION, T.LongType(), False), T.StructField(MOVIE_ID, T.LongType(), False)]
)
_USERS_SCHEMA = T.StructType([T.StructField(USER_ID, T.LongType(), False)])


class EaseConfig(Section):
    """EASE settings: the L2 penalty λ (``reg``), the most-rated movies kept
    (``max_items``, at most 20,000: the Gram, inverted in place, is a dense M × M float64
    array on the driver, 3.2 GB there, plus the float32 weights) and the dense Gram cells per
    Spark block (``max_cells``)."""

    reg: float = Field(300.0, gt=0)
    max_items: int = Field(10_000, ge=2, le=20_000)
    max_cells: int = Field(2_000_000, ge=1000)


def _gram_block(matrix: sp.csc_matrix, cols: np.ndarray) -> pa.RecordBatch:
    """Columns ``cols`` of XᵀX (dense, M × len(cols), float64 bytes, column-major)."""
    block = np.asarray((matrix.T @ matrix[:, cols]).toarray(), dtype=np.float64)
    return pa.RecordBatch.from_pydict(
        {"start": [int(cols[0])], "width": [int(cols.size)], "gram": [block.T.tobytes()]},
        schema=pa.schema([("start", pa.int64(), False), ("width", pa.int64(), False),
                          ("gram", pa.binary(), False)]),
    )


def gram(matrix: sp.csc_matrix, *, spark, max_cells: int) -> np.ndarray:
    """XᵀX (M × M dense) of the sparse ``matrix`` X, block by block in Spark tasks.
    Action: collects the blocks."""
    m = matrix.shape[1]
    out = np.empty((m, m))
    for row in map_column_blocks(spark, matrix, _gram_block, _GRAM_SCHEMA, max_cells=max_cells).collect():
        start, width = int(row["start"]), int(row["width"])
        out[start : start + width] = np.frombuffer(row["gram"], dtype=np.float64).reshape(width, m)
    return out  # symmetric: the rows written are the block's columns


def ease_weights(g: np.ndarray, reg: float) -> np.ndarray:
    """B = I − P · diag(1 / diag P) with P = (G + reg·I)⁻¹ (G symmetric M × M); float64.

    P from the Cholesky factor by LAPACK ``potrf`` + ``potri`` (M³ flops, against 7/3 M³
    for solving against the identity), in place: ``g`` is overwritten and returned as B.
    Raises :class:`DataQualityError` when G + reg·I is not finite and positive definite."""
    g = np.ascontiguousarray(g, dtype=np.float64)
    g[np.diag_indices_from(g)] += reg
    # g.T is the Fortran-ordered view of the same cells, so LAPACK works in place
    factor, info = scipy.linalg.lapack.dpotrf(g.T, lower=False, overwrite_a=True)
    if info == 0:
        factor, info = scipy.linalg.lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0 or not np.isfinite(factor[0]).all():
        raise DataQualityError(
            f"ease: the regularised Gram matrix is not finite and positive definite (LAPACK "
            f"info {info}); are some ratings NaN, or is ease.reg below 0?"
        )
    if not np.shares_memory(factor, g):
        g[...] = factor.T
    _mirror_lower(g)  # potri wrote the upper triangle of g.T: g's lower triangle
    g /= -np.diag(g)[None, :]
    np.fill_diagonal(g, 0.0)
    return g


def _mirror_lower(a: np.ndarray, rows: int = 1024) -> None:
    """Copy the lower triangle of square ``a`` onto its upper triangle, ``rows`` at a time."""
    n = a.shape[0]
    for s in range(0, n, rows):
        e = min(n, s + rows)
        a[s:e, e:] = a[e:, s:e].T
        block = a[s:e, s:e]
        block[np.triu_indices(e - s, 1)] = block.T[np.triu_indices(e - s, 1)]


@dataclass(frozen=True)
class EaseScorer:
    """Scores x_u B for a block of users: ``weights`` (M × M float32) is B over ``item_ids``."""

    item_ids: np.ndarray
    weights: np.ndarray
    shared_scores: None = None

    def scores(self, block: UserBlock, rows: slice) -> np.ndarray:
        lo, hi = int(block.rated_indptr[rows.start]), int(block.rated_indptr[rows.stop])
        rated = sp.csr_matrix(
            (np.ones(hi - lo, dtype=np.float32), block.rated_items[lo:hi],
             block.rated_indptr[rows.start : rows.stop + 1] - lo),
            shape=(rows.stop - rows.start, self.item_ids.size),
        )
        return np.asarray(rated @ self.weights, dtype=np.float64)


@dataclass(frozen=True)
class EaseModel:
    """Fitted EASE: ``item_ids`` (M,), ``weights`` B (M × M float32), ``users`` (user_id)."""

    item_ids: np.ndarray
    weights: np.ndarray
    users: DataFrame
    name: str = "ease"

    def ranking_inputs(self) -> RankingInputs:
        """``TOP_N``: every training user against the kept movies."""
        return RankingInputs(users=self.users, scorer=EaseScorer(self.item_ids, self.weights))

    def save(self, path: str, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        """``SAVE``: the files of the module docstring, B in row chunks of at most
        ``chunk_bytes`` (at least one row each). Action: writes."""
        spark = self.users.sparkSession
        weights = np.ascontiguousarray(self.weights, dtype=np.float32)
        rows = max(1, chunk_bytes // max(1, weights.shape[1] * weights.itemsize))
        items = spark.createDataFrame(
            [(i, int(m)) for i, m in enumerate(self.item_ids)], _ITEMS_SCHEMA
        )
        with storage.staged(spark, path) as tmp:
            for n, start in enumerate(range(0, max(1, weights.shape[0]), rows)):
                buf = io.BytesIO()
                np.save(buf, weights[start : start + rows], allow_pickle=False)
                storage.write_bytes(spark, f"{tmp}/{_WEIGHTS}/part-{n:05d}.npy", buf.getvalue())
            items.coalesce(1).write.parquet(f"{tmp}/{_ITEMS}")
            runs.write_model_table(self.users, _USERS_SCHEMA, f"{tmp}/{_USERS}")
            runs.write_model_meta(spark, tmp, {
                runs.NAME_KEY: self.name, "format": MODEL_FORMAT, "version": MODEL_VERSION,
                "items": int(self.item_ids.size),
            })
        _logger.info("saved %s model (%d movies) to %s", self.name, self.item_ids.size, path)

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> EaseModel:
        """Read what :meth:`save` wrote (the weights eagerly, the users lazily);
        :class:`ModelError` when the folder is missing, incomplete, of another format or
        version, or its weights do not match its movies."""
        meta = runs.read_model_meta(spark, path, expect=(MODEL_FORMAT, MODEL_VERSION), what="EASE model")
        items = runs.read_model_table(spark, path, _ITEMS, _ITEMS_SCHEMA).toPandas()
        item_ids = items.sort_values(_POSITION)[MOVIE_ID].to_numpy(np.int64)
        folder = f"{path.rstrip('/')}/{_WEIGHTS}"
        parts = [name for name in storage.list_dir(spark, folder) if name.endswith(".npy")]
        if not parts:
            raise ModelError(f"{path} is not a complete saved model ({_WEIGHTS}/ is missing): save it again")
        weights = np.concatenate([
            np.load(io.BytesIO(storage.read_bytes(spark, f"{folder}/{name}")), allow_pickle=False)
            for name in parts
        ])
        if weights.shape != (item_ids.size, item_ids.size) or item_ids.size != int(meta["items"]):
            raise ModelError(
                f"{path}: weights {weights.shape} do not match its {item_ids.size} movies: save it again"
            )
        users = runs.read_model_table(spark, path, _USERS, _USERS_SCHEMA)
        return cls(item_ids=item_ids, weights=weights, users=users, name=str(meta[runs.NAME_KEY]))


def fit_ease(train: DataFrame, *, cfg: EaseConfig) -> EaseModel:
    """Fit EASE on the rated pairs of ``train`` (user_id, movie_id); see the module docstring.
    Actions: a count per movie, one collect of the kept pairs, the Gram's Spark job."""
    require_columns(train, [USER_ID, MOVIE_ID, RATING], stage="ease fit")
    spark = train.sparkSession
    counts = train.groupBy(MOVIE_ID).agg(F.count(F.lit(1)).alias(N_RATINGS))
    kept = counts.orderBy(F.desc(N_RATINGS), MOVIE_ID).limit(cfg.max_items).select(MOVIE_ID)
    pairs = train.join(F.broadcast(kept), MOVIE_ID).select(USER_ID, MOVIE_ID, F.lit(1.0).alias(_ONE))
    x = collect_matrix(pairs, row_col=USER_ID, col_col=MOVIE_ID, value_col=_ONE)
    g = gram(x.matrix, spark=spark, max_cells=cfg.max_cells)
    weights = ease_weights(g, cfg.reg).astype(np.float32)
    _logger.info("ease: %d users × %d movies, λ %.0f", x.shape[0], x.shape[1], cfg.reg)
    return EaseModel(item_ids=x.col_ids, weights=weights, users=train.select(USER_ID).distinct())


SPEC = ModelSpec(
    name="ease",
    summary="EASE (Steck 2019): closed-form item-item weights on the binarised matrix; ranks only",
    fit=fit_ease,
    abilities=frozenset({Ability.TOP_N, Ability.SAVE}),
    config=EaseConfig,
    load=EaseModel.load,
)
