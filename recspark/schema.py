"""Column names and Spark schemas: the one place they are spelled out.

Every module refers to columns through these constants, so renaming one is a
one-line change and a typo is an ``AttributeError`` rather than a silent null column.
"""

from __future__ import annotations

from typing import Iterable

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from recspark.errors import DataFrameMissingColumnError

# ---- ids and ratings
USER_ID = "user_id"
MOVIE_ID = "movie_id"
RATING = "rating"
TIMESTAMP = "timestamp"
USER_IDX = "user_idx"  # dense 0-based index of a user, from the ingest index table
MOVIE_IDX = "movie_idx"  # dense 0-based index of a movie
USER_BLOCK = "user_block"  # partition column of the ingested ratings: user_idx % user_blocks

# ---- movies, tags, links
TITLE = "title"
GENRES = "genres"
TAG = "tag"
IMDB_ID = "imdb_id"
TMDB_ID = "tmdb_id"

# ---- quarantine
RAW_LINE = "raw_line"
SOURCE_FILE = "source_file"
LINE_NUMBER = "line_number"
REASON = "reason"

# ---- predictions and metrics
PREDICTION = "prediction"
PERSONALISED = "personalised"  # true when the model itself (not the bias fallback) scored the row
MODEL = "model"
RUN_ID = "run_id"
SPLIT = "split"
METRIC = "metric"
VALUE = "value"

# ---- model parameters
BIAS = "bias"
FACTORS = "factors"
GLOBAL_MEAN = "global_mean"

RATINGS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(RATING, T.DoubleType(), False),
        T.StructField(TIMESTAMP, T.LongType(), False),
    ]
)

INDEXED_RATINGS_SCHEMA = T.StructType(
    RATINGS_SCHEMA.fields
    + [
        T.StructField(USER_IDX, T.IntegerType(), False),
        T.StructField(MOVIE_IDX, T.IntegerType(), False),
    ]
)

MOVIES_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(TITLE, T.StringType(), True),
        T.StructField(GENRES, T.StringType(), True),
    ]
)

TAGS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(TAG, T.StringType(), True),
        T.StructField(TIMESTAMP, T.LongType(), False),
    ]
)

LINKS_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(IMDB_ID, T.StringType(), True),
        T.StructField(TMDB_ID, T.LongType(), True),
    ]
)

USER_INDEX_SCHEMA = T.StructType(
    [T.StructField(USER_ID, T.LongType(), False), T.StructField(USER_IDX, T.IntegerType(), False)]
)

MOVIE_INDEX_SCHEMA = T.StructType(
    [T.StructField(MOVIE_ID, T.LongType(), False), T.StructField(MOVIE_IDX, T.IntegerType(), False)]
)

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField(SOURCE_FILE, T.StringType(), False),
        T.StructField(LINE_NUMBER, T.LongType(), False),
        T.StructField(RAW_LINE, T.StringType(), True),
        T.StructField(REASON, T.StringType(), False),
    ]
)

PREDICTIONS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(RATING, T.DoubleType(), True),
        T.StructField(PREDICTION, T.DoubleType(), False),
        T.StructField(PERSONALISED, T.BooleanType(), False),
        T.StructField(MODEL, T.StringType(), False),
    ]
)

METRICS_SCHEMA = T.StructType(
    [
        T.StructField(RUN_ID, T.StringType(), False),
        T.StructField(MODEL, T.StringType(), False),
        T.StructField(SPLIT, T.StringType(), False),
        T.StructField(METRIC, T.StringType(), False),
        T.StructField(VALUE, T.DoubleType(), True),
    ]
)


def require_columns(df: DataFrame, columns: Iterable[str], *, stage: str) -> None:
    """Raise :class:`DataFrameMissingColumnError` if ``df`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFrameMissingColumnError(
            f"{stage} needs column(s) {', '.join(missing)}; the DataFrame has "
            f"{', '.join(df.columns) or 'no columns'}"
        )
