"""The planted parameters of a synthetic data set (``_truth/``), so tests and benchmarks can
measure what a model recovers: users and movies Parquet tables, scalars and segment
centres in ``params.json``, the resolved config in ``config.toml``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.config import Config, GenerateConfig, to_toml
from recspark.io.storage import write_text
from recspark.schema import BIAS, FACTORS, MOVIE_ID, N_RATINGS, POPULARITY, SEGMENT, USER_ID
from recspark.synthetic.plan import FIRST_TIMESTAMP, HALF_STARS_FROM, LAST_TIMESTAMP, SyntheticPlan

#: Planted user parameters: user_id, n_ratings, bias, factors, segment (null when off).
TRUTH_USERS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(N_RATINGS, T.LongType(), False),
        T.StructField(BIAS, T.DoubleType(), False),
        T.StructField(FACTORS, T.ArrayType(T.DoubleType(), False), False),
        T.StructField(SEGMENT, T.IntegerType(), True),
    ]
)
#: Planted movie parameters: movie_id, popularity (w_i), bias, factors.
TRUTH_MOVIES_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(POPULARITY, T.DoubleType(), False),
        T.StructField(BIAS, T.DoubleType(), False),
        T.StructField(FACTORS, T.ArrayType(T.DoubleType(), False), False),
    ]
)


def _factors_array(values: np.ndarray) -> pa.Array:
    """A (rows, k) array as an Arrow list array of k doubles per row."""
    rows, k = values.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * k)
    return pa.ListArray.from_arrays(offsets, pa.array(values.ravel()))


def truth_tables(plan: SyntheticPlan) -> tuple[pa.Table, pa.Table]:
    """The planted (users, movies) parameter tables, columns as in TRUTH_*_SCHEMA."""
    seg = plan.user_segment
    users = pa.table(
        {
            USER_ID: pa.array(np.arange(1, plan.users + 1, dtype=np.int64)),
            N_RATINGS: pa.array(plan.user_counts),
            BIAS: pa.array(plan.user_bias),
            FACTORS: _factors_array(plan.user_factors),
            SEGMENT: pa.array(seg.astype(np.int32), mask=seg < 0),
        },
        schema=to_arrow_schema(TRUTH_USERS_SCHEMA),
    )
    movies = pa.table(
        {
            MOVIE_ID: pa.array(plan.movie_ids),
            POPULARITY: pa.array(plan.movie_probs),
            BIAS: pa.array(plan.movie_bias),
            FACTORS: _factors_array(plan.movie_factors),
        },
        schema=to_arrow_schema(TRUTH_MOVIES_SCHEMA),
    )
    return users, movies


def truth_params(plan: SyntheticPlan, cfg: GenerateConfig, *, seed: int) -> dict:
    """Scalar planted parameters and segment centres (``_truth/params.json``)."""
    return {
        "seed": seed,
        "users": plan.users,
        "movies": plan.movies,
        "ratings": plan.ratings,
        "tags_planned": int(plan.tag_counts.sum()),
        "global_mean": plan.global_mean,
        "noise": plan.noise,
        "rank": cfg.rank,
        "factor_scale": plan.factor_scale,
        "segments": cfg.segments,
        "segment_centres": plan.centres.tolist(),
        "first_timestamp": FIRST_TIMESTAMP,
        "last_timestamp": LAST_TIMESTAMP,
        "half_stars_from": HALF_STARS_FROM,
    }


def write_truth(spark: SparkSession, plan: SyntheticPlan, cfg: Config, folder: str) -> None:
    """Write ``<folder>/users``, ``<folder>/movies`` (Parquet), ``params.json`` and
    ``config.toml`` (the whole resolved ``cfg``). Actions: one Spark job per table."""
    users, movies = truth_tables(plan)
    spark.createDataFrame(users).write.parquet(f"{folder}/users")
    spark.createDataFrame(movies).write.parquet(f"{folder}/movies")
    params = json.dumps(truth_params(plan, cfg.generate, seed=cfg.seed), indent=1)
    write_text(spark, f"{folder}/params.json", params + "\n")
    write_text(spark, f"{folder}/config.toml", to_toml(cfg))
