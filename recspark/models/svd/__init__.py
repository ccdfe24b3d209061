"""Truncated and iterative SVD of the mean-filled rating matrix, as residuals.

Fill and residuals
    Every missing rating is filled with f(u, i): the bias model's baseline μ + b_u + b_i
    (``svd.fill = "baseline"``) or the user's mean rating (``"user_mean"``, the fill of
    Sarwar et al. 2000). Subtracting the fill gives the residual matrix X (m users × n
    movies) with X_ui = r_ui − f(u, i) on observed entries and exactly 0 elsewhere, so X is
    as sparse as the ratings and is never densified.
Variants
    ``svd`` (:mod:`recspark.models.svd.truncated`): one truncated SVD of X by MLlib's
    ``RowMatrix.computeSVD``. ``iterative_svd`` (:mod:`recspark.models.svd.iterative`):
    SVD imputation (soft-impute), repeated rank-k SVDs of X with its missing entries filled
    by the previous estimate, by randomised subspace iteration. Both store the factors
    symmetrically, p_u = U_u Σ^½ and q_i = V_i Σ^½, so p_u·q_i is the low-rank term and a
    :class:`~recspark.models.factor.FactorModel` predicts (bias = the fill's per-user and
    per-movie parts). This package holds what they share: the config section, the fill
    (:func:`fill_offsets`), the cached residual blocks (:func:`prepare`), the fitted model
    (:class:`SvdModel`, :func:`svd_model`, :func:`truncate`), and the rank sweep and
    history tables of the train run.

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
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from pyspark import RDD
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Section
from recspark.errors import ConfigError
from recspark.models.bias import BiasModel
from recspark.models.factor import FactorModel
from recspark.models.lowrank import (
    IndexSpace,
    Offsets,
    entry_blocks,
    factor_tables,
    index_space,
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
    RATING,
    USER_ID,
    USER_IDX,
    VALUE,
    require_columns,
)

__all__ = [
    "FILLS",
    "SvdConfig",
    "SvdModel",
    "fill_offsets",
    "history_rows",
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


# --------------------------------------------------------------------------- fill


def fill_offsets(ratings: DataFrame, *, space: IndexSpace, fill: str) -> Offsets:
    """The fill f(u, i) named by ``svd.fill``: the bias model's baseline or user means."""
    if fill == "baseline":
        return space.fallback
    if fill == "user_mean":
        return user_mean_offsets(ratings, space)
    raise ConfigError(f"svd.fill must be one of {', '.join(FILLS)}, got {fill!r}")


# --------------------------------------------------------------------------- shared fit steps


@dataclass(frozen=True)
class Prepared:
    """What both fits start from: the index space, the fill and the cached residual blocks."""

    space: IndexSpace
    fill: Offsets
    blocks: RDD  # (block id, EntryBlock) of the training ratings, persisted


def prepare(
    ratings: DataFrame, *, cfg: SvdConfig, bias: BiasModel, lo: float, hi: float,
    validation: DataFrame | None, name: str,
) -> Prepared:
    """The index space of ``ratings`` (and ``validation``), the fill named by ``svd.fill``
    and the training residuals r − f in cached user blocks (:func:`recspark.models.lowrank.entry_blocks`).

    ``ratings``: user_id, movie_id, user_idx, movie_idx, rating. Actions: the index space's
    small collects and one shuffle into blocks; the caller unpersists ``blocks``.
    """
    require_columns(
        ratings, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage=f"{name} fit"
    )
    space = index_space(ratings, bias=bias, lo=lo, hi=hi, validation=validation)
    fill = fill_offsets(ratings, space=space, fill=cfg.fill)
    blocks = entry_blocks(
        ratings, space=space, fill=fill, n_blocks=cfg.blocks, name=f"{name}[train]"
    )
    return Prepared(space, fill, blocks)


def _split_factors(u: np.ndarray, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p = U Σ^½, q = V Σ^½, so that p_u·q_i = (U Σ Vᵀ)_ui."""
    root = np.sqrt(np.maximum(s, 0.0))
    return u * root, v * root


def svd_model(
    spark: SparkSession,
    ratings: DataFrame,
    prep: Prepared,
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
    """The fitted :class:`SvdModel` of rank ``rank`` from U (m × r), σ (r) and V (n × r)
    on the driver: factor tables with p = U Σ^½, q = V Σ^½ and the fill's biases; all r
    components are kept in ``sweep_model`` when r > ``rank``. Actions: materialises the
    factor tables (cached)."""
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
