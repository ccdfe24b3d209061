"""Biased latent-factor models: the fitted form shared by ALS (and reusable by SVD and NMF).

    r̂(u, i) = clip(μ + b_u + b_i + p_u · q_i, rating_min, rating_max)

A :class:`FactorModel` holds two small tables, one row per user / movie seen in training:

- ``user_factors``: user_id, user_idx, bias (b_u), factors (p_u, array<double> of length rank)
- ``item_factors``: movie_id, movie_idx, bias (b_i), factors (q_i)

and the global mean μ. Scoring is plain Spark SQL (two joins and a dot product written out
as arithmetic that Spark compiles, no Python UDF). A pair whose user or movie is not in the
tables gets the fallback: the bias model's μ' + b'_u + b'_i when one was given, else this
model's own μ + b_u + b_i with unknown biases counted as 0.

A model saves to a folder (published atomically) and loads back with
:meth:`FactorModel.load`, which raises :class:`~recspark.errors.ModelError` when the folder
is missing, incomplete or of another format. Models without biases (NMF) store 0.

For top-N lists, :class:`FactorScorer` scores a block of users against every movie,

    s(u, i) = μ + b_u + b_i + p_u · q_i        (raw, unclipped; μ = b = 0 without biases)

with one matrix product per chunk of users (:func:`factor_ranking_inputs`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.arrow import list_array, list_values
from recspark.errors import ModelError
from recspark.io import runs, storage
from recspark.models.base import broadcast_if_small, with_fallback
from recspark.models.bias import BiasModel
from recspark.models.contract import RankingInputs, UserBlock
from recspark.schema import (
    BIAS,
    BIAS_PREDICTION,
    FACTORS,
    FEATURES,
    GLOBAL_MEAN,
    MLLIB_ID,
    MOVIE_ID,
    MOVIE_IDX,
    PERSONALISED,
    PREDICTION,
    USER_ID,
    USER_IDX,
    require_columns,
)
from recspark.session import sql_settings

_logger = logging.getLogger(__name__)

#: The ``format`` written into ``model.json``; :meth:`FactorModel.load` accepts only this.
MODEL_FORMAT = "recspark-factor-model"
#: Bumped whenever the saved layout changes incompatibly.
MODEL_VERSION = 1

_USERS = "user_factors"
_ITEMS = "item_factors"
#: Folder names of the fallback bias model's tables in a saved model.
FALLBACK_TABLES = ("fallback_user_bias", "fallback_item_bias")

_RAW = "_factor_raw"
_UB, _UF, _IB, _IF = "_fm_user_bias", "_fm_user_factors", "_fm_item_bias", "_fm_item_factors"

USER_FACTORS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(USER_IDX, T.IntegerType(), False),
        T.StructField(BIAS, T.DoubleType(), False),
        T.StructField(FACTORS, T.ArrayType(T.DoubleType()), False),
    ]
)
ITEM_FACTORS_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(MOVIE_IDX, T.IntegerType(), False),
        T.StructField(BIAS, T.DoubleType(), False),
        T.StructField(FACTORS, T.ArrayType(T.DoubleType()), False),
    ]
)


def factor_frame(
    spark: SparkSession,
    idx_col: str,
    idx: np.ndarray,
    bias: np.ndarray,
    factors: np.ndarray,
    *,
    in_tasks: bool = False,
) -> DataFrame:
    """(idx_col, bias, factors) rows from driver arrays, through Arrow in one piece
    (no per-row Python objects; 200k × 10 factors take well under a second).

    ``idx`` [n] int, ``bias`` [n] float, ``factors`` (n, k) float. By default Spark decides
    where the Arrow batches become rows: below ``spark.sql.execution.arrow.
    localRelationThreshold`` (48 MB) on the driver, one row at a time, as a local relation
    the planner can size (and broadcast in a join), which every task reading it receives
    inside the task. ``in_tasks`` (for a table cached at once, its size then known) sends
    the batches, one per core, to be decoded in parallel: at the ml-32m shape, creating and
    caching ALS's two tables (200,948 and 87,580 rows × 10 factors) took 1.3–1.5 s the
    default way, 0.75–0.86 s as batches of 10,000 rows decoded in the tasks and 0.55–0.64 s
    with one batch per core (two cores, one process)."""
    n, k = factors.shape
    arrow = pa.table(
        {
            idx_col: pa.array(np.asarray(idx, dtype=np.int32)),
            BIAS: pa.array(np.asarray(bias, dtype=np.float64)),
            FACTORS: list_array(np.asarray(factors, dtype=np.float64).reshape(n, k)),
        }
    )
    settings: dict[str, str] = {}
    if in_tasks:
        slots = max(1, spark.sparkContext.defaultParallelism)
        settings = {
            "spark.sql.execution.arrow.localRelationThreshold": "0",
            "spark.sql.execution.arrow.maxRecordsPerBatch": str(max(1, -(-n // slots))),
        }
    with sql_settings(spark, settings):
        return spark.createDataFrame(arrow, factor_schema(idx_col))


def factor_schema(idx_col: str) -> T.StructType:
    """Schema of an (idx, bias, factors) table."""
    return T.StructType(
        [
            T.StructField(idx_col, T.IntegerType(), False),
            T.StructField(BIAS, T.DoubleType(), False),
            T.StructField(FACTORS, T.ArrayType(T.DoubleType(), False), False),
        ]
    )


#: Longest dot product written out term by term: the generated code of a longer chain (250
#: terms here) fails to compile, and Spark logs the failure before it falls back.
DOT_UNROLLED_MAX = 128


def dot(a: Column | str, b: Column | str, rank: int) -> Column:
    """Σ_k a[k]·b[k] over k < ``rank`` of two array<double> columns (null if either is null
    or shorter than ``rank``; elements past ``rank`` are left out).

    Up to DOT_UNROLLED_MAX it is written out as ((0 + a[0]·b[0]) + a[1]·b[1]) + …, plain
    arithmetic that Spark compiles (whole-stage code generation), where the higher-order
    functions ``zip_with``/``aggregate`` used above that rank are interpreted per row: at
    the ml-32m shape, predicting 32M ratings with a rank-10 model took 12.2–13.1 s this way
    against 22.9–24.6 s. Both forms add the same terms in the same order (equal bits).
    """
    if rank > DOT_UNROLLED_MAX:
        products = F.zip_with(F.slice(a, 1, rank), F.slice(b, 1, rank), lambda x, y: x * y)
        return F.aggregate(products, F.lit(0.0), lambda acc, v: acc + v)
    total = F.lit(0.0)
    for k in range(rank):
        total = total + F.get(a, k) * F.get(b, k)
    return total


def mllib_factor_table(
    ratings: DataFrame, factors: DataFrame, id_col: str, idx_col: str, mult: float = 1.0
) -> DataFrame:
    """(id, idx, bias = 0, factors · ``mult``) from an MLlib ALS factor table (id = the
    dense idx, features), for the ids of ``ratings``; cached and materialised."""
    values = F.transform(F.col(FEATURES).cast("array<double>"), lambda x: x * mult)
    df = (
        ratings.select(id_col, idx_col)
        .distinct()
        .join(factors.select(F.col(MLLIB_ID).alias(idx_col), values.alias(FACTORS)), idx_col)
        .select(id_col, idx_col, F.lit(0.0).alias(BIAS), FACTORS)
        .cache()
    )
    df.count()
    return df


@dataclass(frozen=True)
class FactorScorer:
    """The :class:`~recspark.models.contract.BlockScorer` of a factor model: the (M,) sorted
    ``item_ids`` with their biases (M,) and factors (M × k), and μ.

    ``scores(block, rows)`` reads ``factors`` (and ``bias``, 0 when absent) of the block's
    user rows ``rows`` and returns μ + b_u + b_i + p_u·q_i, (rows × M), as one matrix
    product of the augmented rows [p_u, 1, μ + b_u] and [q_i, b_i, 1]: the biases ride in
    the product instead of two more passes over the (rows × M) result, and the items'
    side is laid out once, contiguous (k + 2) × M. Raises ModelError when a user's factors
    do not have the items' length k (a corrupt model).
    """

    item_ids: np.ndarray
    item_bias: np.ndarray
    item_factors: np.ndarray
    global_mean: float = 0.0
    shared_scores: np.ndarray | None = None

    def scores(self, block: UserBlock, rows: slice) -> np.ndarray:
        part = block.columns.slice(rows.start, rows.stop - rows.start)
        c, k = part.num_rows, self.item_factors.shape[1]
        offsets, flat = list_values(part.column(FACTORS))
        if not np.array_equal(np.diff(offsets), np.full(c, k)):
            raise ModelError(
                f"user factors do not all have the item factors' length {k}: the model is "
                "corrupt; re-train it"
            )
        users = np.empty((c, k + 2))
        users[:, :k] = flat.reshape(c, k)
        users[:, k] = 1.0
        users[:, k + 1] = self.global_mean
        if BIAS in part.column_names:
            users[:, k + 1] += part.column(BIAS).to_numpy()
        return users @ self._items_augmented

    @functools.cached_property
    def _items_augmented(self) -> np.ndarray:
        """[q_i, b_i, 1] as a contiguous (k + 2) × M array (built once per process)."""
        m, k = self.item_factors.shape
        out = np.empty((k + 2, m))
        out[:k] = self.item_factors.T
        out[k] = self.item_bias
        out[k + 1] = 1.0
        return out


def factor_ranking_inputs(
    user_factors: DataFrame, item_factors: DataFrame, *, global_mean: float = 0.0
) -> RankingInputs:
    """Ranking inputs of any factor tables: ``user_factors`` (user_id, factors[, bias]) and
    ``item_factors`` (movie_id, factors[, bias]); a missing ``bias`` counts as 0 (then pass
    ``global_mean`` 0 too). The users table is user_id, bias, factors; the item table is
    collected to the driver, sorted by movie id, into a :class:`FactorScorer`.

    Raises ModelError when the item factors have mixed lengths. Action: one collect.
    """
    require_columns(user_factors, [USER_ID, FACTORS], stage="ranking inputs (user factors)")
    require_columns(item_factors, [MOVIE_ID, FACTORS], stage="ranking inputs (item factors)")

    def bias(df: DataFrame) -> Column:
        return (F.col(BIAS).cast("double") if BIAS in df.columns else F.lit(0.0)).alias(BIAS)

    as_doubles = F.col(FACTORS).cast("array<double>").alias(FACTORS)
    pdf = item_factors.select(MOVIE_ID, bias(item_factors), as_doubles).orderBy(MOVIE_ID).toPandas()
    ids = pdf[MOVIE_ID].to_numpy(np.int64)
    lengths = {len(v) for v in pdf[FACTORS]}
    if len(lengths) > 1:
        raise ModelError(
            f"item factors have mixed lengths {sorted(lengths)}: the model is corrupt; re-train it"
        )
    k = lengths.pop() if lengths else 0
    factors = (
        np.vstack(pdf[FACTORS].to_numpy()).astype(np.float64).reshape(ids.size, k)
        if ids.size
        else np.zeros((0, k))
    )
    users = user_factors.select(
        F.col(USER_ID).cast("long").alias(USER_ID), bias(user_factors), as_doubles
    )
    scorer = FactorScorer(ids, pdf[BIAS].to_numpy(np.float64), factors, float(global_mean))
    return RankingInputs(users=users, scorer=scorer)


@dataclass(frozen=True)
class FactorModel:
    """A fitted biased factor model (see the module docstring).

    ``settings`` records how it was fitted (e.g. the AlsConfig fields); ``history`` is the
    per-iteration convergence table of iterative fits (columns ``iteration``,
    ``train_rmse``, ``validation_rmse``, ...), or None.
    """

    name: str
    global_mean: float
    rank: int
    user_factors: DataFrame
    item_factors: DataFrame
    fallback: BiasModel | None = None
    lo: float = 0.5
    hi: float = 5.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    history: pd.DataFrame | None = None

    # ------------------------------------------------------------------ scoring

    def raw_score(self, pairs: DataFrame) -> DataFrame:
        """``pairs`` plus ``_factor_raw`` = μ + b_u + b_i + p_u·q_i (unclipped; null when the
        user or movie is unknown) and the joined temporary columns. For callers that rank
        (top-N) rather than predict; :meth:`predict` is the finished form."""
        users = self.user_factors.select(
            F.col(USER_ID), F.col(BIAS).alias(_UB), F.col(FACTORS).alias(_UF)
        )
        items = self.item_factors.select(
            F.col(MOVIE_ID), F.col(BIAS).alias(_IB), F.col(FACTORS).alias(_IF)
        )
        joined = pairs.join(broadcast_if_small(users), USER_ID, "left").join(
            broadcast_if_small(items), MOVIE_ID, "left"
        )
        raw = F.lit(self.global_mean) + F.col(_UB) + F.col(_IB) + dot(_UF, _IF, self.rank)
        return joined.withColumn(_RAW, raw)

    def predict(self, pairs: DataFrame) -> DataFrame:
        """Every row of ``pairs`` (user_id, movie_id, any other columns) plus ``prediction``
        (clipped to [lo, hi]) and ``personalised`` (false where the fallback scored it)."""
        require_columns(pairs, [USER_ID, MOVIE_ID], stage=f"{self.name} prediction")
        columns = [c for c in pairs.columns if c not in (PREDICTION, PERSONALISED)]
        scored = pairs.select(*columns)
        if self.fallback is not None:
            scored = self.fallback.annotate(scored)
            fallback = F.col(BIAS_PREDICTION)
        else:
            fallback = (
                F.lit(self.global_mean)
                + F.coalesce(F.col(_UB), F.lit(0.0))
                + F.coalesce(F.col(_IB), F.lit(0.0))
            )
        scored = self.raw_score(scored)
        return with_fallback(scored, _RAW, fallback, lo=self.lo, hi=self.hi).select(
            *columns, PREDICTION, PERSONALISED
        )

    def ranking_inputs(self) -> RankingInputs:
        """``TOP_N``: raw scores μ + b_u + b_i + p_u·q_i for every user in ``user_factors``
        against every movie in ``item_factors`` (:func:`factor_ranking_inputs`). Action:
        collects the item table."""
        return factor_ranking_inputs(
            self.user_factors, self.item_factors, global_mean=self.global_mean
        )

    def fold_in(self, ratings: DataFrame) -> "FactorModel":
        """``FOLD_IN``: this model, also scoring the users of ``ratings`` (user_id, movie_id,
        rating) that are not in ``user_factors``: each gets the factors and bias of one ALS
        user half-step against the fixed movie side, with the model's saved regularisation
        (:mod:`recspark.serving.foldin`). Users who rated no known movie stay unknown (the
        fallback scores them). The folded-in rows are cached, so later jobs reuse them.

        Raises :class:`ModelError` when the settings lack the regularisation (only recspark
        ALS records it). Actions: collects the item table; the fold-in itself is lazy.
        """
        new = ratings.join(self.user_factors.select(USER_ID), USER_ID, "left_anti")
        folded = self.fold_in_rows(new).cache()
        users = runs.to_schema(self.user_factors, USER_FACTORS_SCHEMA).unionByName(folded)
        return dataclasses.replace(self, user_factors=users)

    def fold_in_rows(self, ratings: DataFrame) -> DataFrame:
        """``USER_FACTORS_SCHEMA`` rows of the users of ``ratings`` by one ALS user
        half-step with the saved settings (:func:`recspark.serving.foldin.fold_in_model_users`);
        a model with another half-step (implicit ALS) overrides it."""
        # serving builds on the models (its solve is the ALS kernel, which imports this
        # module), so it is imported when a model is folded in, not at import time
        from recspark.serving.foldin import fold_in_model_users

        return fold_in_model_users(self, ratings)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str) -> None:
        """Write the model to the folder ``path`` (replaced atomically if it exists).

        Layout: ``user_factors/`` and ``item_factors/`` Parquet (schemas above), the
        fallback's ``fallback_user_bias/`` and ``fallback_item_bias/`` Parquet when there is
        one, and ``model.json`` (format, version, name, μ, rank, rating scale, settings,
        history, fallback μ). Action: writes the tables.
        """
        spark = self.user_factors.sparkSession
        meta: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            runs.NAME_KEY: self.name,
            GLOBAL_MEAN: self.global_mean,
            "rank": self.rank,
            "lo": self.lo,
            "hi": self.hi,
            "settings": dict(self.settings),
            "history": None if self.history is None else _history_records(self.history),
            "fallback": None,
        }
        with storage.staged(spark, path) as tmp:
            runs.write_model_table(self.user_factors, USER_FACTORS_SCHEMA, f"{tmp}/{_USERS}")
            runs.write_model_table(self.item_factors, ITEM_FACTORS_SCHEMA, f"{tmp}/{_ITEMS}")
            if self.fallback is not None:
                self.fallback.write_tables(tmp, FALLBACK_TABLES)
                meta["fallback"] = self.fallback.meta()
            runs.write_model_meta(spark, tmp, meta)
        _logger.info("saved %s model to %s", self.name, path)

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "FactorModel":
        """Read a model written by :meth:`save`.

        Raises :class:`ModelError` if ``path`` does not exist, lacks a table or
        ``model.json`` (an interrupted or foreign folder), or holds another format, version
        or schema. No Spark job runs; the tables are read lazily.
        """
        meta = runs.read_model_meta(spark, path)
        if meta.get("format") != MODEL_FORMAT:
            raise ModelError(
                f"{path} is not a recspark factor model (format {meta.get('format')!r}, "
                f"expected {MODEL_FORMAT!r}): point at a folder written by FactorModel.save"
            )
        if meta.get("version") != MODEL_VERSION:
            raise ModelError(
                f"{path} was saved in layout version {meta.get('version')!r}; this recspark "
                f"reads version {MODEL_VERSION}: re-train and save the model with this version"
            )
        missing = [k for k in (GLOBAL_MEAN, "rank", "lo", "hi") if k not in meta]
        if missing:
            raise ModelError(
                f"{path}/{runs.MODEL_META} lacks {', '.join(missing)}: save the model again"
            )
        rank = int(meta["rank"])
        users = runs.read_model_table(spark, path, _USERS, USER_FACTORS_SCHEMA)
        items = runs.read_model_table(spark, path, _ITEMS, ITEM_FACTORS_SCHEMA)
        fallback = None
        if meta.get("fallback"):
            fallback = BiasModel.read_tables(spark, path, meta["fallback"], FALLBACK_TABLES)
        history = meta.get("history")
        return cls(
            name=str(meta[runs.NAME_KEY]),
            global_mean=float(meta[GLOBAL_MEAN]),
            rank=rank,
            user_factors=users,
            item_factors=items,
            fallback=fallback,
            lo=float(meta["lo"]),
            hi=float(meta["hi"]),
            settings=dict(meta.get("settings") or {}),
            history=None if history is None else _history_frame(history),
        )


def _history_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The inverse of :func:`_history_records` (null → NaN in numeric columns)."""
    frame = pd.DataFrame(records)
    for column in frame.columns:
        if frame[column].dtype == object:
            try:
                frame[column] = pd.to_numeric(frame[column])
            except (TypeError, ValueError):
                pass
    return frame


def _history_records(history: pd.DataFrame) -> list[dict[str, Any]]:
    """History rows as JSON-safe dicts (NaN → null)."""
    out = []
    for row in history.to_dict(orient="records"):
        out.append(
            {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in row.items()
            }
        )
    return out
