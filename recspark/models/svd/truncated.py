"""Truncated SVD of the residual matrix (model ``svd``); see :mod:`recspark.models.svd`.

    X ≈ U_k Σ_k V_kᵀ by ``RowMatrix.computeSVD(k, computeU=True)`` on one sparse row per
    user, and r̂(u, i) = clip(f(u, i) + (U_k Σ_k V_kᵀ)_ui). The factors are stored
    symmetrically, p_u = U_u Σ^½ and q_i = V_i Σ^½, so p_u·q_i is the low-rank term and
    a :class:`~recspark.models.factor.FactorModel` predicts (bias = the fill's per-user and
    per-movie parts). MLlib derives V and Σ from the eigenvectors of the Gram matrix XᵀX:
    its "auto" mode builds the dense n × n Gram on the driver only when n < 100 or
    (k > n/2 and n ≤ 15000); otherwise ARPACK drives distributed products XᵀX·v (one pass
    over the cached rows each, O(n) per task and O(n·k) on the driver).
    :func:`spark_svd_mode` reproduces that rule and :func:`fit_truncated_svd` refuses a
    configuration that would build a Gram larger than :data:`MAX_LOCAL_GRAM_BYTES`.
    U = X V Σ⁻¹ is computed by MLlib row by row (distributed).
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable, Iterator

import numpy as np
from pyspark.mllib.linalg import SparseVector
from pyspark.mllib.linalg.distributed import RowMatrix
from pyspark.sql import DataFrame, SparkSession

from recspark.errors import ConfigError, ModelError
from recspark.log import stage
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec
from recspark.models.factor import FactorModel
from recspark.models.lowrank import STORAGE, EntryBlock
from recspark.models.svd import Prepared, SvdConfig, SvdModel, prepare, svd_model

__all__ = ["MAX_LOCAL_GRAM_BYTES", "SPEC", "fit_truncated_svd", "spark_svd_mode"]

_logger = logging.getLogger(__name__)

#: Largest n × n Gram matrix (bytes) we let MLlib build on the driver in its local modes.
MAX_LOCAL_GRAM_BYTES = 512 << 20


def spark_svd_mode(n_cols: int, k: int) -> str:
    """The mode MLlib's ``RowMatrix.computeSVD`` (mode "auto") picks for n columns and k.

    ``local-svd`` / ``local-eigs`` build the dense n × n Gram matrix on the driver;
    ``dist-eigs`` runs ARPACK with one distributed pass per Gram-vector product. Mirrors
    RowMatrix.scala (Spark 2.x–4.x), where n / 2 and n / 3 are integer divisions.
    """
    if n_cols < 100 or (k > n_cols // 2 and n_cols <= 15000):
        return "local-eigs" if k < n_cols // 3 else "local-svd"
    return "dist-eigs"



def _sparse_vector(size: int, indices: np.ndarray, values: np.ndarray) -> SparseVector:
    """A SparseVector from sorted unique int32 indices, without the constructor's Python
    loop over entries (the block's columns are already strictly increasing per row)."""
    vec = SparseVector.__new__(SparseVector)
    vec.size = size
    vec.indices = indices
    vec.values = values
    return vec


def _residual_rows(n_cols: int):
    """One sparse residual row per user of a block (the RowMatrix API takes one vector
    object per row, so this loops over the block's users, not over ratings)."""

    def rows(eb: EntryBlock) -> Iterator[SparseVector]:
        b = eb.block
        cols = b.cols.astype(np.int32)
        vals = np.ascontiguousarray(b.vals, dtype=np.float64)
        bounds = b.indptr
        for j in range(b.ids.shape[0]):
            a, z = bounds[j], bounds[j + 1]
            yield _sparse_vector(n_cols, cols[a:z], vals[a:z])

    return rows


def _stack_rows(items: Iterable[tuple[int, object]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    ids, rows = [], []
    for idx, vec in items:
        ids.append(idx)
        rows.append(vec.toArray())
    if ids:
        yield np.asarray(ids, dtype=np.int64), np.vstack(rows)



def fit_truncated_svd(
    ratings: DataFrame,
    *,
    cfg: SvdConfig,
    bias: BiasModel,
    lo: float = 0.5,
    hi: float = 5.0,
    name: str = "svd",
) -> SvdModel:
    """Rank-``cfg.rank`` truncated SVD of the residual matrix (see the module docstring).

    ``ratings``: user_id, movie_id, user_idx, movie_idx, rating. Computes
    max(``cfg.rank``, ``cfg.sweep``) components once; the returned model predicts with
    ``cfg.rank`` and keeps the rest in ``sweep_model``. Unknown users or movies get the
    bias model's prediction. Raises :class:`ConfigError` when more components are asked
    than the matrix has columns, or when MLlib would build too large a Gram matrix on the
    driver. Actions: the index space, one shuffle into blocks, ARPACK's passes over the
    cached rows, U (m × k) collected to the driver, the factor tables.
    """
    spark = ratings.sparkSession
    k_fit = max((cfg.rank, *cfg.sweep))
    with stage(f"{name}: residual rows", spark):
        prep = prepare(ratings, cfg=cfg, bias=bias, lo=lo, hi=hi, validation=None, name=name)
        _check_size(prep, k_fit, name)
        matrix, jrows = _row_matrix(spark, prep)
    try:
        with stage(f"{name}: computeSVD k={k_fit}", spark):
            u, s, v = _compute_svd(matrix, prep, k_fit=k_fit, rcond=cfg.rcond, name=name)
    finally:
        jrows.unpersist(False)
    if s.shape[0] == 0:
        raise ModelError(f"{name}: the residual matrix is zero; there is nothing to factorise")
    with stage(f"{name}: factor tables", spark):
        model = svd_model(
            spark, ratings, prep, u=u, s=s, v=v, rank=min(cfg.rank, s.shape[0]), name=name,
            bias=bias, settings=cfg.model_dump(),
        )
    prep.blocks.unpersist()
    _logger.info("%s: singular values %s", name, np.array2string(s[: cfg.rank], precision=2))
    return model


def _check_size(prep: Prepared, k_fit: int, name: str) -> None:
    """Refuse k ≥ n and the local Gram modes above :data:`MAX_LOCAL_GRAM_BYTES`; log the mode."""
    m, n = prep.space.n_users, prep.space.n_movies
    mode = spark_svd_mode(n, k_fit)
    if k_fit >= n:
        raise ConfigError(
            f"svd: {k_fit} components requested but the matrix has only {n} movie columns; "
            "lower svd.rank / svd.sweep"
        )
    if mode != "dist-eigs" and n * n * 8 > MAX_LOCAL_GRAM_BYTES:
        raise ConfigError(
            f"svd: k={k_fit} with n={n} columns makes MLlib build the {n}x{n} Gram matrix "
            f"({n * n * 8 / 2**20:.0f} MB) on the driver; keep max(svd.rank, svd.sweep) "
            f"at most {n // 2} so it uses distributed ARPACK"
        )
    _logger.info(
        "%s: %d x %d residual matrix, k=%d, MLlib mode %s (driver ~%.0f MB)",
        name, m, n, k_fit, mode,
        (n * n * 8 if mode != "dist-eigs" else n * (5 * k_fit + 4) * 8) / 2**20,
    )


def _row_matrix(spark: SparkSession, prep: Prepared):
    """The residuals as a RowMatrix (one sparse row per user) whose JVM rows are persisted
    and materialised; returns (matrix, JVM rows to unpersist). Action: one count."""
    m, n = prep.space.n_users, prep.space.n_movies
    vectors = prep.blocks.values().flatMap(_residual_rows(n))
    matrix = RowMatrix(vectors, m, n)
    # MLlib makes one pass over the rows per ARPACK step; cache them on the JVM side so a
    # pass never re-runs Python (private handle: pyspark exposes rows only as a copy).
    jrows = matrix._java_matrix_wrapper._java_model.rows()
    jrows.persist(spark.sparkContext._getJavaStorageLevel(STORAGE))
    jrows.count()
    return matrix, jrows


#: computeSVD (ARPACK in the driver JVM) is not thread-safe: two at once failed with an
#: ArrayIndexOutOfBoundsException (concurrent tune trials), so fits from threads take turns.
_COMPUTE_SVD = threading.Lock()


def _compute_svd(
    matrix: RowMatrix, prep: Prepared, *, k_fit: int, rcond: float, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U (m × r), σ (r), V (n × r)) by ``computeSVD``; r ≤ ``k_fit`` (MLlib drops singular
    values below rcond·σ1). Actions: ARPACK's passes, U collected."""
    with _COMPUTE_SVD:
        svd = matrix.computeSVD(k_fit, computeU=True, rCond=rcond)
    s = svd.s.toArray()
    v = svd.V.toArray()
    if s.shape[0] < k_fit:
        _logger.warning(
            "%s: MLlib returned %d of %d singular values (the rest are below "
            "rcond·σ1 or did not converge)", name, s.shape[0], k_fit,
        )
    # U's rows are in the order of the input rows (MLlib maps them partition by
    # partition), and so are the ids flat-mapped from the same cached blocks.
    ids = prep.blocks.values().flatMap(lambda eb: eb.block.ids.tolist())
    u = np.zeros((prep.space.n_users, s.shape[0]))
    for idx, rows in ids.zip(svd.U.rows).mapPartitions(_stack_rows).collect():
        u[idx] = rows
    return u, s, v


SPEC = ModelSpec(
    name="svd",
    summary="truncated SVD of the baseline-filled residuals (RowMatrix.computeSVD)",
    fit=fit_truncated_svd,
    abilities=frozenset(
        {Ability.PREDICT, Ability.TOP_N, Ability.FACTORS, Ability.SAVE, Ability.RANK_SWEEP}
    ),
    config=SvdConfig,
    load=FactorModel.load,
)
