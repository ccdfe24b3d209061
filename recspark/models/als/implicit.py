"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) on recspark's block ALS.

Model
    A rating r_ui ≥ ``min_rating`` is an implicit preference p_ui = 1 held with confidence

        c_ui = 1 + α r_ui      (``confidence = "rating"``)   or   1 + α   (``"binary"``);

    every other (user, movie) cell of the training users × training movies has p = 0 and
    c = 1. The factors minimise, over ALL cells,

        J = Σ_{u,i} c_ui (p_ui − x_u · y_i)² + λ (Σ_u s_u ||x_u||² + Σ_i s_i ||y_i||²)

    with s = n + n₀ (n the entity's preferences, n₀ = ``reg_offset``) when ``weighted_reg``
    (MLlib's weighting), else s = 1. No biases, no global mean: the score of (u, i) is
    x_u · y_i, a preference strength for ranking, not a rating, so the model ranks (top-N)
    but does not predict ratings.

Half-step (the YᵀY trick)
    With the movies fixed, user u's minimiser solves

        (YᵀY + Σ_{i ∈ R(u)} (c_ui − 1) y_i y_iᵀ + λ s_u I) x_u = Σ_{i ∈ R(u)} c_ui y_i,

    where YᵀY (k × k, over every training movie) is computed once per half-step: on the
    driver from the broadcast factor table when the fixed side is broadcast, else by a tree
    aggregate of the per-block partial sums Y_bᵀ Y_b of the routed factor blocks. Only
    rated cells are touched after that, in the same column-tiled blocks, broadcast and
    routed modes, and batched solves as explicit ALS
    (:func:`recspark.models.als.kernel.solve_implicit_rows`, :class:`ImplicitTrainer`).
    Each half-step minimises J exactly over one side, so J never increases; the history
    records J per iteration (``objective``; no RMSE: the scores are not ratings).

Fold-in
    A user unseen in training gets one implicit user half-step against the fixed movie
    factors (:func:`recspark.serving.foldin.fold_in_implicit`), with the model's saved α, λ
    and weighting.

``mllib_als_implicit`` (:mod:`recspark.models.mllib_als`) is MLlib's ALS with
``implicitPrefs=True`` on the same section's rank, λ, α and iterations: the baseline.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import Section
from recspark.errors import ModelError
from recspark.models.als.kernel import solve_implicit_rows
from recspark.models.als.sides import Side, Solved, Stats
from recspark.models.als.trainer import SideState, Trainer
from recspark.models.contract import Ability, ModelSpec
from recspark.models.factor import FactorModel
from recspark.models.iterative import Iteration, IterationResult, LoopResult
from recspark.schema import MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX, require_columns

_logger = logging.getLogger(__name__)

NAME = "als_implicit"


class AlsImplicitConfig(Section):
    """Implicit ALS (module docstring) and its MLlib baseline ``mllib_als_implicit``.

    ``rank``, ``max_iter``, ``reg`` (λ), ``alpha`` (α) are shared with the baseline;
    ``confidence``: ``rating`` (c = 1 + α r) or ``binary`` (c = 1 + α); ``min_rating``:
    ratings below it are not preferences (dropped before fitting); ``weighted_reg`` /
    ``reg_offset``: s = n + n₀ or 1. ``blocks``, ``mode``, ``broadcast_max_mb``,
    ``checkpoint_every``, ``init_std``: as for explicit ALS (:class:`~recspark.models.als.AlsConfig`).
    """

    rank: int = Field(10, ge=1)
    max_iter: int = Field(10, ge=1)
    reg: float = Field(0.1, gt=0)
    alpha: float = Field(1.0, ge=0)
    confidence: Literal["rating", "binary"] = "rating"
    min_rating: float = Field(0.0, ge=0)
    weighted_reg: bool = True
    reg_offset: float = Field(0.0, ge=0)
    blocks: int = Field(0, ge=0)  # 0: twice the cores Spark reports
    mode: Literal["auto", "broadcast", "routed"] = "auto"
    broadcast_max_mb: float = Field(256.0, ge=0)
    checkpoint_every: int = Field(5, ge=1)
    init_std: float = Field(0.1, gt=0)


@dataclass(frozen=True)
class ImplicitParams:
    """What an implicit half-step task needs: λ, α, the confidence kind, the weighting and
    ``gram`` = YᵀY of the fixed side (set per half-step with :meth:`with_gram`)."""

    reg: float
    alpha: float
    kind: str
    weighted: bool
    reg_offset: float
    gram: np.ndarray | None = None

    def with_gram(self, gram: np.ndarray) -> "ImplicitParams":
        return dataclasses.replace(self, gram=gram)

    def solve(self, side: Side, fixed: np.ndarray) -> Solved:
        """One block's implicit half-step; its Stats carry the loss (``sse``) and penalty."""
        x, loss, penalty = solve_implicit_rows(
            side.tiles, fixed, gram=self.gram, reg=self.reg, alpha=self.alpha, kind=self.kind,
            weighted=self.weighted, reg_offset=self.reg_offset,
        )
        return Solved(side.block, side.ids, x, Stats(loss, side.tiles.nnz, penalty))


class ImplicitTrainer(Trainer):
    """The block ALS trainer with rows of factors only (d = rank) and implicit half-steps.

    Sides, routes, broadcast or routed factor movement, checkpoints and the loop are the
    explicit trainer's; each half-step first computes YᵀY of the fixed side
    (:meth:`gram`)."""

    name = NAME

    def __init__(self, ratings: DataFrame, *, cfg: AlsImplicitConfig, seed: int) -> None:
        super().__init__(ratings, cfg=cfg, seed=seed, lo=0.0, hi=1.0, bias=None, validation=None)
        self.d = cfg.rank

    def half_step_params(self) -> ImplicitParams:
        cfg = self.cfg
        return ImplicitParams(
            float(cfg.reg), float(cfg.alpha), cfg.confidence, cfg.weighted_reg, float(cfg.reg_offset)
        )

    def initial_items(self) -> SideState:
        """Seeded random movie factors; in broadcast mode the trained movie ids are
        collected once so that YᵀY covers exactly the training movies."""
        state = super().initial_items()
        if state.table is not None:
            ids = self.items.map(lambda kv: kv[1].ids).collect()
            state.trained = np.sort(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
        return state

    def gram(self, state: SideState) -> np.ndarray:
        """YᵀY of a side's trained rows (k × k): on the driver from its table, or a tree
        aggregate of the blocks' partial sums Y_bᵀ Y_b."""
        if state.table is not None:
            rows = state.table[state.trained]
            return rows.T @ rows
        k = self.d
        return state.rdd.map(lambda kv: kv[1].rows.T @ kv[1].rows).treeAggregate(
            np.zeros((k, k)), np.add, np.add, depth=2
        )

    def run(self) -> LoopResult:
        """``max_iter`` iterations of a user then a movie implicit half-step; history:
        the objective J after the movie step (train RMSE NaN)."""
        start = self.initial_items()
        movies = start

        def step(it: Iteration) -> IterationResult:
            nonlocal movies
            users, ustats = self.half_step(
                self.users, movies, self.routes_to_users, to_driver=self.bc_users,
                n_total=self.n_users, it=it, name=f"{self.name} users {it.number}",
                params=self.params.with_gram(self.gram(movies)),
            )
            movies, istats = self.half_step(
                self.items, users, self.routes_to_items, to_driver=self.bc_items,
                n_total=self.n_items, it=it, name=f"{self.name} movies {it.number}",
                params=self.params.with_gram(self.gram(users)),
            )
            if it.number == 1:
                start.release()
            return IterationResult(
                train_rmse=math.nan,
                objective=istats.sse + ustats.reg + istats.reg,
                state=(users, movies),
            )

        return self.loop().run(step, max_iter=self.cfg.max_iter)


@dataclass(frozen=True)
class ImplicitFactorModel(FactorModel):
    """A fitted implicit ALS model: a :class:`FactorModel` with μ = 0 and zero biases
    (scores x_u · y_i, for ranking), whose fold-in is the implicit half-step. It does not
    predict ratings."""

    def predict(self, pairs: DataFrame) -> DataFrame:
        raise ModelError(
            f"{self.name} scores preferences, not ratings: it cannot predict ratings; use it "
            "for top-N lists (rescore.mode = all or incremental)"
        )

    def fold_in_rows(self, ratings: DataFrame) -> DataFrame:
        """Factors of the users of ``ratings`` by one implicit half-step
        (:func:`recspark.serving.foldin.fold_in_implicit`) with the saved settings."""
        from recspark.serving.foldin import fold_in_implicit

        s = self.settings
        try:
            return fold_in_implicit(
                ratings, self.item_factors, reg=float(s["reg"]), alpha=float(s["alpha"]),
                kind=str(s["confidence"]), weighted=bool(s["weighted_reg"]),
                reg_offset=float(s["reg_offset"]), min_rating=float(s["min_rating"]),
            )
        except KeyError as exc:
            raise ModelError(
                f"model {self.name!r} does not record {exc} in its settings: re-train it"
            ) from None


def fit_als_implicit(ratings: DataFrame, *, cfg: AlsImplicitConfig, seed: int) -> ImplicitFactorModel:
    """Fit implicit ALS on ``ratings`` (user_id, movie_id, user_idx, movie_idx, rating).

    Ratings below ``cfg.min_rating`` are dropped first. ``seed``: the stage seed (the
    spec's adapter derives it from the root seed). Returns an :class:`ImplicitFactorModel`
    named ``als_implicit`` (biases 0, μ 0) whose ``history`` holds J per iteration.
    Actions: as :func:`recspark.models.als.fit_als`, plus one small job per half-step for
    YᵀY of a routed side.
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage=f"{NAME} fit")
    kept = ratings.where(F.col(RATING) >= F.lit(float(cfg.min_rating)))
    trainer = ImplicitTrainer(kept, cfg=cfg, seed=seed)
    users, items, history = trainer.fit()
    return ImplicitFactorModel(
        name=NAME,
        global_mean=0.0,
        rank=cfg.rank,
        user_factors=users,
        item_factors=items,
        settings={**cfg.model_dump(), "seed": seed},
        history=history,
    )


SPEC = ModelSpec(
    name=NAME,
    summary="implicit-feedback ALS (Hu, Koren & Volinsky 2008) on recspark's block ALS",
    fit=fit_als_implicit,
    abilities=frozenset(
        {Ability.TOP_N, Ability.FACTORS, Ability.SAVE, Ability.FOLD_IN, Ability.HISTORY}
    ),
    config=AlsImplicitConfig,
    load=ImplicitFactorModel.load,
)

__all__ = ["SPEC", "AlsImplicitConfig", "ImplicitFactorModel", "ImplicitTrainer", "fit_als_implicit"]
