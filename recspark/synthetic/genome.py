"""The tag genome of the synthetic data set: ``genome-scores.csv`` and ``genome-tags.csv``.

The layout is ml-25m's (ml-32m's real release has no genome files): ``genome-tags.csv``
(``tagId,tag``, tag ids 1..T, T = ``genome_tags``, 1,128 in ml-25m) and
``genome-scores.csv`` (``movieId,tagId,relevance``), dense over genome movies × T tags,
sorted by movie then tag, relevance in [0, 1] with 5 decimals.

Genome movies are the movies whose expected rating count R·w_i (w_i the planted
popularity) is at least ``genome_min_ratings``: MovieLens scores the genome only for
movies with enough ratings (ml-25m: 13,816 of 62,423 movies). At the ml-32m shape the
default 50 gives 13,736 genome movies (98 % of the ratings), 15.5 M score rows (ml-25m:
15,584,448). Relevance is planted from
the movie's latent factors, so it carries the same structure as the ratings:

    relevance(i, t) = σ(a_t + g_t · q_i / f + ε),  a_t ~ N(−2.2, 0.8), g_t ~ N(0, I_k),
    ε ~ N(0, 0.5²)

with f the factor scale of the plan (q_i / f has unit variance per dimension) and σ the
logistic function: most relevances are small (mean ≈ 0.15; the real genome's is ≈ 0.12)
and a movie has a few strongly relevant tags. a and g are drawn from
``rng(seed, "generate", "genome", "tags")``; each chunk of movies from its own seed.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.schema import GENOME_SCORES_SCHEMA, TAG, TAG_ID
from recspark.seeds import derive_seed, rng
from recspark.synthetic.chunks import broadcast_plan, chunk_frame
from recspark.synthetic.tags import tag_vocabulary

if TYPE_CHECKING:
    from recspark.synthetic.plan import SyntheticPlan

_SCORES_ARROW = to_arrow_schema(GENOME_SCORES_SCHEMA)
_OFFSET_MEAN, _OFFSET_SD, _NOISE_SD = -2.2, 0.8, 0.5


def genome_movies(plan: SyntheticPlan, min_ratings: int) -> np.ndarray:
    """Indices (increasing) of the movies whose expected rating count R·w_i ≥ ``min_ratings``."""
    return np.flatnonzero(plan.ratings * plan.movie_probs >= min_ratings).astype(np.int64)


def genome_tag_names(tags: int) -> list[str]:
    """T distinct tag names: the generator's tag vocabulary, then "tag N" past its end."""
    vocab = list(dict.fromkeys(t.lower() for t in tag_vocabulary()))
    return vocab[:tags] + [f"tag {n}" for n in range(len(vocab) + 1, tags + 1)]


def genome_tags_table(tags: int):
    """genome-tags.csv as pandas (tagId 1..``tags``, tag)."""
    import pandas as pd

    return pd.DataFrame({TAG_ID: np.arange(1, tags + 1, dtype=np.int64), TAG: genome_tag_names(tags)})


def _tag_parameters(seed: int, tags: int, rank: int) -> tuple[np.ndarray, np.ndarray]:
    gen = rng(seed, "generate", "genome", "tags")
    return gen.normal(_OFFSET_MEAN, _OFFSET_SD, tags), gen.normal(size=(tags, rank))


def genome_chunk(
    plan: SyntheticPlan, chunk: int, *, seed: int, tags: int, min_ratings: int, per_chunk: int
) -> pa.RecordBatch:
    """The genome scores of the ``chunk``-th run of ``per_chunk`` genome movies
    (movie_id, tag_id, relevance), sorted by movie and tag. Seeded by
    ``derive_seed(seed, "generate", "genome", chunk)``."""
    movies = genome_movies(plan, min_ratings)[chunk * per_chunk : (chunk + 1) * per_chunk]
    offset, loading = _tag_parameters(seed, tags, plan.movie_factors.shape[1])
    gen = np.random.default_rng(derive_seed(seed, "generate", "genome", chunk))
    z = offset[None, :] + plan.movie_factors[movies] @ loading.T / plan.factor_scale
    z += gen.normal(0.0, _NOISE_SD, z.shape)
    relevance = np.round(1.0 / (1.0 + np.exp(-z)), 5)
    return pa.RecordBatch.from_arrays(
        [pa.array(np.repeat(plan.movie_ids[movies], tags)),
         pa.array(np.tile(np.arange(1, tags + 1, dtype=np.int64), movies.size)),
         pa.array(relevance.ravel())],
        schema=_SCORES_ARROW,
    )


def genome_frame(
    spark: SparkSession, plan: SyntheticPlan | Broadcast, *, seed: int, tags: int,
    min_ratings: int, chunk_rows: int, partitions: int,
) -> DataFrame:
    """Lazily generated genome scores (movie_id, tag_id, relevance): T rows per genome movie,
    in chunks of about ``chunk_rows`` rows. No action."""
    bc = broadcast_plan(spark, plan)
    n_movies = genome_movies(bc.value, min_ratings).size if tags else 0
    per_chunk = max(1, chunk_rows // max(tags, 1))
    make = functools.partial(genome_chunk, tags=tags, min_ratings=min_ratings, per_chunk=per_chunk)
    return chunk_frame(spark, bc, -(-n_movies // per_chunk), make=make, schema=GENOME_SCORES_SCHEMA,
                       seed=seed, partitions=partitions)
