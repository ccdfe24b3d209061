"""User segments: MLlib k-means on latent user factors, segment profiles, segment-aware scores.

Segmentation
    Each user u is the point p_u (the user's latent factors, bias excluded) of a fitted factor
    model. MLlib ``KMeans`` (k-means||, seeded) assigns a segment s(u) ∈ {0..k−1} minimising
    Σ_u ||p_u − c_s(u)||². k is fixed, or chosen in k_min..k_max by the mean silhouette
    (``ClusteringEvaluator``, squared Euclidean): for user u with mean distance a(u) to its own
    segment and b(u) to the nearest other, s(u) = (b − a) / max(a, b); larger is better.

Profiles (:func:`segment_profiles`), over the ratings of clustered users
    size_s = |{u : s(u) = s}|, share_s = size_s / Σ_s size_s,
    mean_rating_s = mean of all ratings by the segment's users (rating-weighted),
    mean_user_bias_s = mean of b_u over the segment's users (null without user biases),
    genre lift:  lift_{s,g} = mean_{(u,i): s(u)=s, g ∈ G(i)} r_ui − mean_{(u,i): g ∈ G(i)} r_ui,
    i.e. the segment's mean rating of movies of genre g minus everyone's mean rating of that
    genre (a movie counts for each genre it lists; "(no genres listed)" is skipped). Genres
    with fewer than ``min_support`` segment ratings are not ranked.
    top movies: the movies the segment rates highest on average among those with at least
    ``min_support`` ratings from the segment (ties: more ratings, then smaller id).

Segment-aware prediction (:func:`segment_residuals`, :func:`annotate_residuals`, :func:`blend`)
    d_{s,i} = Σ_{u: s(u)=s, (u,i) ∈ R} (r_ui − r̂_ui) / (n_{s,i} + λ)
    (the mean residual of segment s on movie i, shrunk towards 0 by its support n_{s,i}), and
    r̂'_ui = clip(r̂_ui + w · d_{s(u),i}); d = 0 for users without a segment or unseen pairs.
    The weight w is chosen on validation ratings (:func:`blend_curve`), never on the test set.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recspark.errors import ConfigError
from recspark.models.base import clip
from recspark.schema import (
    BIAS,
    FACTORS,
    FEATURES,
    GENRE,
    GENRES,
    K,
    LIFT,
    MAE,
    MEAN_RATING,
    MEAN_USER_BIAS,
    MOVIE_ID,
    N_RATINGS,
    PREDICTION,
    RANK,
    RATING,
    RESIDUAL,
    RMSE,
    SEGMENT,
    SHARE,
    SILHOUETTE,
    SIZE,
    SUPPORT,
    TITLE,
    TOP_GENRES,
    TOP_MOVIES,
    USER_ID,
    WEIGHT,
    require_columns,
)

_logger = logging.getLogger(__name__)

NO_GENRE = "(no genres listed)"


# --------------------------------------------------------------------------- segmentation


def user_vectors(user_factors: DataFrame) -> DataFrame:
    """(user_id, factors array<double>) → (user_id, features ml Vector), the k-means input."""
    require_columns(user_factors, [USER_ID, FACTORS], stage="user_vectors")
    return user_factors.select(USER_ID, array_to_vector(F.col(FACTORS)).alias(FEATURES))


def fit_kmeans(vectors: DataFrame, *, k: int, seed: int, max_iter: int = 30) -> KMeansModel:
    """MLlib k-means (k-means|| init, ``seed``) on ``vectors`` (features). Action: the fit."""
    if k < 2:
        raise ConfigError(f"segment.k must be at least 2 (or 0 to choose it), got {k}")
    require_columns(vectors, [FEATURES], stage="fit_kmeans")
    km = KMeans(k=k, seed=seed, maxIter=max_iter, featuresCol=FEATURES, predictionCol=SEGMENT)
    return km.fit(vectors)


def assign_segments(model: KMeansModel, vectors: DataFrame) -> DataFrame:
    """(user_id, features) → (user_id, segment int): each user's nearest centre."""
    require_columns(vectors, [USER_ID, FEATURES], stage="assign_segments")
    return model.transform(vectors).select(USER_ID, F.col(SEGMENT).cast("int").alias(SEGMENT))


def silhouette(model: KMeansModel, vectors: DataFrame) -> float:
    """Mean squared-Euclidean silhouette of ``model``'s segments of ``vectors``. Action."""
    evaluator = ClusteringEvaluator(
        featuresCol=FEATURES, predictionCol=SEGMENT, metricName="silhouette",
        distanceMeasure="squaredEuclidean",
    )
    return float(evaluator.evaluate(model.transform(vectors)))


def choose_k(
    vectors: DataFrame, *, k_min: int, k_max: int, seed: int, max_iter: int = 30
) -> tuple[KMeansModel, pd.DataFrame]:
    """Fit k-means for every k in k_min..k_max; return the model of the largest silhouette
    and the curve (columns ``k``, ``silhouette``). Cache ``vectors`` first: each k reads them
    several times. Actions: one fit and one evaluation per k."""
    if not 2 <= k_min <= k_max:
        raise ConfigError(
            f"segment.k_min..k_max must satisfy 2 <= k_min <= k_max, got {k_min}..{k_max}"
        )
    rows, best, best_score = [], None, -np.inf
    for k in range(k_min, k_max + 1):
        model = fit_kmeans(vectors, k=k, seed=seed, max_iter=max_iter)
        score = silhouette(model, vectors)
        _logger.info("k-means k=%d: silhouette %.4f", k, score)
        rows.append((k, score))
        if score > best_score:
            best, best_score = model, score
    curve = pd.DataFrame(rows, columns=[K, SILHOUETTE])
    _logger.info("chose k=%d (silhouette %.4f)", best.getK(), best_score)
    return best, curve


def size_ratio(sizes: Sequence[int], *, max_ratio: float) -> float:
    """largest / smallest segment size; logs a warning when it exceeds ``max_ratio``."""
    sizes = [int(s) for s in sizes]
    ratio = max(sizes) / min(sizes) if sizes and min(sizes) > 0 else float("inf")
    if ratio > max_ratio:
        _logger.warning(
            "segment sizes are very uneven: largest/smallest = %.1f > %.1f (sizes %s); "
            "consider another segment.k or model", ratio, max_ratio, sizes,
        )
    return ratio


# --------------------------------------------------------------------------- profiles


def movie_genres(movies: DataFrame) -> DataFrame:
    """(movie_id, genres "A|B") → one (movie_id, genre) row per listed genre."""
    require_columns(movies, [MOVIE_ID, GENRES], stage="movie_genres")
    return (
        movies.select(MOVIE_ID, F.explode(F.split(F.col(GENRES), r"\|")).alias(GENRE))
        .where((F.col(GENRE) != "") & (F.col(GENRE) != NO_GENRE))
    )


def segment_profiles(
    ratings: DataFrame,
    *,
    segments: DataFrame,
    movies: DataFrame,
    user_bias: DataFrame | None = None,
    min_support: int = 20,
    top_genres: int = 5,
    top_movies: int = 10,
) -> DataFrame:
    """One row per segment (maths in the module docstring).

    Inputs: ``ratings`` (user_id, movie_id, rating), ``segments`` (user_id, segment),
    ``movies`` (movie_id, title, genres), ``user_bias`` (user_id, bias) or None.
    Output columns: segment, size, share, n_ratings, mean_rating, mean_user_bias,
    top_genres array<struct<rank, genre, lift, mean_rating, support>> (best lift first,
    at most ``top_genres``), top_movies array<struct<rank, movie_id, title, mean_rating,
    support>> (at most ``top_movies``). Lazy.
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, RATING], stage="segment_profiles")
    require_columns(segments, [USER_ID, SEGMENT], stage="segment_profiles (segments)")
    require_columns(movies, [MOVIE_ID, TITLE, GENRES], stage="segment_profiles (movies)")
    rated = ratings.select(USER_ID, MOVIE_ID, RATING).join(segments.select(USER_ID, SEGMENT), USER_ID)

    sizes = segments.groupBy(SEGMENT).agg(F.count(F.lit(1)).alias(SIZE))
    # the total joined on (k rows), not a window without partition: Spark warns on those
    total = sizes.agg(F.sum(SIZE).alias("_total"))
    sizes = sizes.crossJoin(total).select(SEGMENT, SIZE, (F.col(SIZE) / F.col("_total")).alias(SHARE))
    means = rated.groupBy(SEGMENT).agg(
        F.count(F.lit(1)).alias(N_RATINGS), F.avg(RATING).alias(MEAN_RATING)
    )
    if user_bias is not None:
        require_columns(user_bias, [USER_ID, BIAS], stage="segment_profiles (user bias)")
        biases = segments.join(user_bias.select(USER_ID, BIAS), USER_ID, "left").groupBy(
            SEGMENT
        ).agg(F.avg(BIAS).alias(MEAN_USER_BIAS))
    else:
        biases = sizes.select(SEGMENT, F.lit(None).cast("double").alias(MEAN_USER_BIAS))

    by_genre = rated.join(F.broadcast(movie_genres(movies)), MOVIE_ID)
    overall = by_genre.groupBy(GENRE).agg(F.avg(RATING).alias("_overall"))
    genre_stats = (
        by_genre.groupBy(SEGMENT, GENRE)
        .agg(F.avg(RATING).alias(MEAN_RATING), F.count(F.lit(1)).alias(SUPPORT))
        .where(F.col(SUPPORT) >= min_support)
        .join(F.broadcast(overall), GENRE)
        .withColumn(LIFT, F.col(MEAN_RATING) - F.col("_overall"))
    )
    genre_rank = Window.partitionBy(SEGMENT).orderBy(F.col(LIFT).desc(), F.col(GENRE))
    genres = _top_as_array(
        genre_stats.withColumn(RANK, F.row_number().over(genre_rank)),
        n=top_genres, fields=[GENRE, LIFT, MEAN_RATING, SUPPORT], name=TOP_GENRES,
    )

    movie_stats = (
        rated.groupBy(SEGMENT, MOVIE_ID)
        .agg(F.avg(RATING).alias(MEAN_RATING), F.count(F.lit(1)).alias(SUPPORT))
        .where(F.col(SUPPORT) >= min_support)
    )
    movie_rank = Window.partitionBy(SEGMENT).orderBy(
        F.col(MEAN_RATING).desc(), F.col(SUPPORT).desc(), F.col(MOVIE_ID)
    )
    best_movies = (
        movie_stats.withColumn(RANK, F.row_number().over(movie_rank))
        .where(F.col(RANK) <= top_movies)
        .join(F.broadcast(movies.select(MOVIE_ID, TITLE)), MOVIE_ID, "left")
    )
    top = _top_as_array(
        best_movies, n=top_movies, fields=[MOVIE_ID, TITLE, MEAN_RATING, SUPPORT], name=TOP_MOVIES
    )

    return (
        sizes.join(means, SEGMENT, "left")
        .join(biases, SEGMENT, "left")
        .join(genres, SEGMENT, "left")
        .join(top, SEGMENT, "left")
        .select(
            SEGMENT, SIZE, SHARE,
            F.coalesce(F.col(N_RATINGS), F.lit(0)).alias(N_RATINGS),
            MEAN_RATING, MEAN_USER_BIAS,
            F.coalesce(F.col(TOP_GENRES), F.array().cast(genres.schema[TOP_GENRES].dataType)).alias(TOP_GENRES),
            F.coalesce(F.col(TOP_MOVIES), F.array().cast(top.schema[TOP_MOVIES].dataType)).alias(TOP_MOVIES),
        )
    )


def _top_as_array(ranked: DataFrame, *, n: int, fields: list[str], name: str) -> DataFrame:
    """(segment, rank, fields...) → (segment, name array<struct<rank, fields...>>) of the rows
    with rank ≤ n, in rank order."""
    return (
        ranked.where(F.col(RANK) <= n)
        .groupBy(SEGMENT)
        .agg(F.sort_array(F.collect_list(F.struct(RANK, *fields))).alias(name))
    )


# --------------------------------------------------------------------------- segment-aware scores


def segment_residuals(scored: DataFrame, *, segments: DataFrame, shrinkage: float) -> DataFrame:
    """Shrunk mean residual of each segment on each movie.

    Input: ``scored`` (user_id, movie_id, rating, prediction) — the model's predictions of
    the ratings it was fitted on — and ``segments`` (user_id, segment). Output: segment,
    movie_id, residual d = Σ(r − r̂) / (n + λ), support n. Lazy.
    """
    if shrinkage < 0:
        raise ConfigError(f"segment.residual_shrinkage must be >= 0, got {shrinkage}")
    require_columns(scored, [USER_ID, MOVIE_ID, RATING, PREDICTION], stage="segment_residuals")
    return (
        scored.join(segments.select(USER_ID, SEGMENT), USER_ID)
        .groupBy(SEGMENT, MOVIE_ID)
        .agg(
            F.sum(F.col(RATING) - F.col(PREDICTION)).alias("_sum"),
            F.count(F.lit(1)).alias(SUPPORT),
        )
        .select(
            SEGMENT, MOVIE_ID,
            (F.col("_sum") / (F.col(SUPPORT) + F.lit(float(shrinkage)))).alias(RESIDUAL),
            SUPPORT,
        )
    )


def annotate_residuals(
    predictions: DataFrame, *, segments: DataFrame, residuals: DataFrame
) -> DataFrame:
    """``predictions`` (user_id, movie_id, prediction, ...) plus ``residual`` = d_{s(u), i}
    (0 when the user has no segment or the segment never rated the movie). Lazy."""
    require_columns(predictions, [USER_ID, MOVIE_ID, PREDICTION], stage="annotate_residuals")
    return (
        predictions.drop(SEGMENT, RESIDUAL)
        .join(segments.select(USER_ID, SEGMENT), USER_ID, "left")
        .join(residuals.select(SEGMENT, MOVIE_ID, RESIDUAL), [SEGMENT, MOVIE_ID], "left")
        .withColumn(RESIDUAL, F.coalesce(F.col(RESIDUAL), F.lit(0.0)))
        .drop(SEGMENT)
    )


def blend(annotated: DataFrame, *, weight: float, lo: float, hi: float) -> DataFrame:
    """Replace ``prediction`` by clip(prediction + weight · residual, lo, hi); drop residual."""
    require_columns(annotated, [PREDICTION, RESIDUAL], stage="blend")
    return annotated.withColumn(
        PREDICTION, clip(F.col(PREDICTION) + F.lit(float(weight)) * F.col(RESIDUAL), lo, hi)
    ).drop(RESIDUAL)


def blend_curve(
    annotated: DataFrame, *, weights: Sequence[float], lo: float, hi: float
) -> pd.DataFrame:
    """RMSE and MAE of the blend for every weight, in one aggregation over ``annotated``
    (rating, prediction, residual). Returns columns weight, rmse, mae. Action."""
    if not weights:
        raise ConfigError("segment.blend_weights must list at least one weight, e.g. [0.0, 0.5, 1.0]")
    require_columns(annotated, [RATING, PREDICTION, RESIDUAL], stage="blend_curve")
    aggs = []
    for j, w in enumerate(weights):
        err = F.col(RATING) - clip(F.col(PREDICTION) + F.lit(float(w)) * F.col(RESIDUAL), lo, hi)
        aggs += [F.sqrt(F.avg(err * err)).alias(f"{RMSE}_{j}"), F.avg(F.abs(err)).alias(f"{MAE}_{j}")]
    row = annotated.agg(*aggs).first()
    return pd.DataFrame(
        {
            WEIGHT: [float(w) for w in weights],
            RMSE: [float(row[f"{RMSE}_{j}"]) for j in range(len(weights))],
            MAE: [float(row[f"{MAE}_{j}"]) for j in range(len(weights))],
        }
    )


# --------------------------------------------------------------------------- pictures


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``points`` (n × d) on their first two principal components.

    Returns (coords n × 2, explained variance ratio of the two). Centred SVD on the driver:
    call it on a sample (the pipeline plots at most ``segment.plot_points`` points).
    """
    x = points - points.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:  # rank-1 input: pad the second axis with zeros
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    return x @ comps.T, np.pad(ratio, (0, 2 - ratio.size))
