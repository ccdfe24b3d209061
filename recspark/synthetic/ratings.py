"""ratings.csv of the synthetic data set, drawn chunk by chunk inside Spark tasks.

User u rates n_u distinct movies, a successive sample from the popularity w
(:func:`~recspark.synthetic.sampling.sample_distinct`). The rating is
x_ui = μ + b_u + b_i + p_u·q_i + ε, ε ~ N(0, ``noise``²), rounded to the nearest whole star
in [1, 5], or, with the user's propensity h_u and only from 2003-02-18 when MovieLens
introduced half stars, to the nearest half star in [0.5, 5]. Whole stars are therefore the
most common, 4.0 and 3.0 first, as in MovieLens. The time is uniform in the user's window.
Rows come out sorted by (userId, movieId), like MovieLens.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.schema import RATINGS_SCHEMA
from recspark.seeds import derive_seed
from recspark.synthetic.chunks import broadcast_plan, chunk_frame
from recspark.synthetic.plan import HALF_STARS_FROM, SyntheticPlan
from recspark.synthetic.sampling import sample_distinct

_RATINGS_ARROW = to_arrow_schema(RATINGS_SCHEMA)


def round_rating(x: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Nearest half star in [0.5, 5] where ``half``, else nearest whole star in [1, 5]."""
    whole = np.clip(np.floor(x + 0.5), 1.0, 5.0)
    halves = np.clip(np.floor(2.0 * x + 0.5) / 2.0, 0.5, 5.0)
    return np.where(half, halves, whole)


def ratings_chunk(plan: SyntheticPlan, chunk: int, *, seed: int) -> pa.RecordBatch:
    """The ratings of chunk ``chunk``'s users (user_id, movie_id, rating, timestamp).

    Vectorised over the chunk; seeded by ``derive_seed(seed, "generate", chunk)``. Rows are
    sorted by user then movie.
    """
    lo, hi = int(plan.chunk_bounds[chunk]), int(plan.chunk_bounds[chunk + 1])
    gen = np.random.default_rng(derive_seed(seed, "generate", chunk))
    owner, item = sample_distinct(
        counts=plan.user_counts[lo:hi], probs=plan.movie_probs, rng=gen,
        table=(plan.draw_distinct, plan.draw_counts), exact_above=plan.exact_above,
    )
    u = owner + lo
    x = (
        plan.global_mean + plan.user_bias[u] + plan.movie_bias[item]
        + np.einsum("ij,ij->i", plan.user_factors[u], plan.movie_factors[item])
        + gen.normal(0.0, plan.noise, size=u.size)
    )
    ts = plan.event_times(u, gen)
    half = (gen.random(u.size) < plan.user_half[u]) & (ts >= HALF_STARS_FROM)
    return pa.RecordBatch.from_arrays(
        [pa.array(u + 1), pa.array(plan.movie_ids[item]), pa.array(round_rating(x, half)), pa.array(ts)],
        schema=_RATINGS_ARROW,
    )


def ratings_frame(
    spark: SparkSession, plan: SyntheticPlan | Broadcast, *, seed: int, partitions: int
) -> DataFrame:
    """Lazily generated ratings (user_id, movie_id, rating, timestamp), Σ n_u rows sorted by
    user then movie. ``plan`` may be an existing broadcast of the plan. No action is run."""
    bc = broadcast_plan(spark, plan)
    n_chunks = len(bc.value.chunk_bounds) - 1
    return chunk_frame(spark, bc, n_chunks, make=ratings_chunk, schema=RATINGS_SCHEMA, seed=seed,
                       partitions=partitions)
