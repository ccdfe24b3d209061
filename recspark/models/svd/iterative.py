"""SVD imputation / soft impute (model ``iterative_svd``); see :mod:`recspark.models.svd`.

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

    The rounds run through :class:`recspark.models.iterative.Loop` (history, early
    stopping, caching, progress lines): round 0 is the fill alone, round t ≥ 1 computes
    L_t from the previous round's S_{t−1}, then S_t and the errors of L_t.
"""

from __future__ import annotations

import logging

import numpy as np
from pyspark import RDD
from pyspark.sql import DataFrame

from recspark.blocks import Block
from recspark.errors import ConfigError
from recspark.log import stage
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec
from recspark.models.factor import FactorModel
from recspark.models.iterative import Iteration, IterationResult, Loop
from recspark.models.lowrank import (
    EntryBlock,
    ErrorStats,
    block_stats,
    entry_blocks,
    low_rank_at,
)
from recspark.models.svd import Prepared, SvdConfig, SvdModel, prepare, svd_model
from recspark.schema import RELATIVE_CHANGE
from recspark.seeds import rng

__all__ = ["SPEC", "fit_iterative_svd", "randomized_svd"]

_logger = logging.getLogger(__name__)

#: The low-rank estimate L = U diag(σ) Vᵀ: (U (m × k), σ (k), V (n × k)), on the driver.
LowRank = tuple[np.ndarray, np.ndarray, np.ndarray]


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




def _correction(
    blocks: RDD, u: np.ndarray, s: np.ndarray, v: np.ndarray, *, lo: float, hi: float, it: Iteration,
    name: str,
) -> tuple[RDD, ErrorStats, float]:
    """S = P_Ω(X − L) per block, with the clipped training errors of L and ΣS².

    Returns (S blocks RDD, ErrorStats, ΣS²); the blocks are persisted as ``it``'s scratch
    data, freed with their broadcast once the next round has used them. Action.
    """
    bc = blocks.context.broadcast((u * s, v))

    def correct(eb: EntryBlock) -> tuple[Block, ErrorStats, float]:
        us, vv = bc.value
        low = low_rank_at(us, vv, eb.rows(), eb.block.cols)
        resid = eb.block.vals - low
        stats = ErrorStats.of(eb.base + low, eb.rating, lo, hi)
        return eb.block.with_vals(resid), stats, float(resid @ resid)

    both = it.persist(blocks.mapValues(correct), f"{name} correction {it.number}")
    it.on_release(bc.destroy)
    stats, ss = both.values().map(lambda t: (t[1], t[2])).fold(
        (ErrorStats(), 0.0), lambda a, b: (a[0] + b[0], a[1] + b[1])
    )
    return both.mapValues(lambda t: t[0]), stats, ss


def _shrunk(new: LowRank, *, k: int, shrinkage: float) -> LowRank:
    """Soft-threshold the singular values (σ ← max(σ − λ, 0)); pad to k components."""
    u, s, v = new
    s = np.maximum(s - shrinkage, 0.0)
    pad = k - s.shape[0]
    if pad:
        u = np.pad(u, ((0, 0), (0, pad)))
        v = np.pad(v, ((0, 0), (0, pad)))
        s = np.pad(s, (0, pad))
    return u, s, v


class _SoftImpute:
    """The per-round step of :func:`fit_iterative_svd` (its state between rounds)."""

    def __init__(
        self, prep: Prepared, val_blocks: RDD | None, *, cfg: SvdConfig, seed: int, name: str
    ) -> None:
        self.prep, self.val_blocks, self.cfg, self.seed, self.name = prep, val_blocks, cfg, seed, name
        m, n, k = prep.space.n_users, prep.space.n_movies, cfg.rank
        self.state: LowRank = (np.zeros((m, k)), np.zeros(k), np.zeros((n, k)))
        self.s_blocks: RDD | None = None  # S of the previous round
        self.change = float("nan")

    def step(self, it: Iteration) -> IterationResult:
        """Round ``it.number``: L_t from S_{t−1} (t ≥ 1), then S_t and the errors of L_t."""
        cfg, space = self.cfg, self.prep.space
        if it.number > 0:
            u, s, v = self.state
            new = randomized_svd(
                self.s_blocks, u=u, s=s, v=v, k=cfg.rank, oversample=cfg.oversample,
                power_iters=cfg.power_iters, generator=rng(self.seed, self.name, it.number),
            )
            new = _shrunk(new, k=cfg.rank, shrinkage=cfg.shrinkage)
            self.change = _relative_change(self.state, new)
            self.state = new
            it.release_previous()  # S_{t−1} is used up: hold one S at a time
        u, s, v = self.state
        self.s_blocks, train, ss = _correction(
            self.prep.blocks, u, s, v, lo=space.lo, hi=space.hi, it=it, name=self.name
        )
        val = ErrorStats()
        if self.val_blocks is not None:
            val = block_stats(self.val_blocks, u * s, v, lo=space.lo, hi=space.hi)
        return IterationResult(
            train_rmse=train.rmse,
            validation_rmse=val.rmse,
            objective=0.5 * ss + cfg.shrinkage * float(s.sum()),
            extra={RELATIVE_CHANGE: self.change},
            state=self.state,
            converged=self.change < cfg.tol,
        )


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
    relative_change, seconds. Raises :class:`ConfigError` when ``svd.rank`` is not below
    min(users, movies). Actions: the index space, one shuffle into blocks, then per round
    4 + 2·``cfg.power_iters`` passes over cached blocks (one more over validation).
    """
    spark = ratings.sparkSession
    with stage(f"{name}: blocks", spark):
        prep = prepare(ratings, cfg=cfg, bias=bias, lo=lo, hi=hi, validation=validation, name=name)
        val_blocks = None
        if validation is not None:
            val_blocks = entry_blocks(
                validation, space=prep.space, fill=prep.fill, n_blocks=cfg.blocks,
                name=f"{name}[validation]",
            )
    m, n, k = prep.space.n_users, prep.space.n_movies, cfg.rank
    if k >= min(m, n):
        raise ConfigError(f"svd.rank={k} must be below min(users, movies) = {min(m, n)}")
    patience = cfg.patience if val_blocks is not None else None
    loop = Loop(name, spark=spark, patience=patience, unit="round")
    try:
        outcome = loop.run(
            _SoftImpute(prep, val_blocks, cfg=cfg, seed=seed, name=name).step,
            max_iter=cfg.max_rounds,
            first=0,
        )
        outcome.release()
    finally:
        if val_blocks is not None:
            val_blocks.unpersist()
    u, s, v = outcome.state
    with stage(f"{name}: factor tables", spark):
        model = svd_model(
            spark, ratings, prep, u=u, s=s, v=v, rank=k, name=name, bias=bias,
            settings={**cfg.model_dump(), "seed": seed, "best_round": outcome.best_iteration},
            history=outcome.history,
        )
    prep.blocks.unpersist()
    return model


SPEC = ModelSpec(
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
