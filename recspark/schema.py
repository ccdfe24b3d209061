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


# ---- synthetic generator (recspark.synthetic): MovieLens CSV headers and planted ground truth
ML_RATINGS_HEADER = ("userId", "movieId", "rating", "timestamp")
ML_MOVIES_HEADER = ("movieId", "title", "genres")
ML_TAGS_HEADER = ("userId", "movieId", "tag", "timestamp")
ML_LINKS_HEADER = ("movieId", "imdbId", "tmdbId")
SEGMENT = "segment"  # planted user segment, 0..K-1 (null when generate.segments = 0)
N_RATINGS = "n_ratings"  # number of ratings a synthetic user was given
POPULARITY = "popularity"  # a synthetic movie's probability in the popularity distribution

# ---------------------------------------------------------------------------
# Ingest block (recspark.io.validate, recspark.io.ingested, recspark.index, recspark.stats,
# recspark.pipeline.ingest). Added by the ingest module; additive only.
# ---------------------------------------------------------------------------
COPIES = "copies"  # input rows a deduplicated (user, movie) rating stood for (>= 1)
# N_RATINGS (above) also names a histogram bin's or a user's / movie's count of ratings.
RANK = "rank"  # 1-based rank in a rank-frequency curve (1 = most ratings)

#: Indexed ratings as written by the ingest job (partitioned by ``user_block``).
INGESTED_RATINGS_SCHEMA = T.StructType(
    INDEXED_RATINGS_SCHEMA.fields + [T.StructField(USER_BLOCK, T.IntegerType(), False)]
)

#: Ingest statistics, one (metric, value) row per figure.
SUMMARY_SCHEMA = T.StructType(
    [T.StructField(METRIC, T.StringType(), False), T.StructField(VALUE, T.DoubleType(), True)]
)

RATING_HISTOGRAM_SCHEMA = T.StructType(
    [T.StructField(RATING, T.DoubleType(), False), T.StructField(N_RATINGS, T.LongType(), False)]
)

RANK_FREQUENCY_SCHEMA = T.StructType(
    [T.StructField(RANK, T.LongType(), False), T.StructField(N_RATINGS, T.LongType(), False)]
)

# ---------------------------------------------------------------------------
# Convergence history of iterative models (recspark.models.als, recspark.models.factor).
# Added by the ALS module; additive only.
# ---------------------------------------------------------------------------
ITERATION = "iteration"  # 1-based iteration number
TRAIN_RMSE = "train_rmse"  # RMSE on the training ratings after the iteration
VALIDATION_RMSE = "validation_rmse"  # RMSE on the validation ratings (NaN without them)
OBJECTIVE = "objective"  # the regularised loss the iteration minimised
SECONDS = "seconds"  # wall time of the iteration

# ---------------------------------------------------------------------------
# Segments, profiles, similar movies (recspark.models.cluster, recspark.similar,
# recspark.pipeline.segment). Added by the segment module; additive only.
# SEGMENT (above) is also the KMeans segment of a user, 0..k-1.
# ---------------------------------------------------------------------------
FEATURES = "features"  # ml Vector of a user's / movie's latent factors (KMeans input)
K = "k"  # number of clusters tried
SILHOUETTE = "silhouette"  # mean silhouette (squared Euclidean) of a k-means clustering
SIZE = "size"  # users in a segment
SHARE = "share"  # size / all clustered users
MEAN_RATING = "mean_rating"  # mean of the ratings in a group
MEAN_USER_BIAS = "mean_user_bias"  # mean b_u over a segment's users
GENRE = "genre"
LIFT = "lift"  # segment mean rating of a genre − overall mean rating of the genre
SUPPORT = "support"  # ratings behind a mean
TOP_GENRES = "top_genres"  # array<struct<genre, lift, mean_rating, support>>
TOP_MOVIES = "top_movies"  # array<struct<movie_id, title, mean_rating, support>>
RESIDUAL = "residual"  # shrunk mean residual r − r̂ of a segment on a movie
SIMILAR_MOVIE_ID = "similar_movie_id"
SIMILARITY = "similarity"  # cosine of item factors
SIMILAR_TITLE = "similar_title"

# ---------------------------------------------------------------------------
# Rank sweeps and convergence of the SVD / NMF models (recspark.models.svd, .nmf).
# Added by the SVD/NMF module; additive only.
# ---------------------------------------------------------------------------
SWEEP_K = "k"  # number of latent factors a rank-sweep row was evaluated with
RELATIVE_CHANGE = "relative_change"  # ||L_t − L_{t−1}||_F² / ||L_{t−1}||_F² of a round

# ---------------------------------------------------------------------------
# Top-N recommendations, ranking metrics, batch re-scoring (recspark.recommend,
# recspark.ranking, recspark.pipeline.rescore). Added by the recommend module; additive only.
# RANK (above) is also the 1-based position in a user's top-N list.
# ---------------------------------------------------------------------------
SCORE = "score"  # raw model score used for ranking (unclipped μ + b_u + b_i + p_u·q_i)
SCORE_DATE = "score_date"  # partition column of the re-scoring output, YYYY-MM-DD
RATED = "rated"  # array<long> of the movie ids a user has rated (excluded from the top-N)
RELEVANT = "relevant"  # 1 if a recommended movie is a relevant test item, else 0

RECOMMENDATIONS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(RANK, T.IntegerType(), False),
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(SCORE, T.DoubleType(), False),
        T.StructField(MODEL, T.StringType(), False),
    ]
)
