"""Column names, metric names and Spark schemas: the one place they are spelled out.

Every module refers to columns through these constants, so renaming one is a one-line
change and a typo is an ``AttributeError`` rather than a silent null column. Grouped by the
table they belong to; a name shared by several tables is defined with the first and
mentioned where it is reused.
"""

from __future__ import annotations

import functools
from typing import Iterable

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from recspark.errors import DataFrameMissingColumnError

# =========================================================================== ratings
USER_ID = "user_id"
MOVIE_ID = "movie_id"
RATING = "rating"
TIMESTAMP = "timestamp"

RATINGS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(RATING, T.DoubleType(), False),
        T.StructField(TIMESTAMP, T.LongType(), False),
    ]
)

#: MovieLens CSV headers (the synthetic generator writes them; the readers accept them).
ML_RATINGS_HEADER = ("userId", "movieId", "rating", "timestamp")
ML_MOVIES_HEADER = ("movieId", "title", "genres")
ML_TAGS_HEADER = ("userId", "movieId", "tag", "timestamp")
ML_LINKS_HEADER = ("movieId", "imdbId", "tmdbId")
ML_GENOME_SCORES_HEADER = ("movieId", "tagId", "relevance")  # ml-25m's tag genome
ML_GENOME_TAGS_HEADER = ("tagId", "tag")

# =========================================================================== movies, tags, links
TITLE = "title"
GENRES = "genres"  # "|"-separated genre list
TAG = "tag"
IMDB_ID = "imdb_id"
TMDB_ID = "tmdb_id"

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

TAG_ID = "tag_id"  # a tag-genome tag (genome-tags.csv)
RELEVANCE = "relevance"  # a tag's relevance to a movie in the tag genome, in [0, 1]

GENOME_SCORES_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(TAG_ID, T.LongType(), False),
        T.StructField(RELEVANCE, T.DoubleType(), False),
    ]
)

GENOME_TAGS_SCHEMA = T.StructType(
    [T.StructField(TAG_ID, T.LongType(), False), T.StructField(TAG, T.StringType(), True)]
)

LINKS_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(IMDB_ID, T.StringType(), True),
        T.StructField(TMDB_ID, T.LongType(), True),
    ]
)

# =========================================================================== quarantine
RAW_LINE = "raw_line"
SOURCE_FILE = "source_file"
LINE_NUMBER = "line_number"
REASON = "reason"
# True on a line of a UTF-8 file that was not valid UTF-8 and was decoded as latin-1.
LATIN1_FALLBACK = "latin1_fallback"
# Where a line sits before it is numbered (recspark.io.lines.scan_lines): the byte offset at
# which its input split starts and a row id that counts up by one line at a time in a split.
SPLIT_START = "_split_start"
# The key a frame is hash-partitioned on so that user block b is Spark partition b
# (recspark.index.by_block).
BLOCK_KEY = "_block_key"
ROW_ID = "_row_id"

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField(SOURCE_FILE, T.StringType(), False),
        T.StructField(LINE_NUMBER, T.LongType(), False),
        T.StructField(RAW_LINE, T.StringType(), True),
        T.StructField(REASON, T.StringType(), False),
    ]
)

# =========================================================================== index tables, ingested ratings
USER_IDX = "user_idx"  # dense 0-based index of a user, from the ingest index table
MOVIE_IDX = "movie_idx"  # dense 0-based index of a movie
USER_BLOCK = "user_block"  # partition column of the ingested ratings: user_idx % user_blocks
COPIES = "copies"  # input rows a deduplicated (user, movie) rating stood for (>= 1)

USER_INDEX_SCHEMA = T.StructType(
    [T.StructField(USER_ID, T.LongType(), False), T.StructField(USER_IDX, T.IntegerType(), False)]
)

MOVIE_INDEX_SCHEMA = T.StructType(
    [T.StructField(MOVIE_ID, T.LongType(), False), T.StructField(MOVIE_IDX, T.IntegerType(), False)]
)

INDEXED_RATINGS_SCHEMA = T.StructType(
    RATINGS_SCHEMA.fields
    + [
        T.StructField(USER_IDX, T.IntegerType(), False),
        T.StructField(MOVIE_IDX, T.IntegerType(), False),
    ]
)

#: Indexed ratings as written by the ingest job (partitioned by ``user_block``).
INGESTED_RATINGS_SCHEMA = T.StructType(
    INDEXED_RATINGS_SCHEMA.fields + [T.StructField(USER_BLOCK, T.IntegerType(), False)]
)

# =========================================================================== ingest statistics
N_RATINGS = "n_ratings"  # a histogram bin's, a user's or a movie's number of ratings
RANK = "rank"  # 1-based rank in a rank-frequency curve (1 = most ratings); also in top-N lists

# the ingest summary, one (metric, value) row per figure: SUMMARY_SCHEMA under metrics

RATING_HISTOGRAM_SCHEMA = T.StructType(
    [T.StructField(RATING, T.DoubleType(), False), T.StructField(N_RATINGS, T.LongType(), False)]
)

RANK_FREQUENCY_SCHEMA = T.StructType(
    [T.StructField(RANK, T.LongType(), False), T.StructField(N_RATINGS, T.LongType(), False)]
)

# =========================================================================== synthetic ground truth
SEGMENT = "segment"  # planted user segment 0..K-1 (null when generate.segments = 0); also KMeans'
POPULARITY = "popularity"  # a synthetic movie's probability in the popularity distribution
# N_RATINGS (above): the number of ratings a synthetic user was given

# =========================================================================== model parameters, factors
BIAS = "bias"  # b_u or b_i
FACTORS = "factors"  # array<double> latent factors p_u or q_i
GLOBAL_MEAN = "global_mean"
FEATURES = "features"  # ml Vector of latent factors (KMeans input; MLlib ALS output)
MLLIB_ID = "id"  # the id column of MLlib ALS factor tables
USER_BIAS = "user_bias"  # b_u joined onto pairs by the bias model (null when unseen)
ITEM_BIAS = "item_bias"  # b_i joined onto pairs by the bias model
BIAS_PREDICTION = "bias_prediction"  # the bias model's unclipped μ + b_u + b_i

# =========================================================================== predictions
PREDICTION = "prediction"
PERSONALISED = "personalised"  # true when the model itself (not the bias fallback) scored the row
MODEL = "model"  # registered model name (partition column of predictions and top-N lists)

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

# =========================================================================== metrics
RUN_ID = "run_id"
SPLIT = "split"  # "<split kind>/train", "<split kind>/test", "validation", ...
METRIC = "metric"
VALUE = "value"
FOLD = "fold"  # cross-validation fold 0..K-1 of a per-fold row; null otherwise (summaries too)
KFOLD = "kfold"  # the split kind of cross-validation rows: split "kfold/test", "kfold/train"

METRICS_SCHEMA = T.StructType(
    [
        T.StructField(RUN_ID, T.StringType(), False),
        T.StructField(MODEL, T.StringType(), False),
        T.StructField(SPLIT, T.StringType(), False),
        T.StructField(METRIC, T.StringType(), False),
        T.StructField(VALUE, T.DoubleType(), True),
        T.StructField(FOLD, T.IntegerType(), True),
    ]
)

#: Ingest statistics, one (metric, value) row per figure.
SUMMARY_SCHEMA = T.StructType(
    [T.StructField(METRIC, T.StringType(), False), T.StructField(VALUE, T.DoubleType(), True)]
)

# ---- metric names (values of the METRIC column); also column names of small curve frames
RMSE = "rmse"
MAE = "mae"
PERSONALISED_SHARE = "personalised_share"  # share of rows the model scored itself
ROWS = "rows"  # rows evaluated (or written)
FIT_SECONDS = "fit_seconds"
RANKING_USERS = "ranking_users"  # users with at least one relevant test item
BLEND_WEIGHT = "blend_weight"  # segment ablation: the weight chosen on validation
SIZE_RATIO = "size_ratio"  # segment ablation: largest / smallest segment
# K and SILHOUETTE (segments, below) are metric names of the ablation too


# ranking metrics at cut-off k: ndcg_at(10) == "ndcg@10"
PRECISION, RECALL, NDCG, MAP, HIT_RATE, COVERAGE = (
    "precision", "recall", "ndcg", "map", "hit_rate", "coverage"
)
# beyond accuracy (recspark.evaluation.beyond): intra-list genre diversity, mean
# self-information, mean popularity percentile of the recommended movies
ILD, NOVELTY, POPULARITY_BIAS = "ild", "novelty", "popularity_bias"


def at_k(metric: str, k: int) -> str:
    """``<metric>@<k>``: a ranking metric at cut-off k."""
    return f"{metric}@{k}"


precision_at = functools.partial(at_k, PRECISION)
recall_at = functools.partial(at_k, RECALL)
ndcg_at = functools.partial(at_k, NDCG)
map_at = functools.partial(at_k, MAP)
hit_rate_at = functools.partial(at_k, HIT_RATE)
coverage_at = functools.partial(at_k, COVERAGE)
ild_at = functools.partial(at_k, ILD)
novelty_at = functools.partial(at_k, NOVELTY)
popularity_bias_at = functools.partial(at_k, POPULARITY_BIAS)


def best_by(metric: str) -> str:
    """``best_by_<metric>``: the metric-table row naming the run's best model by ``metric``
    (its model column; the value is the model's figure), e.g. ``best_by_ndcg@10``."""
    return f"best_by_{metric}"


def std_of(metric: str) -> str:
    """``<metric>_std``: the standard deviation (ddof = 1) over folds of a cross-validated
    metric, beside its mean ``<metric>`` in the fold-summary rows."""
    return f"{metric}_std"


def at_cold(metric: str, below: int) -> str:
    """``<metric>@cold<<below>``: a metric over test movies with fewer than ``below``
    training ratings."""
    return f"{metric}@cold<{below}"


def at_iteration(metric: str, iteration: int) -> str:
    """``<metric>@iter=NNN``: one point of a convergence history in the metrics table."""
    return f"{metric}@iter={iteration:03d}"


def at_rank(model: str, k: int) -> str:
    """``<model>@k=<k>``: the model column of a rank-sweep row (the model truncated to k)."""
    return f"{model}@k={k}"


# =========================================================================== convergence history
ITERATION = "iteration"  # 1-based iteration number (0 = the starting point, when recorded)
TRAIN_RMSE = "train_rmse"  # RMSE on the training ratings after the iteration
VALIDATION_RMSE = "validation_rmse"  # RMSE on the validation ratings (NaN without them)
OBJECTIVE = "objective"  # the regularised loss the iteration minimised
SECONDS = "seconds"  # wall time of the iteration
RELATIVE_CHANGE = "relative_change"  # ||L_t − L_{t−1}||_F² / ||L_{t−1}||_F² of a round
SWEEP_K = "k"  # number of latent factors a rank-sweep row was evaluated with

# =========================================================================== top-N lists, ranking
# RANK (above): the 1-based position in a user's list
SCORE = "score"  # the model's raw ranking score (e.g. unclipped μ + b_u + b_i + p_u·q_i)
RELEVANT = "relevant"  # 1 if a recommended movie is a relevant test item, else 0
SELF_INFORMATION = "self_information"  # −log2(n_i / N) of a movie rated by n_i of N users
POPULARITY_PERCENTILE = "popularity_percentile"  # mid-rank percentile of n_i in the catalogue

RECOMMENDATIONS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(RANK, T.IntegerType(), False),
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(SCORE, T.DoubleType(), False),
        T.StructField(MODEL, T.StringType(), False),
    ]
)

# =========================================================================== segments, profiles
# SEGMENT (above): the KMeans segment of a user, 0..k-1
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
WEIGHT = "weight"  # blend weight of a blend-curve row (with RMSE, MAE)
COUNT = "count"  # the column Spark's ``groupBy(...).count()`` adds

# =========================================================================== similar movies
SIMILAR_MOVIE_ID = "similar_movie_id"
SIMILARITY = "similarity"  # cosine of item factors
SIMILAR_TITLE = "similar_title"

SIMILAR_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(RANK, T.IntegerType(), False),
        T.StructField(SIMILAR_MOVIE_ID, T.LongType(), False),
        T.StructField(SIMILARITY, T.DoubleType(), False),
    ]
)

# =========================================================================== neighbourhood models
NEIGHBOUR_ID = "neighbour_id"  # a kNN neighbour: a movie_id (item_knn) or a user_id (user_knn)
CO_SUPPORT = "co_support"  # co-rated entries behind a similarity

# =========================================================================== re-scoring output (scores)
SCORE_DATE = "score_date"  # partition column of the re-scoring output, YYYY-MM-DD
# pairs mode: USER_ID, MOVIE_ID, PREDICTION, PERSONALISED, MODEL; top-N modes: RECOMMENDATIONS_SCHEMA


def require_columns(df: DataFrame, columns: Iterable[str], *, stage: str) -> None:
    """Raise :class:`DataFrameMissingColumnError` if ``df`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFrameMissingColumnError(
            f"{stage} needs column(s) {', '.join(missing)}; the DataFrame has "
            f"{', '.join(df.columns) or 'no columns'}"
        )
