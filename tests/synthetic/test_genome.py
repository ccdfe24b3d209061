"""The synthetic tag genome: ml-25m's layout, dense over the genome movies, planted structure."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recspark.synthetic import plan_synthetic
from recspark.synthetic.genome import genome_movies, genome_tag_names


def test_genome_tags_are_1128_distinct_names():
    names = genome_tag_names(1128)
    assert len(names) == len(set(names)) == 1128
    assert genome_tag_names(3) == names[:3]


def test_genome_files_are_dense_over_the_movies_with_enough_expected_ratings(small):
    out, cfg, _ = small
    plan = plan_synthetic(cfg.generate, seed=cfg.seed)
    tags = pd.read_csv(out / "genome-tags.csv")
    scores = pd.read_csv(out / "genome-scores.csv")
    assert list(tags.columns) == ["tagId", "tag"] and list(scores.columns) == ["movieId", "tagId", "relevance"]
    np.testing.assert_array_equal(tags["tagId"], np.arange(1, 1129))
    expected = plan.movie_ids[plan.ratings * plan.movie_probs >= cfg.generate.genome_min_ratings]
    assert 0 < expected.size < plan.movies  # the small shape has genome and non-genome movies
    np.testing.assert_array_equal(np.sort(scores["movieId"].unique()), expected)
    # dense and sorted: every genome movie has tags 1..1128 in order
    np.testing.assert_array_equal(scores["movieId"], np.repeat(expected, 1128))
    np.testing.assert_array_equal(scores["tagId"], np.tile(np.arange(1, 1129), expected.size))
    assert scores["relevance"].between(0, 1).all()
    assert 0.05 < scores["relevance"].mean() < 0.3  # mostly small, like the real genome (≈ 0.12)


def test_genome_relevance_follows_the_planted_movie_factors(small):
    out, cfg, _ = small
    plan = plan_synthetic(cfg.generate, seed=cfg.seed)
    scores = pd.read_csv(out / "genome-scores.csv")
    movies = genome_movies(plan, cfg.generate.genome_min_ratings)
    logit = scores["relevance"].clip(1e-5, 1 - 1e-5).to_numpy().reshape(movies.size, 1128)
    logit = np.log(logit / (1 - logit))
    logit -= logit.mean(axis=0)  # remove the per-tag offsets a_t
    # movies close in factor space have close genome vectors: the pairwise correlations of
    # the centred genome vectors track the cosines of the planted factors q_i
    q = plan.movie_factors[movies]
    q_cos = (q @ q.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(q, axis=1))
    g_cor = np.corrcoef(logit)
    upper = np.triu_indices(movies.size, 1)
    assert np.corrcoef(q_cos[upper], g_cor[upper])[0, 1] > 0.8
