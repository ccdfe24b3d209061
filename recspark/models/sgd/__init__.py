"""Matrix factorisation by stochastic gradient descent: ``sgd_mf`` and ``svdpp``.

Models
    ``sgd_mf`` ("SVD on top of the baseline"; Funk SVD, Surprise's ``SVD``):

        r̂(u, i) = μ + b_u + b_i + p_u · q_i

    ``svdpp`` (Koren 2008, "Factorization meets the neighborhood"), with N(u) the movies
    u rated in training and y_j an implicit factor per movie:

        r̂(u, i) = μ + b_u + b_i + q_i · (p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j)

    μ is the training mean (fixed); the rest minimise, by SGD over the ratings in a seeded
    random order (learning rate γ_t = ``learning_rate`` · ``decay``^(t−1) in epoch t),

        Σ_{(u,i)} (r_ui − r̂_ui)² + λ_f (‖p_u‖² + ‖q_i‖²) + λ_b (b_u² + b_i²) [+ λ_y Σ ‖y_j‖²]

    (the regularisation counted once per rating, so an entity with n ratings is penalised
    n times: ALS's weighted λ). The updates are in :mod:`~recspark.models.sgd.kernel`.

Distribution
    Stratified SGD over d × d blocks (``blocks``; :mod:`~recspark.models.sgd.trainer`):
    ratings cut once, user factors never move, the movie side broadcast per sub-epoch.

Fitted form
    ``sgd_mf`` is a :class:`~recspark.models.factor.FactorModel` (predict, top-N, save,
    fold-in by one ALS half-step with the same weighted regularisation). ``svdpp`` is a
    :class:`~recspark.models.sgd.model.SvdppModel`: the same tables with each known user's
    effective factors p_u + |N(u)|^-½ Σ y_j, plus the y_j table for folding in new users.

History
    Per epoch: ``train_rmse`` (of the ratings as visited), ``validation_rmse`` (exact, after
    the epoch), ``learning_rate``, seconds. With ``patience`` the best epoch on validation
    is kept.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import Section
from recspark.log import stage
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec
from recspark.models.factor import FactorModel, factor_frame
from recspark.models.sgd.model import SvdppModel
from recspark.models.sgd.trainer import Trainer
from recspark.schema import BIAS, FACTORS, MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX, require_columns

__all__ = ["SgdMfConfig", "SvdppConfig", "SPEC", "SVDPP_SPEC", "fit_sgd_mf", "fit_svdpp"]


class SgdMfConfig(Section):
    """SGD matrix factorisation (module docstring). ``epochs`` is the most run; with
    ``patience`` p ≥ 1 the fit stops after p epochs without a better validation RMSE and
    keeps the best (0: off). ``blocks`` d: the d × d DSGD grid (the result depends on d, not on the
    machine)."""

    rank: int = Field(50, ge=1)
    epochs: int = Field(20, ge=1)
    learning_rate: float = Field(0.005, gt=0)
    decay: float = Field(1.0, gt=0, le=1)  # learning-rate factor per epoch
    reg_factors: float = Field(0.02, ge=0)
    reg_bias: float = Field(0.02, ge=0)
    init_std: float = Field(0.1, gt=0)
    blocks: int = Field(2, ge=1)
    patience: int = Field(0, ge=0)  # 0: run every epoch
    checkpoint_every: int = Field(5, ge=1)


class SvdppConfig(SgdMfConfig):
    """SVD++ by SGD: the ``sgd_mf`` settings plus ``reg_implicit`` (λ_y of the y_j, applied
    once per user visit rather than once per rating, so its useful values are large:
    30 on ml-latest-small, :mod:`recspark.models.sgd.kernel`)."""

    rank: int = Field(20, ge=1)
    reg_implicit: float = Field(10.0, ge=0)


_ABILITIES = frozenset(
    {Ability.PREDICT, Ability.TOP_N, Ability.FACTORS, Ability.SAVE, Ability.FOLD_IN, Ability.HISTORY}
)


def _fit(name: str, ratings: DataFrame, *, cfg: SgdMfConfig, seed: int, lo: float, hi: float,
         bias: BiasModel | None, validation: DataFrame | None, implicit: bool):
    """The shared fit: returns (FactorModel with effective user factors, y table or None)."""
    require_columns(ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage=f"{name} fit")
    spark = ratings.sparkSession
    trainer = Trainer(ratings, cfg=cfg, seed=seed, lo=lo, hi=hi, bias=bias,
                      validation=validation, implicit=implicit)
    try:
        with stage(f"{name}: partition ratings into blocks", spark):
            trainer.prepare()
        outcome = trainer.run(name)
        try:
            state, movies = outcome.state
            with stage(f"{name}: factor tables", spark):
                uidx, ubias, ufactors = trainer.user_rows(state, movies)
        finally:
            outcome.release()
    finally:
        trainer.release()
    m = trainer.trained_movies
    user_ids = ratings.select(
        F.col(USER_ID).cast("long").alias(USER_ID), F.col(USER_IDX).cast("int").alias(USER_IDX)
    ).distinct()
    movie_ids = ratings.select(
        F.col(MOVIE_ID).cast("long").alias(MOVIE_ID), F.col(MOVIE_IDX).cast("int").alias(MOVIE_IDX)
    ).distinct().cache()
    users = factor_frame(spark, USER_IDX, uidx, ubias, ufactors)
    items = factor_frame(spark, MOVIE_IDX, m, movies.bi[m], movies.q[m])
    # reg_* and weighted_reg let FactorModel.fold_in solve the same objective for new users
    settings = {**cfg.model_dump(), "seed": seed, "weighted_reg": True}
    model = FactorModel(
        name=name,
        global_mean=trainer.global_mean,
        rank=cfg.rank,
        user_factors=user_ids.join(users, USER_IDX).select(USER_ID, USER_IDX, BIAS, FACTORS).cache(),
        item_factors=movie_ids.join(items, MOVIE_IDX).select(MOVIE_ID, MOVIE_IDX, BIAS, FACTORS).cache(),
        fallback=bias,
        lo=lo,
        hi=hi,
        settings=settings,
        history=outcome.history,
    )
    implicit_table = None
    if implicit:
        y = factor_frame(spark, MOVIE_IDX, m, np.zeros(m.size), movies.y[m])
        implicit_table = movie_ids.join(y, MOVIE_IDX).select(MOVIE_ID, MOVIE_IDX, FACTORS).cache()
    return model, implicit_table


def fit_sgd_mf(
    ratings: DataFrame,
    *,
    cfg: SgdMfConfig,
    seed: int,
    lo: float = 0.5,
    hi: float = 5.0,
    bias: BiasModel | None = None,
    validation: DataFrame | None = None,
) -> FactorModel:
    """Fit ``sgd_mf`` on ``ratings`` (user_id, movie_id, user_idx, movie_idx, rating) by
    DSGD. ``bias``: the fallback for unknown users or movies (else the model's own
    μ + b_u + b_i); ``validation`` (same columns): per-epoch validation RMSE and early
    stopping. Returns a :class:`FactorModel` named ``sgd_mf`` with the epoch history.

    Raises DataQualityError for empty or non-finite ratings. Actions: the block build,
    d + 1 small jobs per epoch, the factor tables.
    """
    model, _ = _fit("sgd_mf", ratings, cfg=cfg, seed=seed, lo=lo, hi=hi, bias=bias,
                    validation=validation, implicit=False)
    return model


def fit_svdpp(
    ratings: DataFrame,
    *,
    cfg: SvdppConfig,
    seed: int,
    lo: float = 0.5,
    hi: float = 5.0,
    bias: BiasModel | None = None,
    validation: DataFrame | None = None,
) -> SvdppModel:
    """Fit ``svdpp`` like :func:`fit_sgd_mf` (same inputs, actions and errors); returns an
    :class:`SvdppModel` whose user factors are the effective p_u + |N(u)|^-½ Σ y_j."""
    model, implicit = _fit("svdpp", ratings, cfg=cfg, seed=seed, lo=lo, hi=hi, bias=bias,
                           validation=validation, implicit=True)
    return SvdppModel(model, implicit)


SPEC = ModelSpec(
    name="sgd_mf",
    summary="biased matrix factorisation by stratified SGD (Funk SVD)",
    fit=fit_sgd_mf,
    abilities=_ABILITIES,
    config=SgdMfConfig,
    load=FactorModel.load,
)

SVDPP_SPEC = ModelSpec(
    name="svdpp",
    summary="SVD++ (Koren 2008) by stratified SGD",
    fit=fit_svdpp,
    abilities=_ABILITIES,
    config=SvdppConfig,
    load=SvdppModel.load,
)
