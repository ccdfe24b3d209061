"""Synthetic MovieLens data at any scale (ml-32m by default), generated in parallel in Spark.

MovieLens-32M cannot be downloaded everywhere, so scale is tested on data drawn from a
planted model and written in the ml-32m CSV layout (``ratings.csv``, ``movies.csv``,
``tags.csv``, ``links.csv``), plus the planted parameters in ``_truth/`` so tests can
measure what a model recovers. Same seed, same bytes.

The model is μ + b_u + b_i + p_u·q_i + noise with power-law user activity and movie
popularity, optional planted user segments, MovieLens-like ids, titles, genres, half stars
and timestamps. Modules, in the order the data flows:

* :mod:`~recspark.synthetic.plan`: the per-user and per-movie parameters, drawn on the
  driver (activity, popularity, ids, biases, factors, segments, time windows);
* :mod:`~recspark.synthetic.sampling`: heavy-tailed counts, distinct weighted samples,
  skewed biases (NumPy);
* :mod:`~recspark.synthetic.chunks`: chunked, seeded generation inside Spark tasks;
* :mod:`~recspark.synthetic.ratings`, :mod:`~recspark.synthetic.tags`: the chunk
  generators of the two large tables;
* :mod:`~recspark.synthetic.movies`: titles, genres and links (driver-side);
* :mod:`~recspark.synthetic.truth`: the planted parameters written to ``_truth/``;
* :mod:`~recspark.synthetic.writer`: the Spark job that writes and publishes it all.

The settings are :class:`recspark.config.GenerateConfig` (``[generate]``), whose checks
(e.g. a rating total the users and movies cannot hold) run when the config is built.
"""

from recspark.synthetic.movies import GENRE_WEIGHTS, NO_GENRES, link_table, movie_table
from recspark.synthetic.plan import (
    FIRST_TIMESTAMP,
    HALF_STARS_FROM,
    LAST_TIMESTAMP,
    SyntheticPlan,
    plan_synthetic,
    scaled_config,
)
from recspark.synthetic.ratings import ratings_chunk, ratings_frame
from recspark.synthetic.tags import tags_chunk, tags_frame
from recspark.synthetic.truth import truth_tables
from recspark.synthetic.writer import SyntheticSummary, generate_movielens

__all__ = [
    "FIRST_TIMESTAMP",
    "GENRE_WEIGHTS",
    "HALF_STARS_FROM",
    "LAST_TIMESTAMP",
    "NO_GENRES",
    "SyntheticPlan",
    "SyntheticSummary",
    "generate_movielens",
    "link_table",
    "movie_table",
    "plan_synthetic",
    "ratings_chunk",
    "ratings_frame",
    "scaled_config",
    "tags_chunk",
    "tags_frame",
    "truth_tables",
]
