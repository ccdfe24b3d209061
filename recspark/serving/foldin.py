"""Fold-in: factors and bias for users unseen in training, with the movie side fixed.

For a user u with ratings R(u) on movies of a trained biased factor model, fold-in solves
the same regularised least squares the ALS user half-step solves (see
:mod:`recspark.models.als`), with the movie factors q_i and biases b_i held fixed:

    min_{p_u, b_u}  Σ_{i ∈ R(u)} (r_ui − μ − b_i − b_u − p_u·q_i)² + s_u (λ_f ||p_u||² + λ_b b_u²)

s_u = |R(u)| + n₀ when the model was fitted with weighted regularisation, else 1; μ, λ_f, λ_b
and the weighting are the model's saved settings. The exact minimiser is
:func:`recspark.models.als.solve_rows` on the user's ratings, so folding in a user seen in
training from the same ratings reproduces the factors a final ALS user step would give.
Ratings of movies the model does not know are ignored (and do not count in s_u); a user
with no rating of a known movie gets no row (the bias fallback scores them). No
retraining: one half-step, for the given users only.

Implicit ALS models fold in the same way with their own half-step
(:func:`fold_in_implicit`: factors only, given YᵀY of every movie).

Distribution: the item table (movie id, factors, bias; 87,585 × 11 doubles at ml-32m) is
collected to the driver and broadcast; the ratings are hashed into ``blocks`` groups of
users, each solved in one Spark task (``applyInArrow``) with the vectorised kernel.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.arrow import arrow_task, list_array
from recspark.errors import ModelError
from recspark.models.als import (
    ColumnTiles,
    solve_implicit_rows,
    solve_rows,
    tile_columns,
    tile_width,
)
from recspark.models.factor import USER_FACTORS_SCHEMA
from recspark.schema import (
    BIAS,
    FACTORS,
    MOVIE_ID,
    RATING,
    USER_ID,
    USER_IDX,
    require_columns,
)

_logger = logging.getLogger(__name__)

#: ``user_idx`` of a folded-in user: it has no index in the model's training index.
FOLDED_USER_IDX = -1
_BLOCK = "_foldin_block"
_ARROW_SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.int64(), nullable=False),
        pa.field(USER_IDX, pa.int32(), nullable=False),
        pa.field(BIAS, pa.float64(), nullable=False),
        pa.field(FACTORS, pa.list_(pa.field("element", pa.float64())), nullable=False),
    ]
)


def foldin_settings(settings: Mapping[str, Any], *, model: str = "model") -> dict[str, Any]:
    """``reg_factors``, ``reg_bias``, ``weighted_reg`` (and ``reg_offset``, 0 when a model
    saved before it existed) from a model's saved settings.

    Raises :class:`ModelError` when they are absent (e.g. a model not fitted by recspark ALS).
    """
    missing = [k for k in ("reg_factors", "reg_bias", "weighted_reg") if k not in settings]
    if missing:
        raise ModelError(
            f"model {model!r} does not record {', '.join(missing)} in its settings, so new users "
            "cannot be folded in with its regularisation: use a recspark ALS model, or set "
            "rescore.foldin = false to score new users by the bias fallback"
        )
    return {
        "reg_factors": float(settings["reg_factors"]),
        "reg_bias": float(settings["reg_bias"]),
        "weighted": bool(settings["weighted_reg"]),
        "reg_offset": float(settings.get("reg_offset", 0.0)),
    }


@dataclass(frozen=True)
class ExplicitSolve:
    """The biased ALS user half-step (:func:`recspark.models.als.solve_rows`) as a picklable
    solver: ``solve(tiles, fixed)`` → (users, k + 1) [factors, bias]; ``fixed`` rows are
    [factors, bias] of the movies."""

    global_mean: float
    reg_factors: float
    reg_bias: float
    weighted: bool
    reg_offset: float = 0.0
    with_bias = True

    def __call__(self, tiles: ColumnTiles, fixed: np.ndarray) -> np.ndarray:
        x, _, _ = solve_rows(
            tiles, fixed, global_mean=self.global_mean, reg_factors=self.reg_factors,
            reg_bias=self.reg_bias, weighted=self.weighted, reg_offset=self.reg_offset,
        )
        return x


@dataclass(frozen=True)
class ImplicitSolve:
    """The implicit ALS user half-step (:func:`recspark.models.als.solve_implicit_rows`) as
    a picklable solver; ``gram`` is YᵀY over every movie of the model. ``solve(tiles,
    fixed)`` → (users, k) factors; ``fixed`` rows are the movies' factors."""

    gram: np.ndarray
    reg: float
    alpha: float
    kind: str
    weighted: bool
    reg_offset: float = 0.0
    with_bias = False

    def __call__(self, tiles: ColumnTiles, fixed: np.ndarray) -> np.ndarray:
        x, _, _ = solve_implicit_rows(
            tiles, fixed, gram=self.gram, reg=self.reg, alpha=self.alpha, kind=self.kind,
            weighted=self.weighted, reg_offset=self.reg_offset,
        )
        return x


def _solve_block(table: pa.Table, *, items: Broadcast) -> pa.Table:
    """applyInArrow body: fold in every user of one block with the broadcast
    (item ids, fixed rows, solver)."""
    item_ids, fixed, solve = items.value
    users = table.column(USER_ID).to_numpy().astype(np.int64)
    movies = table.column(MOVIE_ID).to_numpy().astype(np.int64)
    vals = table.column(RATING).to_numpy().astype(np.float64)
    pos = np.searchsorted(item_ids, movies)
    known = pos < item_ids.size
    known[known] = item_ids[pos[known]] == movies[known]
    users, pos, vals = users[known], pos[known], vals[known]
    order = np.lexsort((pos, users))
    users, pos, vals = users[order], pos[order], vals[order]
    ids, counts = np.unique(users, return_counts=True)
    indptr = np.zeros(ids.size + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    needed, cols = np.unique(pos, return_inverse=True)
    k = fixed.shape[1] - (1 if solve.with_bias else 0)
    if ids.size:
        tiles = tile_columns(
            indptr, cols.astype(np.int32), vals, n_cols=needed.size, width=tile_width(k)
        )
        x = solve(tiles, fixed[needed])
    else:
        x = np.zeros((0, fixed.shape[1]))
    bias = x[:, k] if solve.with_bias else np.zeros(ids.size)
    factors = list_array(np.ascontiguousarray(x[:, :k]))
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.int64()),
            pa.array(np.full(ids.size, FOLDED_USER_IDX, dtype=np.int32)),
            pa.array(bias, pa.float64()),
            factors.cast(_ARROW_SCHEMA.field(FACTORS).type),
        ],
        schema=_ARROW_SCHEMA,
    )


def fold_in(
    ratings: DataFrame,
    item_factors: DataFrame,
    *,
    global_mean: float,
    reg_factors: float,
    reg_bias: float,
    weighted: bool,
    reg_offset: float = 0.0,
    blocks: int | None = None,
) -> DataFrame:
    """Fold in every user of ``ratings`` against fixed ``item_factors`` (module docstring).

    ``ratings``: user_id, movie_id, rating (only the users to fold in);
    ``item_factors``: movie_id, bias, factors (a FactorModel's). Output
    (``USER_FACTORS_SCHEMA``): user_id, user_idx = -1 (:data:`FOLDED_USER_IDX`), bias,
    factors, one row per user with at least one rating of a known movie. ``blocks``: user
    groups (default ``spark.sql.shuffle.partitions``).

    Action: collects and broadcasts the item table; the result is lazy.
    """
    solver = ExplicitSolve(
        float(global_mean), float(reg_factors), float(reg_bias), bool(weighted), float(reg_offset)
    )
    return _fold_in(ratings, item_factors, lambda factors: solver, blocks=blocks)


def fold_in_implicit(
    ratings: DataFrame,
    item_factors: DataFrame,
    *,
    reg: float,
    alpha: float,
    kind: str = "rating",
    weighted: bool = False,
    reg_offset: float = 0.0,
    min_rating: float = 0.0,
    blocks: int | None = None,
) -> DataFrame:
    """Fold in every user of ``ratings`` into an implicit ALS model: one implicit user
    half-step (:func:`recspark.models.als.solve_implicit_rows`) against the fixed movie
    factors of ``item_factors`` (movie_id, factors; any ``bias`` is ignored), with YᵀY over
    all of them. Ratings below ``min_rating`` are not preferences (dropped, as in training).
    Output as :func:`fold_in`, bias 0. Action: collects and broadcasts the item table."""
    kept = ratings.where(F.col(RATING) >= F.lit(float(min_rating)))

    def solver(factors: np.ndarray) -> ImplicitSolve:
        return ImplicitSolve(
            factors.T @ factors, float(reg), float(alpha), kind, bool(weighted), float(reg_offset)
        )

    return _fold_in(kept, item_factors, solver, blocks=blocks)


def _fold_in(
    ratings: DataFrame,
    item_factors: DataFrame,
    make_solver: Callable[[np.ndarray], Any],
    *,
    blocks: int | None,
) -> DataFrame:
    """Collect the item table (sorted by id), build the solver from its (M, k) factors with
    ``make_solver``, broadcast both and solve the users of ``ratings`` in hashed blocks."""
    require_columns(ratings, [USER_ID, MOVIE_ID, RATING], stage="fold_in (ratings)")
    require_columns(item_factors, [MOVIE_ID, BIAS, FACTORS], stage="fold_in (item factors)")
    spark = ratings.sparkSession
    pdf = item_factors.select(MOVIE_ID, BIAS, FACTORS).orderBy(MOVIE_ID).toPandas()
    item_ids = pdf[MOVIE_ID].to_numpy(np.int64)
    if item_ids.size == 0:
        raise ModelError("fold_in: the model has no item factors; re-train it")
    factors = np.vstack(pdf[FACTORS].to_numpy()).astype(np.float64)
    solve = make_solver(factors)
    fixed = np.hstack([factors, pdf[BIAS].to_numpy(np.float64)[:, None]]) if solve.with_bias else factors
    items = spark.sparkContext.broadcast((item_ids, fixed, solve))
    n_blocks = blocks or int(spark.conf.get("spark.sql.shuffle.partitions"))
    task = arrow_task(functools.partial(_solve_block, items=items))
    grouped = ratings.select(
        F.col(USER_ID).cast("long").alias(USER_ID),
        F.col(MOVIE_ID).cast("long").alias(MOVIE_ID),
        F.col(RATING).cast("double").alias(RATING),
        F.pmod(F.xxhash64(USER_ID), F.lit(max(1, n_blocks))).alias(_BLOCK),
    ).groupBy(_BLOCK)
    return grouped.applyInArrow(task, USER_FACTORS_SCHEMA)


def fold_in_model_users(model: Any, ratings: DataFrame, *, blocks: int | None = None) -> DataFrame:
    """:func:`fold_in` with a :class:`~recspark.models.factor.FactorModel`'s μ, item factors
    and saved regularisation (:func:`foldin_settings`)."""
    s = foldin_settings(model.settings, model=model.name)
    return fold_in(
        ratings,
        model.item_factors,
        global_mean=model.global_mean,
        reg_factors=s["reg_factors"],
        reg_bias=s["reg_bias"],
        weighted=s["weighted"],
        reg_offset=s["reg_offset"],
        blocks=blocks,
    )
