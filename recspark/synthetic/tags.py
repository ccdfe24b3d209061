"""tags.csv of the synthetic data set: who tags, how much, which movies and which words.

``tagging_users``·U users, chosen without replacement with probability ∝ n_u (heavy raters
tag more often), apply about ``tags`` tags; the count per tagging user is heavy-tailed
(:func:`~recspark.synthetic.sampling.user_rating_counts`, exponent 0.9, at least 1, at
most max(2·tags/T, 5% of tags)). Each tag application picks a movie by popularity w and a
word Zipf over a fixed vocabulary, P(word v) ∝ (v + 2)^(-1.1): MovieLens' common tags first,
then lower-case "adjective noun" pairs as a long tail. Duplicate (user, movie, tag) triples
are dropped, so the count is approximate. Times are uniform in the user's activity window.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.config import GenerateConfig
from recspark.schema import TAGS_SCHEMA
from recspark.seeds import derive_seed, rng
from recspark.synthetic.chunks import broadcast_plan, chunk_bounds, chunk_frame
from recspark.synthetic.movies import ADJECTIVES, NOUNS
from recspark.synthetic.sampling import user_rating_counts

if TYPE_CHECKING:
    from recspark.synthetic.plan import SyntheticPlan

_TAG_BASE = (
    "atmospheric|funny|twist ending|thought-provoking|visually appealing|dark comedy|sci-fi|"
    "based on a book|quirky|Oscar (Best Picture)|surreal|cult film|classic|mindfuck|"
    "psychology|philosophy|dystopia|social commentary|great soundtrack|stylized|violence|"
    "time travel|space|BD-R|In Netflix queue|superhero|comedy|animation|action|romance|"
    "nonlinear|satire|suspense|hilarious|beautiful|cinematography|predictable|boring|"
    "overrated|underrated|Disney|Pixar|World War II|true story|musical|remake|"
    "funny, but sad|bittersweet|black and white|ending|\"so bad it's good\"|Criterion|"
    "family|friendship|revenge|heist|zombies|vampires|aliens|robots"
).split("|")
_TAG_VOCAB_EXPONENT = 1.1
_TAG_ACTIVITY_EXPONENT = 0.9
_TAGS_ARROW = to_arrow_schema(TAGS_SCHEMA)


class TagPlan(NamedTuple):
    """The driver-side part of the plan for tags (fields of :class:`SyntheticPlan`)."""

    taggers: np.ndarray  # (T,) int64 user indices of tagging users, increasing
    tag_counts: np.ndarray  # (T,) int64, planned tags per tagging user
    tag_bounds: np.ndarray  # tagger index bounds of the tag chunks
    tag_vocab: tuple[str, ...]
    tag_probs: np.ndarray  # (V,) float64


def tag_vocabulary() -> tuple[str, ...]:
    """The base tags, then lower-case "adjective noun" pairs as a long tail."""
    pairs = [f"{a.lower()} {n.lower()}" for n in NOUNS for a in ADJECTIVES]
    return tuple(_TAG_BASE) + tuple(pairs)


def plan_tags(cfg: GenerateConfig, user_counts: np.ndarray, *, seed: int) -> TagPlan:
    """Choose the tagging users and their tag counts (see the module docstring), seeded by
    ``rng(seed, "generate", "taggers")``; ``user_counts`` are the users' n_u."""
    users = user_counts.size
    tg = rng(seed, "generate", "taggers")
    n_taggers = min(int(round(cfg.tagging_users * users)), cfg.tags, users)
    if n_taggers > 0:
        p = user_counts / user_counts.sum()
        taggers = np.sort(tg.choice(users, size=n_taggers, replace=False, p=p)).astype(np.int64)
        tag_cap = max(math.ceil(2 * cfg.tags / n_taggers), math.ceil(0.05 * cfg.tags))
        tag_counts = user_rating_counts(
            users=n_taggers, total=cfg.tags, minimum=1, maximum=min(tag_cap, cfg.tags),
            exponent=_TAG_ACTIVITY_EXPONENT, rng=tg,
        )
        bounds = chunk_bounds(tag_counts, cfg.chunk_ratings)
    else:
        taggers, tag_counts = np.empty(0, np.int64), np.empty(0, np.int64)
        bounds = np.zeros(1, np.int64)
    vocab = tag_vocabulary()
    tag_w = (np.arange(len(vocab)) + 2.0) ** (-_TAG_VOCAB_EXPONENT)
    return TagPlan(taggers, tag_counts, bounds, vocab, tag_w / tag_w.sum())


def tags_chunk(plan: SyntheticPlan, chunk: int, *, seed: int) -> pa.RecordBatch:
    """The tags of chunk ``chunk``'s tagging users (user_id, movie_id, tag, timestamp).

    Movies by popularity, tags Zipf over the vocabulary, duplicates dropped; sorted by user,
    movie, tag rank. Seeded by ``derive_seed(seed, "generate", "tags", chunk)``.
    """
    lo, hi = int(plan.tag_bounds[chunk]), int(plan.tag_bounds[chunk + 1])
    gen = np.random.default_rng(derive_seed(seed, "generate", "tags", chunk))
    m, v = plan.movies, len(plan.tag_vocab)
    owner = np.repeat(np.arange(hi - lo, dtype=np.int64), plan.tag_counts[lo:hi])
    movie_cdf, tag_cdf = np.cumsum(plan.movie_probs), np.cumsum(plan.tag_probs)
    item = np.minimum(np.searchsorted(movie_cdf, gen.random(owner.size) * movie_cdf[-1], side="right"), m - 1)
    tag = np.minimum(np.searchsorted(tag_cdf, gen.random(owner.size) * tag_cdf[-1], side="right"), v - 1)
    key = np.unique((owner * m + item) * v + tag)  # < (chunk users)·M·V, far below 2^63
    owner, item, tag = key // (m * v), (key // v) % m, key % v
    u = plan.taggers[lo + owner]
    ts = plan.event_times(u, gen)
    words = pc.take(pa.array(plan.tag_vocab, type=pa.string()), pa.array(tag))
    return pa.RecordBatch.from_arrays(
        [pa.array(u + 1), pa.array(plan.movie_ids[item]), words, pa.array(ts)], schema=_TAGS_ARROW
    )


def tags_frame(
    spark: SparkSession, plan: SyntheticPlan | Broadcast, *, seed: int, partitions: int
) -> DataFrame:
    """Lazily generated tags (user_id, movie_id, tag, timestamp), about Σ tag_counts rows,
    sorted by user, movie, tag rank. ``plan`` may be an existing broadcast. No action."""
    bc = broadcast_plan(spark, plan)
    n_chunks = len(bc.value.tag_bounds) - 1 if bc.value.taggers.size else 0
    return chunk_frame(spark, bc, n_chunks, make=tags_chunk, schema=TAGS_SCHEMA, seed=seed,
                       partitions=partitions)
