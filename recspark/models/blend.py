"""Blend: a linear stack (ridge regression) of other models' rating predictions.

The way the Netflix Prize teams combined their models (Töscher, Jahrer & Bell 2009, "The
BigChaos solution", linear blending): the members are fitted on a *fit* part of the
training ratings, predict a held-out *validation* part carved from the training ratings
(``blend.validation_fraction``, seeded; never the test set), and the weights w minimise

    Σ_(u,i ∈ validation) (r_ui − w_0 − Σ_j w_j p_j(u, i))² + λ Σ_{j ≥ 1} w_j²

(λ = ``blend.reg``; the intercept w_0 is not penalised), solved from the normal equations
(XᵀX + λ·diag(0, 1, …, 1)) w = Xᵀy with X = [1, p_1 … p_m]. XᵀX and Xᵀy are one Spark
aggregation; only the (m+1)² sums reach the driver. With ``blend.refit`` the members are
then refitted on the whole training part (the weights are kept), which costs a second fit
of each member and uses 100% of the ratings for the final models; a member the run has
already fitted on the same training part (listed before ``blend`` in ``train.models``) is
reused instead, and named in :attr:`BlendModel.reused`.

Prediction: r̂ = clip(w_0 + Σ_j w_j p_j) where at least one member scored the pair
personally; elsewhere the bias fallback (every member falls back to the same bias model,
so the first member's prediction is that fallback).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, model_validator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import Section
from recspark.errors import ConfigError
from recspark.models.base import with_fallback
from recspark.models.bias import BiasModel, fit_bias
from recspark.models.contract import Ability, ModelSpec, require
from recspark.schema import MOVIE_ID, PERSONALISED, PREDICTION, RATING, USER_ID, require_columns
from recspark.split import random_split

_logger = logging.getLogger(__name__)

NAME = "blend"
_RAW = "_blend_raw"


class BlendConfig(Section):
    """Linear blend of ``members`` (registered models that predict ratings): ridge ``reg``
    on their weights, fitted on ``validation_fraction`` of the training ratings; ``refit``
    the members on all training ratings afterwards."""

    members: tuple[str, ...] = ("bias", "als", "svd", "iterative_svd")
    reg: float = Field(1.0, ge=0)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    refit: bool = True

    @model_validator(mode="after")
    def _members(self) -> "BlendConfig":
        if not self.members:
            raise ValueError("blend.members must name at least one model")
        if NAME in self.members:
            raise ValueError("blend.members cannot include the blend itself")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"blend.members lists a model twice: {', '.join(self.members)}")
        return self


def _column(j: int) -> str:
    return f"_blend_p{j}"


def _flag(j: int) -> str:
    return f"_blend_s{j}"


def member_predictions(members: list[Any], pairs: DataFrame) -> DataFrame:
    """``pairs`` plus, per member j, its prediction ``_blend_p<j>`` and personalised flag
    ``_blend_s<j>``: each member predicts the previous member's output (a model keeps every
    column and row it is given), so no row id or join is needed."""
    scored = pairs
    for j, member in enumerate(members):
        scored = (
            member.predict(scored)
            .withColumnRenamed(PREDICTION, _column(j))
            .withColumnRenamed(PERSONALISED, _flag(j))
        )
    return scored


def normal_equations(scored: DataFrame, m: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(XᵀX, Xᵀy, yᵀy) of X = [1, _blend_p0 … _blend_p<m-1>] and y = ``rating`` over the rows
    of ``scored``: an (m+1) × (m+1) and an (m+1,) array and a number. Action: one
    aggregation."""
    require_columns(scored, [RATING] + [_column(j) for j in range(m)], stage="blend weights")
    x = [F.lit(1.0)] + [F.col(_column(j)) for j in range(m)]
    sums = [F.sum(x[a] * x[b]) for a in range(m + 1) for b in range(a, m + 1)]
    sums += [F.sum(x[a] * F.col(RATING)) for a in range(m + 1)]
    sums.append(F.sum(F.col(RATING) * F.col(RATING)))
    row = scored.agg(*sums).first()
    values = [float(v) if v is not None else 0.0 for v in row]
    gram = np.zeros((m + 1, m + 1))
    n_gram = (m + 1) * (m + 2) // 2
    gram[np.triu_indices(m + 1)] = values[:n_gram]
    gram = gram + np.triu(gram, 1).T
    return gram, np.asarray(values[n_gram:n_gram + m + 1]), values[-1]


def holdout_rmse(gram: np.ndarray, xty: np.ndarray, yty: float, w: np.ndarray) -> float:
    """RMSE on the rows behind the normal equations of the (unclipped) predictor X·w:
    sqrt((yᵀy − 2 wᵀXᵀy + wᵀXᵀXw) / n), n = XᵀX[0, 0]."""
    sse = yty - 2.0 * float(w @ xty) + float(w @ gram @ w)
    return float(np.sqrt(max(sse, 0.0) / gram[0, 0])) if gram[0, 0] else float("nan")


def ridge_weights(gram: np.ndarray, xty: np.ndarray, reg: float) -> np.ndarray:
    """w = (XᵀX + reg·diag(0, 1, …, 1))⁻¹ Xᵀy: ridge with an unpenalised intercept w[0].
    Raises ConfigError when the system is singular (e.g. reg = 0 and two identical members)."""
    penalty = np.full(gram.shape[0], float(reg))
    penalty[0] = 0.0
    try:
        return np.linalg.solve(gram + np.diag(penalty), xty)
    except np.linalg.LinAlgError as exc:
        raise ConfigError(
            f"blend: the normal equations are singular ({exc}); raise blend.reg above 0"
        ) from exc


@dataclass(frozen=True)
class BlendModel:
    """Fitted blend: the fitted ``members`` (in ``names`` order), ``weights`` [w_0, w_1 …];
    ``reused``: the members taken from the run's own fits rather than refitted (their fit
    time belongs to the blend's too)."""

    members: tuple[Any, ...]
    names: tuple[str, ...]
    weights: np.ndarray
    lo: float = 0.5
    hi: float = 5.0
    name: str = NAME
    reused: tuple[str, ...] = ()

    def predict(self, pairs: DataFrame) -> DataFrame:
        """``pairs`` plus the blended ``prediction`` (clipped) and ``personalised`` (some
        member scored the pair itself); no row dropped (module docstring)."""
        require_columns(pairs, [USER_ID, MOVIE_ID], stage="blend prediction")
        m = len(self.members)
        scored = member_predictions(list(self.members), pairs)
        blended = F.lit(float(self.weights[0]))
        for j in range(m):
            blended = blended + F.lit(float(self.weights[j + 1])) * F.col(_column(j))
        anyone = F.greatest(*[F.col(_flag(j)) for j in range(m)]) if m > 1 else F.col(_flag(0))
        scored = scored.withColumn(_RAW, F.when(anyone, blended))
        out = with_fallback(scored, _RAW, F.col(_column(0)), lo=self.lo, hi=self.hi)
        return out.drop(*[c for j in range(m) for c in (_column(j), _flag(j))])


def fit_blend(
    train: DataFrame, *, cfg: BlendConfig, seed: int, lo: float, hi: float, bias: BiasModel,
    root_cfg: Any, fitted: Mapping[str, Any] | None = None,
) -> BlendModel:
    """Fit the blend on ``train`` (user_id, movie_id, rating, ...; module docstring): the
    members through the registry with ``root_cfg``'s sections; with ``refit``, members in
    ``fitted`` (already fitted on ``train`` with ``root_cfg``) are reused. Raises ConfigError
    for a member that is not registered or cannot predict ratings. Actions: every member's
    fit (twice with ``refit``, less the reused), one aggregation for the weights."""
    from recspark.models import registry  # the registry imports this module

    for name in cfg.members:
        require(registry.spec(name), Ability.PREDICT, setting="blend.members",
                choices=[n for n in registry.with_ability(Ability.PREDICT) if n != NAME])
    fit_part, holdout = random_split(train, test_fraction=cfg.validation_fraction, seed=seed)
    fit_part, holdout = fit_part.cache(), holdout.cache()
    part_bias = fit_bias(fit_part, cfg=root_cfg.bias, lo=lo, hi=hi)
    members = [registry.fit(n, fit_part, cfg=root_cfg, bias=part_bias) for n in cfg.members]
    scored = member_predictions(members, holdout.select(USER_ID, MOVIE_ID, RATING))
    gram, xty, yty = normal_equations(scored, len(members))
    weights = ridge_weights(gram, xty, cfg.reg)
    alone = np.eye(len(members) + 1)[1:]  # member j's own predictions
    _logger.info(
        "blend weights: intercept %.4f, %s; validation RMSE %.4f (members: %s)", weights[0],
        ", ".join(f"{n} {w:.4f}" for n, w in zip(cfg.members, weights[1:])),
        holdout_rmse(gram, xty, yty, weights),
        ", ".join(f"{n} {holdout_rmse(gram, xty, yty, e):.4f}" for n, e in zip(cfg.members, alone)),
    )
    fitted = fitted or {}
    reused = tuple(n for n in cfg.members if cfg.refit and n in fitted)
    if cfg.refit:
        members = [fitted[n] if n in reused else registry.fit(n, train, cfg=root_cfg, bias=bias)
                   for n in cfg.members]
    fit_part.unpersist()
    holdout.unpersist()
    return BlendModel(tuple(members), tuple(cfg.members), weights, lo=lo, hi=hi, reused=reused)


SPEC = ModelSpec(
    name=NAME,
    summary="ridge blend of other models' predictions, fitted on a validation part of train",
    fit=fit_blend,
    abilities=frozenset({Ability.PREDICT}),
    config=BlendConfig,
)
