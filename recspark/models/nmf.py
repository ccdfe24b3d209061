"""Non-negative matrix factorisation of the observed ratings.

Model
    r̂(u, i) = clip(c + s · p_u·q_i, rating_min, rating_max),   p_u, q_i ∈ R^k_{≥0}

fitted on the observed ratings only. Without ``nmf.scale01`` the target is the rating
itself (c = 0, s = 1); with it the target is t = (r − rating_min) / (rating_max −
rating_min) ∈ [0, 1] (c = rating_min, s = rating_max − rating_min). Errors (training and
validation RMSE in the history) are always on the original rating scale; the objective is
in target units. The stored user factors are s·p_u, so a
:class:`~recspark.models.factor.FactorModel` with global mean c and zero biases predicts.
Pairs with an unknown user or movie get the bias model's prediction.

Multiplicative updates (model ``nmf``, ``nmf.solver = "multiplicative"``)
    Lee & Seung's updates restricted to the observed set Ω with an L2 penalty weighted by
    each row's number of ratings, which minimise

        J = ½ Σ_{(u,i) ∈ Ω} (t_ui − p_u·q_i)² + ½ λ (Σ_u |Ω_u| ‖p_u‖² + Σ_i |Ω_i| ‖q_i‖²)

    with λ = ``nmf.reg``:

        p_uk ← p_uk · Σ_{i ∈ Ω_u} q_ik t_ui / (Σ_{i ∈ Ω_u} q_ik t̂_ui + λ |Ω_u| p_uk)
        q_ik ← q_ik · Σ_{u ∈ Ω_i} p_uk t_ui / (Σ_{u ∈ Ω_i} p_uk t̂_ui + λ |Ω_i| q_ik)

    (t̂ = p·q on observed entries only). Each half-step is a majorise–minimise step for J
    with the other side fixed (the Lee–Seung auxiliary function with the diagonal
    (Gx + λ|Ω|x)/x), so J never increases and factors that start positive stay
    non-negative. A ratio 0/0 (a row with no ratings) sets the factor to 0.

    Distribution: the ratings are shuffled once into ``nmf.blocks`` cached user blocks
    (:func:`recspark.blocks.build_blocks`). The user half-step runs per block with Q
    broadcast (numerator T_b Q and denominator T̂_b Q + λ|Ω_u| P_b as SciPy CSR × dense
    products, T̂_b built on the block's pattern) and returns the block's new rows of P; the
    movie half-step returns per-block partial sums T_bᵀ P_b and T̂_bᵀ P_b (n × k), tree-
    reduced on the driver. P (m × k) and Q (n × k) live on the driver: at ml-32m with
    k = 15, 24 MB and 11 MB, plus two n × k partial sums per reduction level.
    Initial factors are seeded uniform on [0, 2a], a = √(mean target / k), so p·q starts
    near the mean. J, training RMSE and validation RMSE are recorded per iteration
    (iteration 0 = the initial factors); with validation ratings the iterate with the best
    validation RMSE is kept and fitting stops after ``nmf.patience`` iterations without
    improvement (the loop of :mod:`recspark.models.iterative`).

Non-negative ALS (model ``nmf_als``, or ``nmf`` with ``nmf.solver = "als"``)
    MLlib's ALS with ``nonnegative=True`` (NNLS per row, ALS-WR regularisation
    ``nmf.als_reg``, ``nmf.als_max_iter`` iterations) on the same targets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field
from pyspark import RDD
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import Section
from recspark.errors import ConfigError
from recspark.log import stage
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec
from recspark.models.factor import FactorModel, mllib_factor_table
from recspark.models.iterative import Iteration, IterationResult, Loop
from recspark.models.lowrank import (
    EntryBlock,
    ErrorStats,
    IndexSpace,
    Offsets,
    block_stats,
    constant_offsets,
    entry_blocks,
    factor_tables,
    index_space,
    low_rank_at,
)
from recspark.schema import (
    MOVIE_ID,
    MOVIE_IDX,
    RATING,
    USER_ID,
    USER_IDX,
    require_columns,
)
from recspark.seeds import rng

__all__ = [
    "SOLVERS",
    "ALS_SPEC",
    "NmfConfig",
    "SPEC",
    "check_scale",
    "fit_nmf",
    "fit_nmf_als",
    "init_factors",
    "multiplicative_step",
]

_logger = logging.getLogger(__name__)

#: Accepted values of ``nmf.solver``.
SOLVERS = ("multiplicative", "als")
_TARGET = "_nmf_target"


class NmfConfig(Section):
    """Non-negative matrix factorisation (module docstring); ``nmf`` and ``nmf_als`` read it.

    ``solver`` picks the fitter of the ``nmf`` model: ``multiplicative`` (Lee–Seung
    updates on observed entries, ``max_iter`` iterations, L2 weight ``reg``) or ``als``
    (MLlib non-negative ALS, ``als_max_iter`` iterations, ``als_reg``); the ``nmf_als``
    model always uses ``als``. ``scale01`` fits (r − rating_min)/(rating_max − rating_min).
    ``patience``: evaluations without validation improvement before stopping early.
    """

    rank: int = Field(15, ge=1)
    max_iter: int = Field(50, ge=1)
    reg: float = Field(0.05, ge=0)
    scale01: bool = False
    solver: Literal["multiplicative", "als"] = "multiplicative"
    blocks: int = Field(4, ge=1)
    patience: int = Field(3, ge=1)
    als_max_iter: int = Field(15, ge=1)
    als_reg: float = Field(0.1, ge=0)


def check_scale(cfg: NmfConfig, *, lo: float) -> None:
    """NMF needs non-negative targets: raise :class:`ConfigError` when the rating scale
    starts below 0 and ``nmf.scale01`` is off."""
    if not cfg.scale01 and lo < 0:
        raise ConfigError(
            f"NMF needs non-negative ratings but train.rating_min is {lo}; set nmf.scale01 = true"
        )


def _scale(cfg: NmfConfig, lo: float, hi: float) -> tuple[float, float]:
    """(c, s) of r = c + s·t (see the module docstring)."""
    return (float(lo), float(hi - lo)) if cfg.scale01 else (0.0, 1.0)


def init_factors(
    n_users: int, n_movies: int, *, rank: int, mean_target: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded initial (P, Q): uniform on [0, 2a] with a = √(mean_target / rank), so that
    E[p·q] = mean_target. A pure function of the arguments."""
    a = np.sqrt(max(mean_target, 1e-12) / rank)
    gen = rng(seed, "nmf", "init")
    return gen.uniform(0.0, 2 * a, (n_users, rank)), gen.uniform(0.0, 2 * a, (n_movies, rank))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def multiplicative_step(
    rows: np.ndarray,
    cols: np.ndarray,
    target: np.ndarray,
    p: np.ndarray,
    q: np.ndarray,
    *,
    reg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One full iteration (user then movie half-step) on a whole matrix, in NumPy.

    ``rows``, ``cols``, ``target``: the observed entries. The reference the distributed
    fit implements block-wise; also handy on small data. Returns new (P, Q).
    """
    import scipy.sparse as sp

    m, n = p.shape[0], q.shape[0]
    t = sp.csr_matrix((target, (rows, cols)), shape=(m, n))
    n_u = np.bincount(rows, minlength=m)[:, None]
    n_i = np.bincount(cols, minlength=n)[:, None]
    fit = sp.csr_matrix((low_rank_at(p, q, rows, cols), (rows, cols)), shape=(m, n))
    p = p * _ratio(t @ q, fit @ q + reg * n_u * p)
    fit = sp.csr_matrix((low_rank_at(p, q, rows, cols), (rows, cols)), shape=(m, n))
    q = q * _ratio(t.T @ p, fit.T @ p + reg * n_i * q)
    return p, q


# --------------------------------------------------------------------------- block passes


@dataclass(frozen=True)
class _UserStep:
    ids: np.ndarray
    rows: np.ndarray | None  # new P rows, or None when only the errors were asked for
    stats: ErrorStats
    sse: float  # Σ (t − t̂)² in target units


def _user_pass(
    blocks: RDD, p: np.ndarray, q: np.ndarray, *, reg: float, offset: float, scale: float,
    lo: float, hi: float, update: bool,
) -> tuple[np.ndarray | None, ErrorStats, float]:
    """Errors of (P, Q) on the training entries and, if ``update``, the new P. Action."""
    m, n = p.shape[0], q.shape[0]
    bc = blocks.context.broadcast((p, q))

    def step(eb: EntryBlock) -> _UserStep:
        pp, qq = bc.value
        b = eb.block
        target = b.vals / scale  # block values are r − offset
        fit = low_rank_at(pp, qq, eb.rows(), b.cols)
        stats = ErrorStats.of(offset + scale * fit, eb.rating, lo, hi)
        resid = target - fit
        rows = None
        if update:
            pb = pp[b.ids]
            num = b.csr(n, target) @ qq
            den = b.csr(n, fit) @ qq + reg * b.counts()[:, None] * pb
            rows = pb * _ratio(num, den)
        return _UserStep(b.ids, rows, stats, float(resid @ resid))

    new_p = np.zeros((m, p.shape[1])) if update else None
    stats, sse = ErrorStats(), 0.0
    for part in blocks.values().map(step).collect():
        stats, sse = stats + part.stats, sse + part.sse
        if new_p is not None:
            new_p[part.ids] = part.rows
    bc.destroy()
    return new_p, stats, sse


def _movie_pass(
    blocks: RDD, p: np.ndarray, q: np.ndarray, *, reg: float, movie_counts: np.ndarray, scale: float
) -> np.ndarray:
    """The movie half-step with P fixed: new Q from tree-reduced per-block sums. Action."""
    n = q.shape[0]
    bc = blocks.context.broadcast((p, q))

    def sums(eb: EntryBlock) -> tuple[np.ndarray, np.ndarray]:
        pp, qq = bc.value
        b = eb.block
        pb = pp[b.ids]
        fit = low_rank_at(pp, qq, eb.rows(), b.cols)
        return b.csr(n, b.vals / scale).T @ pb, b.csr(n, fit).T @ pb

    num, den = blocks.values().map(sums).treeReduce(
        lambda a, b: (a[0] + b[0], a[1] + b[1]), depth=2
    )
    bc.destroy()
    return q * _ratio(num, den + reg * movie_counts[:, None] * q)


def _counts(blocks: RDD, space: IndexSpace) -> tuple[np.ndarray, np.ndarray]:
    """|Ω_u| (m) and |Ω_i| (n) of the training entries. Action: one pass."""
    m, n = space.n_users, space.n_movies

    def part(eb: EntryBlock) -> tuple[np.ndarray, np.ndarray]:
        user = np.zeros(m)
        user[eb.block.ids] = eb.block.counts()
        return user, np.bincount(eb.block.cols, minlength=n).astype(np.float64)

    return blocks.values().map(part).treeReduce(lambda a, b: (a[0] + b[0], a[1] + b[1]), depth=2)


# --------------------------------------------------------------------------- fits


def fit_nmf(
    ratings: DataFrame,
    *,
    cfg: NmfConfig,
    bias: BiasModel,
    seed: int,
    lo: float = 0.5,
    hi: float = 5.0,
    validation: DataFrame | None = None,
    name: str = "nmf",
) -> FactorModel:
    """NMF by multiplicative updates (see the module docstring); with ``nmf.solver = "als"``
    :func:`fit_nmf_als` instead.

    ``ratings`` / ``validation``: user_id, movie_id, user_idx, movie_idx, rating. ``seed``:
    the stage seed of the initial factors. Returns a :class:`FactorModel` whose ``history``
    has one row per iteration (0 = initial factors): iteration, train_rmse,
    validation_rmse (NaN without validation), objective, seconds. Actions: the index
    space, one shuffle into blocks, a count pass, then two passes per iteration (three
    with validation).
    """
    if cfg.solver == "als":
        return fit_nmf_als(ratings, cfg=cfg, bias=bias, seed=seed, lo=lo, hi=hi, name=name)
    check_scale(cfg, lo=lo)
    require_columns(ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage=f"{name} fit")
    spark = ratings.sparkSession
    offset, scale = _scale(cfg, lo, hi)
    with stage(f"{name}: blocks", spark):
        data = _blocks(ratings, validation, bias=bias, lo=lo, hi=hi, offset=offset, cfg=cfg, name=name)
    patience = cfg.patience if data.validation is not None else None
    try:
        outcome = Loop(name, spark=spark, patience=patience).run(
            _Multiplicative(data, cfg=cfg, bias=bias, seed=seed, offset=offset, scale=scale).step,
            max_iter=cfg.max_iter,
            first=0,
        )
    finally:
        data.release()
    p, q = outcome.state
    with stage(f"{name}: factor tables", spark):
        users, items = factor_tables(
            spark, ratings, user_factors=p * scale, item_factors=q, fill=data.fill, space=data.space
        )
    return FactorModel(
        name=name,
        global_mean=offset,
        rank=cfg.rank,
        user_factors=users,
        item_factors=items,
        fallback=bias,
        lo=lo,
        hi=hi,
        settings={
            **cfg.model_dump(),
            "solver": "multiplicative",
            "seed": seed,
            "best_iteration": outcome.best_iteration,
        },
        history=outcome.history,
    )


@dataclass(frozen=True)
class _Data:
    """The cached inputs of a multiplicative fit: index space, constant fill, training (and
    validation) entry blocks, and the rating counts |Ω_u|, |Ω_i|."""

    space: IndexSpace
    fill: Offsets
    train: RDD
    validation: RDD | None
    user_counts: np.ndarray
    movie_counts: np.ndarray

    def release(self) -> None:
        """Unpersist the cached blocks."""
        self.train.unpersist()
        if self.validation is not None:
            self.validation.unpersist()


def _blocks(
    ratings: DataFrame, validation: DataFrame | None, *, bias: BiasModel, lo: float, hi: float,
    offset: float, cfg: NmfConfig, name: str,
) -> _Data:
    """Index space, the ratings (and validation ratings) in cached user blocks holding
    r − offset, and the counts. Actions: the index space, the block builds, one count pass."""
    space = index_space(ratings, bias=bias, lo=lo, hi=hi, validation=validation)
    fill = constant_offsets(offset, space)
    train = entry_blocks(ratings, space=space, fill=fill, n_blocks=cfg.blocks, name=f"{name}[train]")
    val = None
    if validation is not None:
        val = entry_blocks(
            validation, space=space, fill=fill, n_blocks=cfg.blocks, name=f"{name}[validation]"
        )
    user_counts, movie_counts = _counts(train, space)
    return _Data(space, fill, train, val, user_counts, movie_counts)


class _Multiplicative:
    """The per-iteration step of :func:`fit_nmf` (its factors between iterations).

    Iteration t reports the errors of (P_t, Q_t); the user pass that measures them also
    computes P_{t+1} (one pass over the blocks), and iteration t + 1 starts with the movie
    pass Q_{t+1} from P_{t+1}.
    """

    def __init__(
        self, data: _Data, *, cfg: NmfConfig, bias: BiasModel, seed: int, offset: float,
        scale: float,
    ) -> None:
        self.data, self.cfg, self.offset, self.scale = data, cfg, offset, scale
        self.p, self.q = init_factors(
            data.space.n_users, data.space.n_movies, rank=cfg.rank,
            mean_target=(bias.global_mean - self.offset) / scale, seed=seed,
        )
        self.next_p: np.ndarray | None = None

    def step(self, it: Iteration) -> IterationResult:
        """Iteration ``it.number`` (0 = the initial factors)."""
        cfg, data, space = self.cfg, self.data, self.data.space
        if it.number > 0:
            self.q = _movie_pass(
                data.train, self.next_p, self.q, reg=cfg.reg, movie_counts=data.movie_counts,
                scale=self.scale,
            )
            self.p = self.next_p
        p, q = self.p, self.q
        self.next_p, train, sse = _user_pass(
            data.train, p, q, reg=cfg.reg, offset=self.offset, scale=self.scale, lo=space.lo,
            hi=space.hi, update=it.number < cfg.max_iter,
        )
        val = ErrorStats()
        if data.validation is not None:
            val = block_stats(data.validation, p * self.scale, q, lo=space.lo, hi=space.hi)
        penalty = float(data.user_counts @ np.einsum("ij,ij->i", p, p)) + float(
            data.movie_counts @ np.einsum("ij,ij->i", q, q)
        )
        return IterationResult(
            train_rmse=train.rmse,
            validation_rmse=val.rmse,
            objective=0.5 * sse + 0.5 * cfg.reg * penalty,
            state=(p, q),
        )


def fit_nmf_als(
    ratings: DataFrame,
    *,
    cfg: NmfConfig,
    bias: BiasModel,
    seed: int,
    lo: float = 0.5,
    hi: float = 5.0,
    name: str = "nmf_als",
) -> FactorModel:
    """NMF by MLlib's non-negative ALS on the (optionally [0, 1]-scaled) ratings.

    ``ratings``: user_id, movie_id, user_idx, movie_idx, rating. Returns a
    :class:`FactorModel` (zero biases, no history). Actions: MLlib's fit and the factor
    tables (cached).
    """
    check_scale(cfg, lo=lo)
    require_columns(ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage=f"{name} fit")
    offset, scale = _scale(cfg, lo, hi)
    als = ALS(
        rank=cfg.rank,
        maxIter=cfg.als_max_iter,
        regParam=cfg.als_reg,
        nonnegative=True,
        numUserBlocks=cfg.blocks,
        numItemBlocks=cfg.blocks,
        userCol=USER_IDX,
        itemCol=MOVIE_IDX,
        ratingCol=_TARGET,
        seed=seed,
    )
    with stage(f"{name}: MLlib non-negative ALS", ratings.sparkSession):
        fitted = als.fit(
            ratings.select(USER_IDX, MOVIE_IDX, ((F.col(RATING) - offset) / scale).alias(_TARGET))
        )
    with stage(f"{name}: factor tables", ratings.sparkSession):
        users = mllib_factor_table(ratings, fitted.userFactors, USER_ID, USER_IDX, scale)
        items = mllib_factor_table(ratings, fitted.itemFactors, MOVIE_ID, MOVIE_IDX)
    return FactorModel(
        name=name,
        global_mean=offset,
        rank=cfg.rank,
        user_factors=users,
        item_factors=items,
        fallback=bias,
        lo=lo,
        hi=hi,
        settings={**cfg.model_dump(), "solver": "als", "seed": seed},
    )


SPEC = ModelSpec(
    name="nmf",
    summary="NMF by Lee–Seung multiplicative updates on the observed ratings (or MLlib NNLS ALS)",
    fit=fit_nmf,
    abilities=frozenset(
        {Ability.PREDICT, Ability.TOP_N, Ability.FACTORS, Ability.SAVE, Ability.HISTORY}
    ),
    config=NmfConfig,
    load=FactorModel.load,
)

ALS_SPEC = ModelSpec(
    name="nmf_als",
    summary="NMF by MLlib's non-negative ALS",
    fit=fit_nmf_als,
    abilities=frozenset({Ability.PREDICT, Ability.TOP_N, Ability.FACTORS, Ability.SAVE}),
    config=NmfConfig,
    section="nmf",
    load=FactorModel.load,
)
