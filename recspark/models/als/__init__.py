"""Block-partitioned biased ALS: explicit-feedback matrix factorisation with biases.

Model
    r̂(u, i) = μ + b_u + b_i + p_u · q_i,   p_u, q_i ∈ R^k

μ is the training mean (fixed). The other parameters minimise

    J = Σ_{(u,i) ∈ R} (r_ui − μ − b_u − b_i − p_u·q_i)²
        + Σ_u s_u (λ_f ||p_u||² + λ_b b_u²) + Σ_i s_i (λ_f ||q_i||² + λ_b b_i²)

with s = n + n₀ (n the entity's number of ratings: MLlib's "ALS-WR" weighting, plus a
floor n₀ = ``als.reg_offset``) when ``als.weighted_reg`` is true, else s = 1;
λ_f = ``als.reg_factors``, λ_b = ``als.reg_bias``. The floor keeps a movie with one or two
ratings from fitting them exactly (see the README's "Top-N lists" figures).

Half-step
    With the movies fixed, write x_u = [p_u; b_u], ỹ_i = [q_i; 1] (d = k + 1) and
    t_ui = r_ui − μ − b_i. J restricted to user u is a ridge regression whose exact
    minimiser solves the d × d normal equations

        (G_u + s_u Λ) x_u = h_u,   G_u = Σ_{i ∈ R(u)} ỹ_i ỹ_iᵀ,   h_u = Σ_{i ∈ R(u)} t_ui ỹ_i,
        Λ = diag(λ_f, …, λ_f, λ_b).

    The movie half-step is the same with the roles swapped. Each half-step minimises J
    exactly over one side, so J never increases. Every iteration is a user step then a
    movie step; the first user step uses seeded random movie factors (std ``als.init_std``,
    a pure function of (seed, movie index), so the result does not depend on the blocking)
    and the movie biases of the given bias model (zeros without one).

Layout of the package
    :mod:`~recspark.models.als.kernel`  the NumPy half-step (:func:`solve_rows`) on
                                        column-tiled blocks; a public API, used by fold-in
    :mod:`~recspark.models.als.sides`   blocks and sides: building the user sides once,
                                        transposing them into movie sides, validation
                                        blocks, broadcast and routed solves
    :mod:`~recspark.models.als.trainer` the trainer: set-up, then the iterations through
                                        :class:`recspark.models.iterative.Loop`

Distribution (the design of MLlib's ALS, with NumPy blocks)
    The ratings are shuffled once into ``als.blocks`` user blocks (0, the default: twice the
    cores Spark reports when the fit starts, :func:`recspark.blocks.resolve_blocks`; the
    factors are the same bit for bit whatever the count) and transposed once into
    movie blocks, held as compact column tiles; each half-step moves only factors,
    broadcast or routed (``als.mode``; ``auto`` broadcasts a side when its factor table
    fits under ``als.broadcast_max_mb``). Both modes give the same factors. Lineage is cut
    every ``als.checkpoint_every`` iterations (reliable checkpoint when the SparkContext has
    a checkpoint directory, else localCheckpoint).

History
    Per iteration: training RMSE (of the model after the iteration), the objective J,
    validation RMSE when validation ratings are given, and wall seconds
    (:mod:`~recspark.models.als.trainer`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pyspark.sql import DataFrame

from recspark.config import Section
from recspark.models.als.kernel import (
    ColumnTiles,
    init_factors,
    solve_implicit_rows,
    solve_rows,
    tile_columns,
    tile_width,
    tiles_from_triples,
)
from recspark.models.als.trainer import Trainer
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec
from recspark.models.factor import FactorModel
from recspark.schema import MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX, require_columns

__all__ = [
    "MODES",
    "AlsConfig",
    "ColumnTiles",
    "SPEC",
    "fit_als",
    "init_factors",
    "solve_implicit_rows",
    "solve_rows",
    "tile_columns",
    "tile_width",
    "tiles_from_triples",
]

#: Accepted values of ``als.mode``.
MODES = ("auto", "broadcast", "routed")


class AlsConfig(Section):
    """recspark's block-partitioned biased ALS (module docstring). ``reg_factors`` must be
    positive: a user with fewer ratings than the rank would have a singular system.
    ``reg_offset``: n₀ of the weighting s = n + n₀ (used when ``weighted_reg``)."""

    rank: int = Field(10, ge=1)
    max_iter: int = Field(10, ge=1)
    reg_factors: float = Field(0.1, gt=0)
    reg_bias: float = Field(0.1, ge=0)
    weighted_reg: bool = True
    reg_offset: float = Field(0.0, ge=0)
    blocks: int = Field(0, ge=0)  # 0: twice the cores Spark reports (blocks.resolve_blocks)
    mode: Literal["auto", "broadcast", "routed"] = "auto"
    broadcast_max_mb: float = Field(256.0, ge=0)
    checkpoint_every: int = Field(5, ge=1)
    init_std: float = Field(0.1, gt=0)  # standard deviation of the seeded initial factors


def fit_als(
    ratings: DataFrame,
    *,
    cfg: AlsConfig,
    seed: int,
    lo: float = 0.5,
    hi: float = 5.0,
    bias: BiasModel | None = None,
    validation: DataFrame | None = None,
) -> FactorModel:
    """Fit biased ALS on ``ratings`` (user_id, movie_id, user_idx, movie_idx, rating).

    ``bias``: starts the movie biases and scores pairs the model cannot (unknown user or
    movie); without it the fallback is the model's own μ + b_u + b_i. ``validation``
    (same columns): its RMSE is tracked per iteration. ``seed``: the stage seed (the
    spec's adapter derives it from the root seed). Returns a :class:`FactorModel` named ``als``
    whose ``history`` holds the per-iteration figures.

    Actions: the block build, two small jobs per iteration, and materialising the
    (idx, bias, factors) tables; the id-keyed ``user_factors``/``item_factors`` join the
    id maps of ``ratings`` lazily (cached on first use).
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage="als fit")
    trainer = Trainer(ratings, cfg=cfg, seed=seed, lo=lo, hi=hi, bias=bias, validation=validation)
    users, items, history = trainer.fit()
    return FactorModel(
        name="als",
        global_mean=trainer.global_mean,
        rank=cfg.rank,
        user_factors=users,
        item_factors=items,
        fallback=bias,
        lo=lo,
        hi=hi,
        settings={**cfg.model_dump(), "seed": seed},
        history=history,
    )


SPEC = ModelSpec(
    name="als",
    summary="recspark's block-partitioned biased ALS",
    fit=fit_als,
    abilities=frozenset(
        {
            Ability.PREDICT,
            Ability.TOP_N,
            Ability.FACTORS,
            Ability.SAVE,
            Ability.FOLD_IN,
            Ability.HISTORY,
        }
    ),
    config=AlsConfig,
    load=FactorModel.load,
)
