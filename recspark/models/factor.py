"""Biased latent-factor models: the fitted form shared by ALS (and reusable by SVD and NMF).

    r̂(u, i) = clip(μ + b_u + b_i + p_u · q_i, rating_min, rating_max)

A :class:`FactorModel` holds two small tables, one row per user / movie seen in training:

- ``user_factors``: user_id, user_idx, bias (b_u), factors (p_u, array<double> of length rank)
- ``item_factors``: movie_id, movie_idx, bias (b_i), factors (q_i)

and the global mean μ. Scoring is plain Spark SQL (two joins and a dot product with the
native ``zip_with``/``aggregate`` higher-order functions, no Python UDF). A pair whose user
or movie is not in the tables gets the fallback: the bias model's μ' + b'_u + b'_i when one
was given, else this model's own μ + b_u + b_i with unknown biases counted as 0.

A model saves to a folder (published atomically) and loads back with
:meth:`FactorModel.load`, which raises :class:`~recspark.errors.ModelError` when the folder
is missing, incomplete or of another format. Models without biases (NMF) store 0.
"""

from __future__ import annotations

import json
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

from recspark.errors import ModelError
from recspark.io import storage
from recspark.models.base import with_fallback
from recspark.models.bias import BIAS_PREDICTION, BiasModel
from recspark.schema import (
    BIAS,
    FACTORS,
    ITERATION,
    MOVIE_ID,
    MOVIE_IDX,
    PERSONALISED,
    PREDICTION,
    TRAIN_RMSE,
    USER_ID,
    USER_IDX,
    VALIDATION_RMSE,
    require_columns,
)

_logger = logging.getLogger(__name__)

#: The ``format`` written into ``model.json``; :meth:`FactorModel.load` accepts only this.
MODEL_FORMAT = "recspark-factor-model"
#: Bumped whenever the saved layout changes incompatibly.
MODEL_VERSION = 1

_META = "model.json"
_USERS = "user_factors"
_ITEMS = "item_factors"
_FALLBACK_USERS = "fallback_user_bias"
_FALLBACK_ITEMS = "fallback_item_bias"

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
    spark: SparkSession, idx_col: str, idx: np.ndarray, bias: np.ndarray, factors: np.ndarray
) -> DataFrame:
    """(idx_col, bias, factors) rows from driver arrays, through Arrow in one piece
    (no per-row Python objects; 200k × 10 factors take well under a second)."""
    n, k = factors.shape
    arrow = pa.table(
        {
            idx_col: pa.array(np.asarray(idx, dtype=np.int32)),
            BIAS: pa.array(np.asarray(bias, dtype=np.float64)),
            FACTORS: pa.ListArray.from_arrays(
                pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)),
                pa.array(np.ascontiguousarray(factors, dtype=np.float64).ravel()),
            ),
        }
    )
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


def dot(a: Column | str, b: Column | str) -> Column:
    """Σ_k a[k]·b[k] of two array<double> columns, in native Spark SQL (null if either is)."""
    return F.aggregate(F.zip_with(a, b, lambda x, y: x * y), F.lit(0.0), lambda acc, v: acc + v)


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
        joined = pairs.join(users, USER_ID, "left").join(items, MOVIE_ID, "left")
        raw = F.lit(self.global_mean) + F.col(_UB) + F.col(_IB) + dot(_UF, _IF)
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
            "name": self.name,
            "global_mean": self.global_mean,
            "rank": self.rank,
            "lo": self.lo,
            "hi": self.hi,
            "settings": dict(self.settings),
            "history": None if self.history is None else _history_records(self.history),
            "fallback": None,
        }
        with storage.staged(spark, path) as tmp:
            _typed(self.user_factors, USER_FACTORS_SCHEMA).write.parquet(f"{tmp}/{_USERS}")
            _typed(self.item_factors, ITEM_FACTORS_SCHEMA).write.parquet(f"{tmp}/{_ITEMS}")
            if self.fallback is not None:
                fb = self.fallback
                _typed(fb.user_bias, _BIAS_SCHEMA_USERS).write.parquet(f"{tmp}/{_FALLBACK_USERS}")
                _typed(fb.item_bias, _BIAS_SCHEMA_ITEMS).write.parquet(f"{tmp}/{_FALLBACK_ITEMS}")
                meta["fallback"] = {
                    "name": fb.name,
                    "global_mean": fb.global_mean,
                    "lo": fb.lo,
                    "hi": fb.hi,
                }
            storage.write_text(spark, f"{tmp}/{_META}", json.dumps(meta, indent=2, default=str))
        _logger.info("saved %s model to %s", self.name, path)

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "FactorModel":
        """Read a model written by :meth:`save`.

        Raises :class:`ModelError` if ``path`` does not exist, lacks a table or
        ``model.json`` (an interrupted or foreign folder), or holds another format, version
        or schema. No Spark job runs; the tables are read lazily.
        """
        if not storage.exists(spark, path):
            raise ModelError(
                f"no saved model at {path}: check the path, or train and save a model there first"
            )
        meta_path = f"{path.rstrip('/')}/{_META}"
        if not storage.exists(spark, meta_path):
            raise ModelError(
                f"{path} is not a complete saved model ({_META} is missing): "
                "save the model again"
            )
        try:
            meta = json.loads(storage.read_text(spark, meta_path))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{meta_path} is not valid JSON ({exc}): save the model again") from exc
        except Exception as exc:  # the Hadoop FS failed (e.g. checksum): say which file
            raise ModelError(
                f"could not read {meta_path} ({type(exc).__name__}): save the model again"
            ) from exc
        if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
            raise ModelError(
                f"{path} is not a recspark factor model (format "
                f"{meta.get('format') if isinstance(meta, dict) else None!r}, expected "
                f"{MODEL_FORMAT!r}): point at a folder written by FactorModel.save"
            )
        if meta.get("version") != MODEL_VERSION:
            raise ModelError(
                f"{path} was saved in layout version {meta.get('version')!r}; this recspark "
                f"reads version {MODEL_VERSION}: re-train and save the model with this version"
            )
        missing = [k for k in ("name", "global_mean", "rank", "lo", "hi") if k not in meta]
        if missing:
            raise ModelError(f"{meta_path} lacks {', '.join(missing)}: save the model again")
        rank = int(meta["rank"])
        users = _read_table(spark, path, _USERS, USER_FACTORS_SCHEMA)
        items = _read_table(spark, path, _ITEMS, ITEM_FACTORS_SCHEMA)
        fallback = None
        if meta.get("fallback"):
            fb = meta["fallback"]
            fallback = BiasModel(
                float(fb["global_mean"]),
                _read_table(spark, path, _FALLBACK_USERS, _BIAS_SCHEMA_USERS),
                _read_table(spark, path, _FALLBACK_ITEMS, _BIAS_SCHEMA_ITEMS),
                lo=float(fb["lo"]),
                hi=float(fb["hi"]),
                name=str(fb["name"]),
            )
        history = meta.get("history")
        return cls(
            name=str(meta["name"]),
            global_mean=float(meta["global_mean"]),
            rank=rank,
            user_factors=users,
            item_factors=items,
            fallback=fallback,
            lo=float(meta["lo"]),
            hi=float(meta["hi"]),
            settings=dict(meta.get("settings") or {}),
            history=None if history is None else _history_frame(history),
        )

    def write_extras(self, spark: SparkSession, out_dir: str) -> None:
        """Pipeline hook: the convergence history and its plot (see :func:`write_history`)."""
        write_history(spark, self, out_dir)


_BIAS_SCHEMA_USERS = T.StructType(
    [T.StructField(USER_ID, T.LongType(), False), T.StructField(BIAS, T.DoubleType(), False)]
)
_BIAS_SCHEMA_ITEMS = T.StructType(
    [T.StructField(MOVIE_ID, T.LongType(), False), T.StructField(BIAS, T.DoubleType(), False)]
)


def _typed(df: DataFrame, schema: T.StructType) -> DataFrame:
    """``df``'s columns of ``schema``, in its order and cast to its types."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def _read_table(spark: SparkSession, path: str, name: str, schema: T.StructType) -> DataFrame:
    """A saved Parquet table, checked for completeness (``_SUCCESS``) and column types."""
    where = f"{path.rstrip('/')}/{name}"
    if not storage.exists(spark, f"{where}/_SUCCESS"):
        raise ModelError(
            f"{path} is not a complete saved model ({name}/ is missing or was not fully "
            "written): save the model again"
        )
    df = spark.read.parquet(where)
    have = {f.name: f.dataType for f in df.schema.fields}
    wrong = [
        f"{f.name} ({have.get(f.name, 'missing')}, expected {f.dataType.simpleString()})"
        for f in schema.fields
        if have.get(f.name) is None
        or have[f.name].simpleString() != f.dataType.simpleString()
    ]
    if wrong:
        raise ModelError(
            f"{where} has an incompatible schema: {'; '.join(wrong)}; save the model again "
            "with this recspark version"
        )
    return df.select(*schema.names)


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


def write_history(spark: SparkSession, model: FactorModel, out_dir: str) -> None:
    """Write ``model.history`` into ``out_dir``: ``<name>_history/`` (Parquet, one file) and
    ``<name>_convergence.png`` (training and, when present, validation RMSE per iteration).

    Does nothing (with a log line) when the model has no history. Action: one small write.
    """
    history = model.history
    if history is None or history.empty:
        _logger.info("%s has no convergence history to write", model.name)
        return
    base = out_dir.rstrip("/")
    spark.createDataFrame(history).coalesce(1).write.mode("overwrite").parquet(
        f"{base}/{model.name}_history"
    )
    from recspark.plots import line_chart  # matplotlib: only the driver that plots pays for it

    ys = [TRAIN_RMSE]
    if VALIDATION_RMSE in history and history[VALIDATION_RMSE].notna().any():
        ys.append(VALIDATION_RMSE)
    line_chart(
        spark,
        history,
        x=ITERATION,
        ys=ys,
        path=f"{base}/{model.name}_convergence.png",
        title=f"{model.name}: RMSE per iteration (rank {model.rank})",
        xlabel="iteration",
        ylabel="RMSE",
    )
    _logger.info("wrote %s convergence history to %s", model.name, base)
