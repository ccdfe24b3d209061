"""Truncated and iterative SVD of the mean-filled rating matrix, as residuals.

Fill and residuals
    Every missing rating is filled with f(u, i): the bias model's baseline μ + b_u + b_i
    (``svd.fill = "baseline"``) or the user's mean rating (``"user_mean"``, the fill of
    Sarwar et al. 2000). Subtracting the fill gives the residual matrix X (m users × n
    movies) with X_ui = r_ui − f(u, i) on observed entries and exactly 0 elsewhere, so X is
    as sparse as the ratings and is never densified.

Truncated SVD (model ``svd``)
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

Iterative SVD / soft impute (model ``iterative_svd``)
    Round t fills the missing entries with the current estimate L_t = U Σ Vᵀ instead of 0
    and recomputes a rank-k SVD, optionally soft-thresholding the singular values
    (σ ← max(σ − λ, 0), λ = ``svd.shrinkage``; Mazumder, Hastie & Tibshirani 2010):

        X_t = P_Ω(X) + P_Ω⊥(L_t) = L_t + S_t,   S_t = P_Ω(X − L_t)  (sparse)
        L_{t+1} = SVD_k,λ(X_t)

    X_t is never materialised. Its SVD is computed by randomised subspace iteration
    (Halko, Martinsson & Tropp 2011) from products that only need the sparse S_t and
    small dense matrices:

        X_t W = U (Σ (Vᵀ W)) + S_t W,     X_tᵀ Q = V (Σ (Uᵀ Q)) + S_tᵀ Q

    with l = k + ``svd.oversample`` columns and ``svd.power_iters`` power iterations; the
    test matrix Ω is the previous V plus Gaussian columns (a warm start: the subspace
    iteration continues across rounds). The S products run block-wise on the cached user
    blocks (SciPy CSR × dense); U (m × k), V (n × k) and the l-column blocks live on the
    driver and are broadcast. The objective ½‖P_Ω(X − L)‖² + λ Σσ, training RMSE (clipped
    predictions), validation RMSE and the relative change ‖L_{t+1} − L_t‖²/‖L_t‖² (from
    k × k products) are recorded per round. Rounds stop at ``svd.max_rounds``, when the
    change falls below ``svd.tol``, or when the validation RMSE has not improved for
    ``svd.patience`` rounds; with validation ratings the best round is returned. The state
    (U, Σ, V) lives on the driver and every round's S_t is derived from the cached blocks
    afresh, so no RDD lineage grows across rounds and nothing needs checkpointing.

Driver memory at the ml-32m shape (m = 200,948, n = 87,585), k = 16, l = 26, doubles:
    truncated: ARPACK workspace n(4k + 4) = 47 MB, V n·k = 11 MB, U collected m·k = 26 MB;
    iterative: Y/Q m·l = 42 MB (a few copies during QR), Z n·l = 18 MB, U, V and the best
    round's copies 74 MB, per-block partials of Sᵀ Q n·l = 18 MB each (tree-reduced);
    index space (fill, fallback, masks) ≈ 5 MB. Executors cache the ratings once per block
    RDD (≈ 21 bytes per rating with the fill, ≈ 0.7 GB at 32M) and one S_t (≈ 0.4 GB); the
    truncated SVD's JVM-side sparse rows take ≈ 0.4 GB more. ``scripts/bench_svd.py`` at
    this shape with 3M ratings measured a peak RSS (driver + JVM + Python workers) of
    4.0 GB for k = 16 and 5.0 GB for 5 rounds, of which the Python driver 0.35 / 0.64 GB.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Iterable, Iterator, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from pyspark import RDD
from pyspark.mllib.linalg import SparseVector
from pyspark.mllib.linalg.distributed import RowMatrix
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.blocks import Block
from recspark.config import Section
from recspark.errors import ConfigError, ModelError
from recspark.log import stage
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec
from recspark.models.factor import FactorModel
from recspark.models.lowrank import (
    STORAGE,
    EarlyStop,
    EntryBlock,
    ErrorStats,
    IndexSpace,
    Offsets,
    block_stats,
    entry_blocks,
    factor_tables,
    index_space,
    low_rank_at,
    user_mean_offsets,
)
from recspark.schema import (
    BIAS,
    FACTORS,
    ITERATION,
    METRIC,
    MODEL,
    MOVIE_ID,
    MOVIE_IDX,
    OBJECTIVE,
    RATING,
    RELATIVE_CHANGE,
    SECONDS,
    TRAIN_RMSE,
    USER_ID,
    USER_IDX,
    VALIDATION_RMSE,
    VALUE,
    require_columns,
)
from recspark.seeds import rng

__all__ = [
    "FILLS",
    "SvdModel",
    "ITERATIVE_SPEC",
    "SPEC",
    "SvdConfig",
    "fill_offsets",
    "fit_iterative_svd",
    "fit_truncated_svd",
    "history_rows",
    "randomized_svd",
    "spark_svd_mode",
    "truncate",
]

_logger = logging.getLogger(__name__)

#: Accepted values of ``svd.fill``.
FILLS = ("baseline", "user_mean")


class SvdConfig(Section):
    """Truncated and iterative SVD on residuals (module docstring); both models read it.

    ``fill``: ``baseline`` (μ + b_u + b_i of the bias model) or ``user_mean``. ``sweep``:
    extra ranks the truncated SVD is also evaluated at (it computes max(rank, sweep)
    components once). Iterative SVD: at most ``max_rounds`` rounds, stopping when the
    relative change of the low-rank estimate falls below ``tol`` or when the validation
    RMSE has not improved for ``patience`` rounds; singular values are soft-thresholded by
    ``shrinkage`` (absolute, in rating units: re-tune it when the data size changes);
    randomised SVD with ``oversample`` extra columns and ``power_iters`` power iterations;
    ratings held in ``blocks`` user blocks. ``rcond``: computeSVD's reciprocal condition
    number (smaller singular values are dropped).
    """

    rank: int = Field(15, ge=1)
    fill: Literal["baseline", "user_mean"] = "baseline"
    sweep: tuple[Annotated[int, Field(ge=1)], ...] = ()
    max_rounds: int = Field(10, ge=1)
    tol: float = Field(1e-4, ge=0)
    shrinkage: float = Field(0.0, ge=0)
    oversample: int = Field(10, ge=0)
    power_iters: int = Field(2, ge=0)
    blocks: int = Field(4, ge=1)
    patience: int = Field(2, ge=1)
    rcond: float = Field(1e-9, ge=0)
#: Largest n × n Gram matrix (bytes) we let MLlib build on the driver in its local modes.
MAX_LOCAL_GRAM_BYTES = 512 << 20


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class SvdModel(FactorModel):
    """A :class:`FactorModel` plus its singular values (descending) and, when more
    components were computed than ``rank`` (for the rank sweep), ``sweep_model``: the same
    model with all of them (:func:`truncate` gives any smaller rank)."""

    singular_values: tuple[float, ...] = ()
    sweep_model: FactorModel | None = None


def truncate(model: FactorModel, k: int) -> FactorModel:
    """``model`` keeping only its first ``k`` latent components (lazy column slice).

    Exact for SVD factors, whose components are ordered by singular value.
    """
    if not 1 <= k <= model.rank:
        raise ConfigError(f"cannot truncate a rank-{model.rank} model to k={k}")
    if k == model.rank:
        return model
    sliced = F.slice(F.col(FACTORS), 1, k).alias(FACTORS)
    return FactorModel(
        name=model.name,
        global_mean=model.global_mean,
        rank=k,
        user_factors=model.user_factors.select(USER_ID, USER_IDX, BIAS, sliced),
        item_factors=model.item_factors.select(MOVIE_ID, MOVIE_IDX, BIAS, sliced),
        fallback=model.fallback,
        lo=model.lo,
        hi=model.hi,
        settings={**dict(model.settings), "rank": k},
        history=model.history,
    )


# --------------------------------------------------------------------------- config


def fill_offsets(ratings: DataFrame, *, space: IndexSpace, fill: str) -> Offsets:
    """The fill f(u, i) named by ``svd.fill``: the bias model's baseline or user means."""
    if fill == "baseline":
        return space.fallback
    if fill == "user_mean":
        return user_mean_offsets(ratings, space)
    raise ConfigError(f"svd.fill must be one of {', '.join(FILLS)}, got {fill!r}")


def spark_svd_mode(n_cols: int, k: int) -> str:
    """The mode MLlib's ``RowMatrix.computeSVD`` (mode "auto") picks for n columns and k.

    ``local-svd`` / ``local-eigs`` build the dense n × n Gram matrix on the driver;
    ``dist-eigs`` runs ARPACK with one distributed pass per Gram-vector product. Mirrors
    RowMatrix.scala (Spark 2.x–4.x), where n / 2 and n / 3 are integer divisions.
    """
    if n_cols < 100 or (k > n_cols // 2 and n_cols <= 15000):
        return "local-eigs" if k < n_cols // 3 else "local-svd"
    return "dist-eigs"


# --------------------------------------------------------------------------- shared fit steps


@dataclass(frozen=True)
class _Prepared:
    space: IndexSpace
    fill: Offsets
    blocks: RDD  # (block id, EntryBlock) of the training ratings, persisted


def _prepare(
    ratings: DataFrame, *, cfg: SvdConfig, bias: BiasModel, lo: float, hi: float,
    validation: DataFrame | None, name: str,
) -> _Prepared:
    require_columns(
        ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage=f"{name} fit"
    )
    space = index_space(ratings, bias=bias, lo=lo, hi=hi, validation=validation)
    fill = fill_offsets(ratings, space=space, fill=cfg.fill)
    blocks = entry_blocks(
        ratings, space=space, fill=fill, n_blocks=cfg.blocks, name=f"{name}[train]"
    )
    return _Prepared(space, fill, blocks)


def _split_factors(u: np.ndarray, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p = U Σ^½, q = V Σ^½, so that p_u·q_i = (U Σ Vᵀ)_ui."""
    root = np.sqrt(np.maximum(s, 0.0))
    return u * root, v * root


def _model(
    spark: SparkSession,
    ratings: DataFrame,
    prep: _Prepared,
    *,
    u: np.ndarray,
    s: np.ndarray,
    v: np.ndarray,
    rank: int,
    name: str,
    bias: BiasModel,
    settings: dict,
    history: pd.DataFrame | None = None,
) -> SvdModel:
    p, q = _split_factors(u, s, v)
    users, items = factor_tables(
        spark, ratings, user_factors=p, item_factors=q, fill=prep.fill, space=prep.space
    )
    full = FactorModel(
        name=name,
        global_mean=prep.fill.mu,
        rank=int(s.shape[0]),
        user_factors=users,
        item_factors=items,
        fallback=bias,
        lo=prep.space.lo,
        hi=prep.space.hi,
        settings={**settings, "singular_values": [float(x) for x in s]},
        history=history,
    )
    main = truncate(full, rank)
    return SvdModel(
        **{f.name: getattr(main, f.name) for f in dataclasses.fields(FactorModel)},
        singular_values=tuple(float(x) for x in s),
        sweep_model=full if full.rank > rank else None,
    )


# --------------------------------------------------------------------------- truncated SVD


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
    bias model's prediction. Actions: the index space, one shuffle into blocks, ARPACK's
    passes over the cached rows, U (m × k) collected to the driver, the factor tables.
    """
    spark = ratings.sparkSession
    sc = spark.sparkContext
    k_fit = max((cfg.rank, *cfg.sweep))
    with stage(f"{name}: residual rows", spark):
        prep = _prepare(ratings, cfg=cfg, bias=bias, lo=lo, hi=hi, validation=None, name=name)
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
        vectors = prep.blocks.values().flatMap(_residual_rows(n))
        matrix = RowMatrix(vectors, m, n)
        # MLlib makes one pass over the rows per ARPACK step; cache them on the JVM side so a
        # pass never re-runs Python (private handle: pyspark exposes rows only as a copy).
        jrows = matrix._java_matrix_wrapper._java_model.rows()
        jrows.persist(sc._getJavaStorageLevel(STORAGE))
        jrows.count()
    try:
        with stage(f"{name}: computeSVD k={k_fit}", spark):
            svd = matrix.computeSVD(k_fit, computeU=True, rCond=cfg.rcond)
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
            u = np.zeros((m, s.shape[0]))
            for idx, rows in ids.zip(svd.U.rows).mapPartitions(_stack_rows).collect():
                u[idx] = rows
    finally:
        jrows.unpersist(False)
    if s.shape[0] == 0:
        raise ModelError(f"{name}: the residual matrix is zero; there is nothing to factorise")
    with stage(f"{name}: factor tables", spark):
        model = _model(
            spark, ratings, prep, u=u, s=s, v=v, rank=min(cfg.rank, s.shape[0]), name=name,
            bias=bias, settings=cfg.model_dump(),
        )
    prep.blocks.unpersist()
    _logger.info("%s: singular values %s", name, np.array2string(s[: cfg.rank], precision=2))
    return model


# --------------------------------------------------------------------------- iterative SVD


def _times(blocks: RDD, w: np.ndarray, n_cols: int, n_rows: int) -> np.ndarray:
    """S W (m × l) for the sparse S held in ``blocks`` ((block id, Block)). Action."""
    bc = blocks.context.broadcast(w)

    def part(b: Block) -> tuple[np.ndarray, np.ndarray]:
        return b.ids, b.csr(n_cols) @ bc.value

    out = np.zeros((n_rows, w.shape[1]))
    for ids, rows in blocks.values().map(part).collect():
        out[ids] = rows
    bc.destroy()
    return out


def _t_times(blocks: RDD, q: np.ndarray, n_cols: int) -> np.ndarray:
    """Sᵀ Q (n × l) for the sparse S held in ``blocks``; per-block partials tree-reduced."""
    bc = blocks.context.broadcast(q)

    def part(b: Block) -> np.ndarray:
        return b.csr(n_cols).T @ bc.value[b.ids]

    out = blocks.values().map(part).treeReduce(np.add, depth=2)
    bc.destroy()
    return out


def randomized_svd(
    s_blocks: RDD,
    *,
    u: np.ndarray,
    s: np.ndarray,
    v: np.ndarray,
    k: int,
    oversample: int,
    power_iters: int,
    generator: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-k SVD of X = U diag(s) Vᵀ + S by randomised subspace iteration.

    ``s_blocks``: (block id, Block) holding the sparse S by user rows; ``u`` (m × r),
    ``s`` (r), ``v`` (n × r) the dense low-rank part (r may be 0 or s all zero). Returns
    (U_k, σ_k, V_k). 2 + 2·``power_iters`` distributed passes over S; see module docstring.
    """
    m, n = u.shape[0], v.shape[0]
    width = min(k + oversample, m, n)
    omega = generator.standard_normal((n, width))
    warm = min(v.shape[1], width - 1) if np.any(s > 0) else 0
    if warm:
        omega[:, :warm] = v[:, :warm]
    us = u * s

    def apply(w: np.ndarray) -> np.ndarray:  # X W
        return us @ (v.T @ w) + _times(s_blocks, w, n, m)

    def apply_t(q: np.ndarray) -> np.ndarray:  # Xᵀ Q
        return v @ (us.T @ q) + _t_times(s_blocks, q, n)

    q, _ = np.linalg.qr(apply(omega))
    for _ in range(power_iters):
        qz, _ = np.linalg.qr(apply_t(q))
        q, _ = np.linalg.qr(apply(qz))
    z = apply_t(q)  # = Bᵀ with B = Qᵀ X
    a, sigma, ct = np.linalg.svd(z, full_matrices=False)  # Bᵀ = A Σ Cᵀ → B = C Σ Aᵀ
    k = min(k, sigma.shape[0])
    return q @ ct.T[:, :k], sigma[:k], a[:, :k]


def _relative_change(
    old: tuple[np.ndarray, np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> float:
    """‖L_new − L_old‖_F² / ‖L_old‖_F² from k × k products (L = U diag(s) Vᵀ); NaN when
    L_old = 0 (the first round)."""
    uo, so, vo = old
    un, sn, vn = new
    norm_old = float(so @ so)
    if norm_old == 0.0:
        return float("nan")
    cross = float(np.sum((sn[:, None] * (un.T @ uo) * so[None, :]) * (vo.T @ vn).T))
    return max(float(sn @ sn) + norm_old - 2.0 * cross, 0.0) / norm_old


def _correction(blocks: RDD, u: np.ndarray, s: np.ndarray, v: np.ndarray, *, lo: float, hi: float):
    """S = P_Ω(X − L) per block, persisted, with the clipped training errors of L and ΣS².

    Returns (S blocks RDD, ErrorStats, ΣS², broadcast to release with the RDD). Action.
    """
    bc = blocks.context.broadcast((u * s, v))

    def correct(eb: EntryBlock) -> tuple[Block, ErrorStats, float]:
        us, vv = bc.value
        low = low_rank_at(us, vv, eb.rows(), eb.block.cols)
        resid = eb.block.vals - low
        stats = ErrorStats.of(eb.base + low, eb.rating, lo, hi)
        return eb.block.with_vals(resid), stats, float(resid @ resid)

    both = blocks.mapValues(correct).persist(STORAGE)
    stats, ss = both.values().map(lambda t: (t[1], t[2])).fold(
        (ErrorStats(), 0.0), lambda a, b: (a[0] + b[0], a[1] + b[1])
    )
    return both, both.mapValues(lambda t: t[0]), stats, ss, bc


def fit_iterative_svd(
    ratings: DataFrame,
    *,
    cfg: SvdConfig,
    bias: BiasModel,
    seed: int,
    lo: float = 0.5,
    hi: float = 5.0,
    validation: DataFrame | None = None,
    name: str = "iterative_svd",
) -> SvdModel:
    """Iterative (soft-impute) SVD of the residual matrix (see the module docstring).

    ``ratings`` and ``validation``: user_id, movie_id, user_idx, movie_idx, rating.
    ``seed``: the stage seed of the random test matrices. Returns a rank-``cfg.rank``
    :class:`SvdModel` whose ``history`` has one row per round (round 0 = the fill alone):
    iteration, train_rmse, validation_rmse (NaN without validation), objective,
    relative_change, seconds. Actions: the index space, one shuffle into blocks, then per
    round 4 + 2·``cfg.power_iters`` passes over cached blocks (one more over validation).
    """
    spark = ratings.sparkSession
    with stage(f"{name}: blocks", spark):
        prep = _prepare(
            ratings, cfg=cfg, bias=bias, lo=lo, hi=hi, validation=validation, name=name
        )
        val_blocks = None
        if validation is not None:
            val_blocks = entry_blocks(
                validation, space=prep.space, fill=prep.fill, n_blocks=cfg.blocks,
                name=f"{name}[validation]",
            )
    m, n, k = prep.space.n_users, prep.space.n_movies, cfg.rank
    if k >= min(m, n):
        raise ConfigError(f"svd.rank={k} must be below min(users, movies) = {min(m, n)}")
    state = (np.zeros((m, k)), np.zeros(k), np.zeros((n, k)))
    stopper = EarlyStop(patience=cfg.patience, enabled=val_blocks is not None)
    history: list[dict] = []
    change = float("nan")
    start = time.perf_counter()
    try:
        for t in range(cfg.max_rounds + 1):
            u, s, v = state
            with stage(f"{name}: round {t} errors", spark):
                persisted, s_blocks, train, ss, bc = _correction(prep.blocks, u, s, v, lo=lo, hi=hi)
                val = (
                    block_stats(val_blocks, u * s, v, lo=lo, hi=hi)
                    if val_blocks is not None
                    else ErrorStats()
                )
            history.append(
                {
                    ITERATION: t,
                    TRAIN_RMSE: train.rmse,
                    VALIDATION_RMSE: val.rmse,
                    OBJECTIVE: 0.5 * ss + cfg.shrinkage * float(s.sum()),
                    RELATIVE_CHANGE: change,
                    SECONDS: time.perf_counter() - start,
                }
            )
            _logger.info(
                "%s round %d: train RMSE %.4f, validation RMSE %.4f, change %.3g",
                name, t, train.rmse, val.rmse, change,
            )
            stop = stopper.update(t, val.rmse, state)
            if stop or t == cfg.max_rounds or change < cfg.tol:
                persisted.unpersist()
                bc.destroy()
                break
            start = time.perf_counter()
            with stage(f"{name}: round {t + 1} randomised SVD", spark):
                new_u, new_s, new_v = randomized_svd(
                    s_blocks, u=u, s=s, v=v, k=k, oversample=cfg.oversample,
                    power_iters=cfg.power_iters, generator=rng(seed, name, t + 1),
                )
            new_s = np.maximum(new_s - cfg.shrinkage, 0.0)
            pad = k - new_s.shape[0]
            if pad:
                new_u = np.pad(new_u, ((0, 0), (0, pad)))
                new_v = np.pad(new_v, ((0, 0), (0, pad)))
                new_s = np.pad(new_s, (0, pad))
            change = _relative_change(state, (new_u, new_s, new_v))
            state = (new_u, new_s, new_v)
            persisted.unpersist()
            bc.destroy()
    finally:
        if val_blocks is not None:
            val_blocks.unpersist()
    best = stopper.best_iteration
    u, s, v = stopper.best_state
    _logger.info("%s: keeping round %d of %d", name, best, len(history) - 1)
    with stage(f"{name}: factor tables", spark):
        model = _model(
            spark, ratings, prep, u=u, s=s, v=v, rank=k, name=name, bias=bias,
            settings={**cfg.model_dump(), "seed": seed, "best_round": best},
            history=pd.DataFrame(history),
        )
    prep.blocks.unpersist()
    return model


# --------------------------------------------------------------------------- specs

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

ITERATIVE_SPEC = ModelSpec(
    name="iterative_svd",
    summary="SVD imputation (soft-impute) by randomised subspace iteration",
    fit=fit_iterative_svd,
    abilities=frozenset(
        {Ability.PREDICT, Ability.TOP_N, Ability.FACTORS, Ability.SAVE, Ability.HISTORY}
    ),
    config=SvdConfig,
    section="svd",
    load=FactorModel.load,
)


# --------------------------------------------------------------------------- history


def history_rows(model: FactorModel) -> pd.DataFrame:
    """A model's convergence history in long form: model, iteration, metric, value
    (metrics train_rmse, validation_rmse, objective, relative_change, seconds; NaN rows
    dropped). Empty when the model has no history."""
    if model.history is None or model.history.empty:
        return pd.DataFrame(columns=[MODEL, ITERATION, METRIC, VALUE])
    long = model.history.melt(id_vars=[ITERATION], var_name=METRIC, value_name=VALUE)
    long = long.dropna(subset=[VALUE])
    long.insert(0, MODEL, model.name)
    return long.reset_index(drop=True)
