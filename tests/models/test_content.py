"""Content features, content neighbours, and content_knn on a cold movie."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.config import load_config
from recspark.models.bias import fit_bias
from recspark.models.content import content_knn_model, content_neighbours, feature_matrix, movie_features
from recspark.schema import MOVIE_ID, NEIGHBOUR_ID, PERSONALISED, PREDICTION, RATING, SIMILARITY, USER_ID

MOVIES = [
    (1, "Alien (1979)", "Horror|Sci-Fi"),
    (2, "Aliens (1986)", "Action|Horror|Sci-Fi"),
    (3, "Annie Hall (1977)", "Comedy|Romance"),
    (4, "Manhattan (1979)", "Comedy|Drama|Romance"),
    (5, "Prometheus (2012)", "Horror|Sci-Fi"),  # nobody rated it: the cold movie
]
TAGS = [(1, "space"), (2, "space"), (5, "space"), (3, "new york"), (4, "new york"), (4, "Woody Allen"), (3, "woody allen")]
RATINGS = [(1, 1, 5.0), (1, 2, 4.5), (1, 3, 2.0), (1, 4, 1.5), (2, 1, 1.0), (2, 2, 1.5), (2, 3, 4.5), (2, 4, 5.0),
           (3, 1, 4.0), (3, 3, 3.0)]


@pytest.fixture
def tables(spark):
    movies = spark.createDataFrame(MOVIES, f"{MOVIE_ID} long, title string, genres string")
    tags = spark.createDataFrame(TAGS, f"{MOVIE_ID} long, tag string")
    train = spark.createDataFrame(RATINGS, f"{USER_ID} long, {MOVIE_ID} long, {RATING} double")
    return movies, tags, train


def test_features_are_unit_vectors_and_neighbours_share_content(spark, tables):
    movies, tags, _ = tables
    cfg = load_config(overrides=["content_knn.min_tag_movies=2"]).content_knn
    features = movie_features(movies, tags, cfg=cfg)
    ids, matrix = feature_matrix(features)
    assert ids.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0))).ravel(), 1.0)
    # Alien and Prometheus: same genres, same tag, other decade
    nb = content_neighbours(features, k=1, max_cells=1000).collect()
    best = {r[MOVIE_ID]: r[NEIGHBOUR_ID] for r in nb}
    assert best[5] == 1 and best[3] == 4 and best[4] == 3
    dense = matrix.toarray()
    sims = {(r[MOVIE_ID], r[NEIGHBOUR_ID]): r[SIMILARITY] for r in nb}
    assert sims[(5, 1)] == pytest.approx(float(dense[:, 4] @ dense[:, 0]))


def test_cold_movie_gets_a_personalised_prediction(spark, tables):
    movies, tags, train = tables
    cfg = load_config(overrides=["content_knn.min_tag_movies=2", "content_knn.k=2"])
    bias = fit_bias(train, cfg=cfg.bias)
    model = content_knn_model(train, movies, tags, cfg=cfg.content_knn, bias=bias)
    pairs = spark.createDataFrame([(1, 5), (2, 5)], f"{USER_ID} long, {MOVIE_ID} long")
    got = {r[USER_ID]: r for r in model.predict(pairs).collect()}
    assert got[1][PERSONALISED] and got[2][PERSONALISED]
    # user 1 loves the sci-fi movies, user 2 hates them: the cold movie follows
    assert got[1][PREDICTION] > got[2][PREDICTION] + 1.0


def test_genome_part_is_the_centred_unit_relevance_vector(spark, tables):
    movies, tags, _ = tables
    cfg = load_config(overrides=["content_knn.min_tag_movies=2"]).content_knn
    # genome tag ids 20 and 10 (positions by id: 10 → 0, 20 → 1); movies 4 and 5 outside it
    genome = spark.createDataFrame(
        [(1, 10, 0.9), (1, 20, 0.1), (2, 10, 0.8), (2, 20, 0.3), (3, 20, 0.7), (3, 10, 0.1)],
        f"{MOVIE_ID} long, tag_id long, relevance double",
    )
    plain = feature_matrix(movie_features(movies, tags, cfg=cfg))[1].toarray()
    ids, matrix = feature_matrix(movie_features(movies, tags, cfg=cfg, genome=genome))
    dense = matrix.toarray()
    assert dense.shape[0] == plain.shape[0] + 2  # genres, tags, then the 2 genome positions
    rel = np.array([[0.9, 0.1], [0.8, 0.3], [0.1, 0.7]])
    centred = rel - rel.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    # movies 1-3 have genres, tags and genome: three unit parts, so each is scaled by 1/√3
    np.testing.assert_allclose(dense[-2:, :3].T, unit / np.sqrt(3), atol=1e-12)
    # movie 4 (outside the genome): zero genome part, the other parts as without a genome
    np.testing.assert_allclose(dense[-2:, 3], 0.0)
    np.testing.assert_allclose(dense[:-2, 3], plain[:, 3], atol=1e-12)
