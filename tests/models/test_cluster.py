"""Segments: planted-segment recovery, hand-computed profiles and segment residuals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from chispa import assert_approx_df_equality
from sklearn.metrics import adjusted_rand_score

from recspark import synthetic
from recspark.config import GenerateConfig, load_config
from recspark.errors import ConfigError
from recspark.index import add_indices, movie_index, user_index
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.cluster import (
    annotate_residuals,
    assign_segments,
    blend,
    blend_curve,
    choose_k,
    fit_kmeans,
    pca_2d,
    segment_profiles,
    segment_residuals,
    size_ratio,
    user_vectors,
)
from recspark.schema import (
    BIAS,
    GENRES,
    MOVIE_ID,
    PREDICTION,
    RATING,
    RESIDUAL,
    SEGMENT,
    TITLE,
    USER_ID,
)
from recspark.seeds import derive_seed

SEED = 11


# --------------------------------------------------------------------------- planted segments


@pytest.fixture(scope="module")
def planted(spark):
    """400 users in 4 planted segments × 300 movies, 30k ratings, from recspark.synthetic.

    Returns (indexed ratings, truth pandas frame user_id → planted segment)."""
    gcfg = GenerateConfig(
        users=400, movies=300, ratings=30_000, segments=4, tags=0, tagging_users=0.0,
        partitions=1, chunk_ratings=100_000,
    )
    plan = synthetic.plan_synthetic(gcfg, seed=SEED)
    batches = [
        synthetic.ratings_chunk(plan, c, seed=SEED) for c in range(len(plan.chunk_bounds) - 1)
    ]
    pdf = pa.Table.from_batches(batches).to_pandas()
    raw = spark.createDataFrame(pdf)
    ratings = add_indices(
        raw, users=user_index(raw), movies=movie_index(raw), user_blocks=2
    ).cache()
    truth = pd.DataFrame(
        {USER_ID: np.arange(1, plan.users + 1), "truth": plan.user_segment}
    )
    return ratings, truth


def test_kmeans_on_als_factors_recovers_planted_segments(spark, planted):
    ratings, truth = planted
    cfg = load_config(overrides=[f"seed={SEED}", "als.rank=10", "als.max_iter=8", "als.blocks=2"])
    bias = fit_bias(ratings, cfg=cfg.bias)
    model = registry.fit("als", ratings, cfg=cfg, bias=bias)
    vectors = user_vectors(model.user_factors).cache()
    seed = derive_seed(SEED, "segment", "kmeans")

    km = fit_kmeans(vectors, k=4, seed=seed)
    got = assign_segments(km, vectors).toPandas().merge(truth, on=USER_ID)
    assert len(got) == 400
    ari = adjusted_rand_score(got["truth"], got[SEGMENT])
    assert ari >= 0.9, f"adjusted Rand index {ari:.3f}"

    # the silhouette curve peaks at the planted k
    best, curve = choose_k(vectors, k_min=2, k_max=6, seed=seed)
    assert best.getK() == 4, curve.to_string()
    assert list(curve["k"]) == [2, 3, 4, 5, 6]
    vectors.unpersist()


def test_choose_k_rejects_bad_range(spark):
    empty = spark.createDataFrame([], "user_id long, features array<double>")
    with pytest.raises(ConfigError, match="k_min"):
        choose_k(empty, k_min=1, k_max=3, seed=1)
    with pytest.raises(ConfigError, match="segment.k"):
        fit_kmeans(empty, k=1, seed=1)


# --------------------------------------------------------------------------- profiles


def _tiny(spark):
    segments = spark.createDataFrame([(1, 0), (2, 0), (3, 1)], f"{USER_ID} long, {SEGMENT} int")
    movies = spark.createDataFrame(
        [(10, "Ten", "A|B"), (20, "Twenty", "B"), (30, "Thirty", "(no genres listed)")],
        f"{MOVIE_ID} long, {TITLE} string, {GENRES} string",
    )
    ratings = spark.createDataFrame(
        [(1, 10, 5.0), (1, 20, 3.0), (2, 10, 4.0), (2, 30, 2.0), (3, 10, 1.0), (3, 20, 5.0),
         (4, 10, 3.0)],  # user 4 has no segment: counted nowhere
        f"{USER_ID} long, {MOVIE_ID} long, {RATING} double",
    )
    user_bias = spark.createDataFrame([(1, 0.2), (2, -0.4), (3, 0.1)], f"{USER_ID} long, {BIAS} double")
    return ratings, segments, movies, user_bias


def test_profiles_equal_hand_computed_values(spark):
    ratings, segments, movies, user_bias = _tiny(spark)
    got = segment_profiles(
        ratings, segments=segments, movies=movies, user_bias=user_bias,
        min_support=2, top_genres=5, top_movies=3,
    ).orderBy(SEGMENT).collect()
    assert len(got) == 2
    s0, s1 = got
    # segment 0 = users 1, 2: ratings 5, 3, 4, 2
    assert (s0["size"], s0["n_ratings"]) == (2, 4)
    assert s0["share"] == pytest.approx(2 / 3)
    assert s0["mean_rating"] == pytest.approx(3.5)
    assert s0["mean_user_bias"] == pytest.approx(-0.1)
    # A: segment 0 rates it 5, 4 (mean 4.5), everyone clustered 5, 4, 1 (10/3)
    # B: segment 0 rates it 5, 3, 4 (mean 4), everyone 5, 3, 4, 1, 5 (3.6)
    genres0 = [(g["rank"], g["genre"], g["lift"], g["mean_rating"], g["support"]) for g in s0["top_genres"]]
    assert [g[:2] for g in genres0] == [(1, "A"), (2, "B")]
    assert genres0[0][2] == pytest.approx(4.5 - 10 / 3)
    assert genres0[1][2] == pytest.approx(4.0 - 3.6)
    assert [g[3:] for g in genres0] == [(4.5, 2), (pytest.approx(4.0), 3)]
    assert [(m["movie_id"], m["title"], m["mean_rating"], m["support"]) for m in s0["top_movies"]] == [
        (10, "Ten", 4.5, 2)
    ]
    # segment 1 = user 3: ratings 1, 5; only B has support 2 (lift 3 − 3.6)
    assert (s1["size"], s1["n_ratings"], s1["share"]) == (1, 2, pytest.approx(1 / 3))
    assert s1["mean_rating"] == pytest.approx(3.0)
    assert s1["mean_user_bias"] == pytest.approx(0.1)
    assert [(g["genre"], round(g["lift"], 12)) for g in s1["top_genres"]] == [("B", -0.6)]
    assert s1["top_movies"] == []


def test_profiles_without_user_bias_and_size_warning(spark, caplog):
    ratings, segments, movies, _ = _tiny(spark)
    got = segment_profiles(ratings, segments=segments, movies=movies, min_support=1).collect()
    assert all(r["mean_user_bias"] is None for r in got)
    assert size_ratio([2, 1], max_ratio=10.0) == 2.0
    assert "uneven" not in caplog.text
    assert size_ratio([200, 10], max_ratio=10.0) == 20.0
    assert "very uneven" in caplog.text


# --------------------------------------------------------------------------- segment residuals


def test_segment_residuals_and_blend_hand_computed(spark):
    _, segments, _, _ = _tiny(spark)
    scored = spark.createDataFrame(
        [(1, 10, 5.0, 4.0), (2, 10, 4.0, 3.5), (3, 10, 1.0, 2.0), (4, 10, 3.0, 3.0)],
        f"{USER_ID} long, {MOVIE_ID} long, {RATING} double, {PREDICTION} double",
    )
    res = segment_residuals(scored, segments=segments, shrinkage=1.0)
    expected = spark.createDataFrame(
        [(0, 10, 1.5 / 3, 2), (1, 10, -1.0 / 2, 1)],
        f"{SEGMENT} int, {MOVIE_ID} long, {RESIDUAL} double, support long",
    )
    assert_approx_df_equality(res.orderBy(SEGMENT), expected, precision=1e-12, ignore_nullable=True)

    test = spark.createDataFrame(
        [(1, 10, 4.0, 4.0), (4, 10, 3.0, 3.0), (3, 20, 5.0, 3.0)],
        f"{USER_ID} long, {MOVIE_ID} long, {RATING} double, {PREDICTION} double",
    )
    annotated = annotate_residuals(test, segments=segments, residuals=res)
    out = {(r[USER_ID], r[MOVIE_ID]): r[RESIDUAL] for r in annotated.collect()}
    # user 4 has no segment, segment 1 never rated movie 20: both 0
    assert out == {(1, 10): 0.5, (4, 10): 0.0, (3, 20): 0.0}
    blended = {r[USER_ID]: r[PREDICTION] for r in blend(annotated, weight=3.0, lo=0.5, hi=5.0).collect()}
    assert blended == {1: 5.0, 4: 3.0, 3: 3.0}  # 4 + 3·0.5 = 5.5 clipped to 5

    rows = spark.createDataFrame(
        [(4.0, 3.0, 1.0), (2.0, 3.0, 0.0)], f"{RATING} double, {PREDICTION} double, {RESIDUAL} double"
    )
    curve = blend_curve(rows, weights=[0.0, 1.0], lo=0.5, hi=5.0)
    assert curve["rmse"].tolist() == pytest.approx([1.0, math.sqrt(0.5)])
    assert curve["mae"].tolist() == pytest.approx([1.0, 0.5])


def test_pca_2d_matches_sklearn():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(3).normal(size=(200, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.1])
    coords, ratio = pca_2d(x)
    ref = PCA(n_components=2).fit(x)
    np.testing.assert_allclose(np.abs(coords), np.abs(ref.transform(x)), atol=1e-9)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, atol=1e-12)
