"""ml-latest-small split the way the pipeline does it, for the SVD / NMF slow tests.

Until the ingest job's index tables are used here, dense indices come from dense_rank
over the ids (one small window on 100k rows) and the split is
:func:`recspark.split.random_split` with the pipeline's derived seeds.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.schema import MOVIE_ID, MOVIE_IDX, RATING, TIMESTAMP, USER_ID, USER_IDX
from recspark.seeds import derive_seed
from recspark.split import random_split

_CSV_SCHEMA = T.StructType(
    [
        T.StructField("userId", T.LongType(), False),
        T.StructField("movieId", T.LongType(), False),
        T.StructField("rating", T.DoubleType(), False),
        T.StructField("timestamp", T.LongType(), False),
    ]
)


def indexed_ratings(spark: SparkSession, sample_dir: Path) -> DataFrame:
    """user_id, movie_id, rating, timestamp, user_idx, movie_idx of ml-latest-small."""
    raw = spark.read.csv(str(sample_dir / "ratings.csv"), header=True, schema=_CSV_SCHEMA)
    r = raw.select(
        F.col("userId").alias(USER_ID),
        F.col("movieId").alias(MOVIE_ID),
        F.col("rating").alias(RATING),
        F.col("timestamp").alias(TIMESTAMP),
    )
    return r.withColumn(USER_IDX, F.dense_rank().over(Window.orderBy(USER_ID)) - 1).withColumn(
        MOVIE_IDX, F.dense_rank().over(Window.orderBy(MOVIE_ID)) - 1
    )


def train_test(spark: SparkSession, sample_dir: Path, *, seed: int = 42) -> tuple[DataFrame, DataFrame]:
    """The pipeline's random 80/20 split (seed derived from ``seed`` as ``split``), cached."""
    ratings = indexed_ratings(spark, sample_dir).cache()
    train, test = random_split(ratings, test_fraction=0.2, seed=derive_seed(seed, "split"))
    return train.cache(), test.cache()
