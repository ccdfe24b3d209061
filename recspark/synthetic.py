"""Synthetic MovieLens data at any scale (ml-32m by default), generated in parallel in Spark.

MovieLens-32M cannot be downloaded everywhere, so scale is tested on data drawn from a
planted model and written in the ml-32m CSV layout: ``ratings.csv``
(``userId,movieId,rating,timestamp``), ``movies.csv`` (``movieId,title,genres``),
``tags.csv`` (``userId,movieId,tag,timestamp``) and ``links.csv`` (``movieId,imdbId,tmdbId``),
plus the planted parameters in ``_truth/`` so tests can measure what a model recovers.

The model, with U users, M movies, R ratings and rank k:

* **Activity.** n_u = m + e_u with m = ``min_user_ratings``. The excess follows a Lomax
  (Pareto II) tail P(e > x) = (1 + x/s)^(-α), α = ``user_activity_exponent``, read at
  stratified quantiles (k + V_k)/U in random user order, capped at ``max_user_share``·M,
  with the scale s solved so that Σ n_u = R exactly (largest-remainder rounding).
* **Popularity.** The movie of popularity rank r has probability
  w_r ∝ (r + c·M)^(-β) (Zipf–Mandelbrot; β = ``movie_popularity_exponent``,
  c = ``movie_popularity_offset``); ranks are a random permutation of the movies. Movie ids
  grow by gaps 1 + Poisson(λ_j), λ_j rising along the catalogue so the largest id is about
  ``movie_id_span``·M (MovieLens ids have gaps, denser among old ids).
* **Choice.** User u rates n_u distinct movies: a *successive sample* from w (draw by w,
  skip repeats, stop at n_u). Two exact samplers of that one law are used: for most users,
  draws with replacement through the CDF (``searchsorted``) with enough oversampling that
  the first n_u distinct draws are usually there (the expected number of distinct movies
  after t draws is Σ_i 1 − (1 − w_i)^t); for heavy users, and the rare user the draws fell
  short for, Gumbel top-k: the n_u largest log w_i + G_i, G_i ~ Gumbel(0, 1) (Efraimidis–
  Spirakis), O(M) per user. No step costs O(U·M).
* **Rating.** x_ui = μ + b_u + b_i + p_u·q_i + ε with ε ~ N(0, ``noise``²) and biases of
  mean 0, standard deviations ``user_bias_sd`` and ``movie_bias_sd``, skewed left (negated
  Gamma(2), see :func:`skewed_bias`) for MovieLens' long tail of low ratings; p_u, q_i ~ N(0, f² I_k) with k·f⁴ = ``interaction_sd``², so
  sd(p_u·q_i) = ``interaction_sd``. With ``segments`` = K > 0, user u of segment s(u) has
  p_u = c_s(u) + N(0, (τf)² I_k), τ = ``segment_noise``, the K centres picked far apart
  (farthest-point choice among Gaussian candidates of scale f). x is rounded to the nearest
  whole star in [1, 5], or, with the user's propensity h_u ~ Beta (mean
  ``half_star_share``) and only from 2003-02-18 when MovieLens introduced half stars, to the
  nearest half star in [0.5, 5]. Whole stars are therefore the most common, 4.0 and 3.0
  first, as in MovieLens.
* **Time.** User u is active over [t_u, t_u + d_u]: t_u's year drawn from MovieLens-like
  yearly sign-up weights (1995 to 2023), log10 d_u ~ N(2.9 + 1.5 log10(n_u/m), 1.3) seconds
  (a 20-rating user rates in one sitting, a heavy one over years); each rating time is
  uniform in the window, in whole seconds since the epoch.
* **Tags.** ``tagging_users``·U users (chosen with probability ∝ n_u) apply about ``tags``
  tags, heavy-tailed per user; movies by w, tag words Zipf over a fixed vocabulary; duplicate
  (user, movie, tag) triples are dropped, so the count is approximate.

Parallelism: the per-user and per-movie parameters (O(U·k + M·k) numbers) are computed on
the driver and broadcast. Users are cut into contiguous chunks of about ``chunk_ratings``
ratings; a DataFrame of chunk ids feeds ``mapInArrow``, and each chunk is generated with
NumPy from its own seed ``derive_seed(seed, "generate", chunk)``, so the output does not
depend on how Spark schedules tasks. Ratings come out sorted by (userId, movieId), like
MovieLens.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.config import Config, GenerateConfig, expand, to_toml
from recspark.errors import ConfigError
from recspark.io.storage import staged, write_text
from recspark.log import stage
from recspark.schema import (
    BIAS,
    FACTORS,
    GENRES,
    IMDB_ID,
    LINKS_SCHEMA,
    ML_LINKS_HEADER,
    ML_MOVIES_HEADER,
    ML_RATINGS_HEADER,
    ML_TAGS_HEADER,
    MOVIE_ID,
    MOVIES_SCHEMA,
    N_RATINGS,
    POPULARITY,
    RATINGS_SCHEMA,
    SEGMENT,
    TAGS_SCHEMA,
    TITLE,
    TMDB_ID,
    USER_ID,
)
from recspark.seeds import derive_seed, rng

_logger = logging.getLogger(__name__)


def _epoch(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=timezone.utc).timestamp())


#: First and last rating time of the synthetic data (ml-32m spans 1995-01-09 to 2023-10-13).
FIRST_TIMESTAMP = _epoch(1995, 1, 9)
LAST_TIMESTAMP = _epoch(2023, 10, 13)
#: MovieLens introduced half stars in February 2003: earlier ratings are whole stars.
HALF_STARS_FROM = _epoch(2003, 2, 18)

#: Relative sign-up weight of each year 1995..2023 (peaks around ml-1m's 2000 and 2015-17).
_SIGNUP_YEAR_WEIGHTS = np.array(
    [0.05, 3.0, 1.5, 0.6, 1.5, 3.0, 1.0, 0.8, 0.8, 0.9, 1.3, 1.0, 0.9, 0.9, 0.7,
     0.6, 0.6, 0.6, 0.6, 0.7, 1.6, 2.0, 1.8, 1.5, 1.5, 1.4, 1.1, 0.9, 0.6]
)  # fmt: skip
_FIRST_YEAR = 1995

#: The MovieLens genre list (ml-32m), with roughly the share of movies carrying each genre.
GENRE_WEIGHTS: dict[str, float] = {
    "Drama": 0.40, "Comedy": 0.30, "Thriller": 0.13, "Romance": 0.12, "Action": 0.12,
    "Horror": 0.10, "Documentary": 0.09, "Crime": 0.09, "Adventure": 0.07, "Sci-Fi": 0.06,
    "Animation": 0.05, "Children": 0.05, "Mystery": 0.05, "Fantasy": 0.05, "War": 0.03,
    "Western": 0.02, "Musical": 0.02, "Film-Noir": 0.005, "IMAX": 0.005,
}  # fmt: skip
NO_GENRES = "(no genres listed)"

_ADJECTIVES = (
    "Dark Silent Last Lost Golden Broken Wild Little Secret Eternal Hidden Crimson Frozen "
    "Burning Lonely Electric Savage Sweet Bitter Midnight Final Red Blue Black White Iron "
    "Velvet Endless Forgotten Perfect Strange Quiet Dangerous Beautiful Invisible Distant "
    "American Great Big Young Holy Cold Hollow Northern Deadly Happy Naked Magnificent"
).split()
_NOUNS = (
    "Night Road River City Heart Dream Summer Winter Game House Kingdom Shadow Storm Island "
    "Garden Mirror Stranger Journey Promise Empire Machine Planet Ghost Wolf Station Season "
    "Letter Circle Horizon Harbor Frontier Detective Family Wedding Escape Signal Voyage "
    "Legacy Rain Fire Sister Brother Hunter Mountain Desert Ocean Train Angel Soldier Queen"
).split()
#: Non-English titles (with the article MovieLens moves to the end) and accented letters.
_FOREIGN = (
    ("Cité des enfants perdus", "La"), ("Fabuleux destin", "Le"), ("Große Stille", "Die"),
    ("Niños del río", "Los"), ("Città aperta", "La"), ("Ville lumière", "La"),
    ("Kärlek och död", ""), ("Tōkyō monogatari", ""), ("Mädchen in Uniform", ""),
    ("Último tango", "El"), ("Sommarnattens leende", ""), ("Hôtel du Nord", ""),
)  # fmt: skip
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
#: Use Gumbel top-k when the expected number of draws exceeds max(this share of M, floor).
_EXACT_SHARE = 0.125
_EXACT_FLOOR = 4096
_BIAS_GAMMA_SHAPE = 2.0
_OVERSAMPLE = 1.1  # draws per expected draw, plus _OVERSAMPLE_EXTRA, before falling back
_OVERSAMPLE_EXTRA = 4


# =========================================================================== the plan


@dataclass(frozen=True)
class SyntheticPlan:
    """Everything the tasks need: per-user and per-movie arrays, broadcast once.

    Users are indexed 0..U-1 (``userId`` = index + 1), movies 0..M-1 (``movie_ids`` maps an
    index to its id). Sizes: O(U·k + M·k + tagging users) numbers, ~30 MB at ml-32m scale.
    """

    global_mean: float
    noise: float
    factor_scale: float
    user_counts: np.ndarray  # (U,) int64, n_u
    user_start: np.ndarray  # (U,) int64, t_u in seconds since the epoch
    user_span: np.ndarray  # (U,) int64, d_u in seconds
    user_half: np.ndarray  # (U,) float64, h_u
    user_bias: np.ndarray  # (U,) float64, b_u
    user_factors: np.ndarray  # (U, k) float64, p_u
    user_segment: np.ndarray  # (U,) int64, s(u), -1 when segments are off
    centres: np.ndarray  # (K, k) float64
    movie_ids: np.ndarray  # (M,) int64, increasing with gaps
    movie_probs: np.ndarray  # (M,) float64, w_i, sums to 1
    movie_bias: np.ndarray  # (M,) float64, b_i
    movie_factors: np.ndarray  # (M, k) float64, q_i
    draw_distinct: np.ndarray  # expected distinct movies after draw_counts draws (increasing)
    draw_counts: np.ndarray
    exact_above: float  # expected draws above which a user gets Gumbel top-k
    chunk_bounds: np.ndarray  # (C+1,) user index bounds of the rating chunks
    taggers: np.ndarray  # (T,) user indices of tagging users, increasing
    tag_counts: np.ndarray  # (T,) int64, planned tags per tagging user
    tag_bounds: np.ndarray  # tagger index bounds of the tag chunks
    tag_vocab: tuple[str, ...]
    tag_probs: np.ndarray  # (V,) float64

    @property
    def users(self) -> int:
        return int(self.user_counts.size)

    @property
    def movies(self) -> int:
        return int(self.movie_ids.size)

    @property
    def ratings(self) -> int:
        return int(self.user_counts.sum())


def validate(cfg: GenerateConfig) -> None:
    """Raise :class:`ConfigError` for generator settings that cannot produce a data set."""
    where = "generate"
    if cfg.users < 1 or cfg.movies < 1:
        raise ConfigError(f"{where}.users and {where}.movies must be at least 1, got "
                          f"{cfg.users} and {cfg.movies}")
    if cfg.rank < 1:
        raise ConfigError(f"{where}.rank must be at least 1, got {cfg.rank}")
    if cfg.min_user_ratings < 1:
        raise ConfigError(f"{where}.min_user_ratings must be at least 1, got {cfg.min_user_ratings}")
    cap = user_cap(cfg)
    if cap < cfg.min_user_ratings:
        raise ConfigError(
            f"{where}.max_user_share·movies = {cap} is below {where}.min_user_ratings = "
            f"{cfg.min_user_ratings}: raise generate.movies or generate.max_user_share"
        )
    lo, hi = cfg.users * cfg.min_user_ratings, cfg.users * cap
    if not lo <= cfg.ratings <= hi:
        raise ConfigError(
            f"{where}.ratings = {cfg.ratings} is impossible for {cfg.users} users who rate "
            f"{cfg.min_user_ratings}..{cap} movies each: choose between {lo} and {hi}"
        )
    positive = {
        "user_activity_exponent": cfg.user_activity_exponent,
        "movie_popularity_exponent": cfg.movie_popularity_exponent,
        "partitions": cfg.partitions,
        "chunk_ratings": cfg.chunk_ratings,
    }
    for name, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{where}.{name} must be positive, got {value}")
    non_negative = {
        "movie_popularity_offset": cfg.movie_popularity_offset,
        "user_bias_sd": cfg.user_bias_sd,
        "movie_bias_sd": cfg.movie_bias_sd,
        "interaction_sd": cfg.interaction_sd,
        "noise": cfg.noise,
        "segment_noise": cfg.segment_noise,
        "tags": cfg.tags,
        "segments": cfg.segments,
    }
    for name, value in non_negative.items():
        if not value >= 0:
            raise ConfigError(f"{where}.{name} must be zero or more, got {value}")
    if cfg.segments > cfg.users:
        raise ConfigError(f"{where}.segments = {cfg.segments} exceeds {where}.users = {cfg.users}")
    if cfg.movie_id_span < 1:
        raise ConfigError(f"{where}.movie_id_span must be at least 1 (1 = ids 1..movies), got "
                          f"{cfg.movie_id_span}")
    for name in ("max_user_share", "half_star_share", "tagging_users"):
        value = getattr(cfg, name)
        if not 0 <= value <= 1:
            raise ConfigError(f"{where}.{name} must be between 0 and 1, got {value}")


def user_cap(cfg: GenerateConfig) -> int:
    """The most ratings one user may have: ``max_user_share``·movies, rounded down."""
    return int(math.floor(cfg.max_user_share * cfg.movies))


def user_rating_counts(
    *, users: int, total: int, minimum: int, maximum: int, exponent: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Heavy-tailed per-user counts n_u with minimum ≤ n_u ≤ maximum and Σ n_u = total exactly.

    n_u = minimum + min(s·((1 − q_u)^(−1/α) − 1), maximum − minimum), where q_u are the
    stratified quantiles (j + V_j)/U (V_j uniform) in random order, α = ``exponent`` and s is
    solved by bisection; the fractions are rounded by largest remainder to hit ``total``.
    Returns an int64 array of length ``users``.
    """
    if not users * minimum <= total <= users * maximum:
        raise ConfigError(
            f"cannot give {users} users between {minimum} and {maximum} items each and "
            f"{total} in all: change the totals"
        )
    counts = np.full(users, minimum, dtype=np.int64)
    extra, room = total - users * minimum, maximum - minimum
    if extra == 0 or room == 0:
        return counts
    if extra == users * room:
        return np.full(users, maximum, dtype=np.int64)
    q = (np.arange(users) + rng.random(users)) / users
    shape = np.expm1(-np.log1p(-q) / exponent)
    rng.shuffle(shape)

    def mass(s: float) -> float:
        return float(np.minimum(s * shape, room).sum())

    lo, hi = 0.0, 1.0
    while mass(hi) < extra:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mass(mid) <= extra:
            lo = mid
        else:
            hi = mid
    cont = np.minimum(lo * shape, room)  # Σ cont ≤ extra, within rounding of it
    base = np.floor(cont).astype(np.int64)
    deficit = int(extra - base.sum())
    if deficit > 0:
        frac = np.where(base < room, cont - base, -1.0)
        top = np.argsort(-frac, kind="stable")[:deficit]
        if (frac[top] < 0).any():  # pragma: no cover - cannot happen when total ≤ users·maximum
            raise RuntimeError("user_rating_counts: rounding ran out of room")
        base[top] += 1
    return counts + base


def movie_popularity(
    *, movies: int, exponent: float, offset: float, rng: np.random.Generator
) -> np.ndarray:
    """Probabilities w_i ∝ (r_i + offset·movies)^(−exponent), r_i a random rank permutation."""
    ranks = rng.permutation(movies) + 1.0
    w = (ranks + offset * movies) ** (-exponent)
    return w / w.sum()


def movie_ids(*, movies: int, span: float, rng: np.random.Generator) -> np.ndarray:
    """Increasing movie ids with gaps 1 + Poisson(λ_j), λ_j = 2(span − 1)(j + ½)/movies.

    The mean gap is ``span``, so the largest id is about span·movies; early ids are dense.
    """
    lam = 2.0 * (span - 1.0) * (np.arange(movies) + 0.5) / movies
    return np.cumsum(1 + rng.poisson(lam)).astype(np.int64)


def expected_distinct_table(probs: np.ndarray, *, max_draws: float) -> tuple[np.ndarray, np.ndarray]:
    """(E[distinct], draws) on a geometric grid of draws up to ``max_draws``.

    E[distinct after t draws with replacement] = Σ_i 1 − (1 − w_i)^t; both columns increase,
    so ``np.interp(n, distinct, draws)`` estimates the draws needed for n distinct items.
    """
    draws = np.unique(np.round(np.geomspace(1.0, max(max_draws, 2.0), 256)))
    log_keep = np.log1p(-np.minimum(probs, 1.0 - 1e-12))
    distinct = np.array([-np.expm1(t * log_keep).sum() for t in draws])
    return np.maximum.accumulate(distinct), draws


def sample_distinct(
    *, counts: np.ndarray, probs: np.ndarray, rng: np.random.Generator,
    table: tuple[np.ndarray, np.ndarray] | None = None, exact_above: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each owner j, ``counts[j]`` distinct items drawn by successive sampling from ``probs``.

    Light owners: draws with replacement via the CDF, ~1.1× the expected number needed
    (from ``table``, see :func:`expected_distinct_table`), keeping the first ``counts[j]``
    distinct draws in draw order. Owners whose expected draws exceed ``exact_above`` (default
    max(M/8, 4096)), or whose draws fell short, use Gumbel top-k over all M items instead;
    both give the same law. Returns (owner, item) int64 arrays of length Σ counts, sorted by
    owner then item.
    """
    counts = np.asarray(counts, dtype=np.int64)
    m = probs.size
    if (counts > m).any():
        raise ValueError(f"sample_distinct: an owner wants more than the {m} items there are")
    if exact_above is None:
        exact_above = max(_EXACT_SHARE * m, _EXACT_FLOOR)
    if table is None:
        table = expected_distinct_table(
            probs, max_draws=exact_above if np.isfinite(exact_above) else 1000.0 * m
        )
    distinct, draws = table
    need = np.interp(counts, distinct, draws)
    heavy = (counts > distinct[-1]) | (need > exact_above)
    light = ~heavy & (counts > 0)
    keys: list[np.ndarray] = []
    if light.any():
        owners = np.flatnonzero(light)
        per_owner = np.ceil(need[owners] * _OVERSAMPLE).astype(np.int64) + _OVERSAMPLE_EXTRA
        owner = np.repeat(owners, per_owner)
        cdf = np.cumsum(probs)
        item = np.minimum(np.searchsorted(cdf, rng.random(owner.size) * cdf[-1], side="right"), m - 1)
        uniq, first = np.unique(owner * m + item, return_index=True)
        in_draw_order = uniq[np.argsort(first, kind="stable")]
        own = in_draw_order // m  # non-decreasing: draws are grouped by owner
        rank = np.arange(own.size) - np.searchsorted(own, own, side="left")
        chosen = in_draw_order[rank < counts[own]]
        short = light & (np.bincount(chosen // m, minlength=counts.size) < counts)
        if short.any():
            chosen = chosen[~short[chosen // m]]
            heavy |= short
        keys.append(chosen)
    if heavy.any():
        logp = np.log(np.maximum(probs, np.finfo(float).tiny))
        for j in np.flatnonzero(heavy):
            n = int(counts[j])
            if n == 0:
                continue
            top = np.argpartition(logp + rng.gumbel(size=m), m - n)[m - n:]
            keys.append(j * m + top.astype(np.int64))
    if not keys:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    key = np.sort(np.concatenate(keys))
    return key // m, key % m


def skewed_bias(n: int, sd: float, gen: np.random.Generator) -> np.ndarray:
    """n biases with mean 0, standard deviation ``sd`` and a long left tail:
    b = −sd·(G − a)/√a, G ~ Gamma(a), a = 2 (skewness −√2), like MovieLens' harsh users and
    bad movies."""
    g = gen.gamma(_BIAS_GAMMA_SHAPE, size=n)
    return -sd * (g - _BIAS_GAMMA_SHAPE) / math.sqrt(_BIAS_GAMMA_SHAPE)


def _factor_scale(cfg: GenerateConfig) -> float:
    """f with k·f⁴ = interaction_sd², so p·q of N(0, f²I) vectors has sd interaction_sd."""
    return float((cfg.interaction_sd**2 / cfg.rank) ** 0.25)


def _segment_centres(k: int, rank: int, scale: float, gen: np.random.Generator) -> np.ndarray:
    """K far-apart centres: farthest-point choice among max(50K, 200) N(0, scale²I) candidates."""
    cand = gen.normal(0.0, scale, size=(max(50 * k, 200), rank))
    chosen = [0]
    dist = np.linalg.norm(cand - cand[0], axis=1)
    for _ in range(1, k):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(cand - cand[nxt], axis=1))
    return cand[chosen]


def _chunk_bounds(counts: np.ndarray, per_chunk: int) -> np.ndarray:
    """Bounds b_0 = 0 < … < b_C = len(counts) cutting owners into runs of ~per_chunk items."""
    total = int(counts.sum())
    n_chunks = max(1, math.ceil(total / per_chunk))
    cum = np.cumsum(counts)
    cuts = np.searchsorted(cum, np.arange(1, n_chunks) * (total / n_chunks), side="right")
    return np.unique(np.concatenate([[0], cuts, [counts.size]])).astype(np.int64)


def _user_windows(
    counts: np.ndarray, minimum: int, gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Activity windows (t_u, d_u) in seconds; see the module docstring."""
    users = counts.size
    full = LAST_TIMESTAMP - FIRST_TIMESTAMP
    log_span = gen.normal(2.9 + 1.5 * np.log10(counts / minimum), 1.3)
    span = np.round(10.0 ** np.clip(log_span, 1.5, np.log10(full))).astype(np.int64)
    weights = _SIGNUP_YEAR_WEIGHTS / _SIGNUP_YEAR_WEIGHTS.sum()
    year = _FIRST_YEAR + gen.choice(weights.size, size=users, p=weights)
    year_start = np.array([_epoch(int(y), 1, 1) for y in range(_FIRST_YEAR, _FIRST_YEAR + weights.size + 1)])
    lo, hi = year_start[year - _FIRST_YEAR], year_start[year - _FIRST_YEAR + 1]
    start = lo + np.floor(gen.random(users) * (hi - lo)).astype(np.int64)
    start = np.clip(start, FIRST_TIMESTAMP, LAST_TIMESTAMP - span)
    return start, span


def plan_synthetic(cfg: GenerateConfig, *, seed: int) -> SyntheticPlan:
    """Draw every per-user and per-movie parameter on the driver (see the module docstring).

    Cost O(U·k + M·k) memory and time, plus O(M) per point of the 256-point draw table; no
    rating is drawn here. Each part has its own derived seed.
    """
    validate(cfg)
    users, movies, k = cfg.users, cfg.movies, cfg.rank
    counts = user_rating_counts(
        users=users, total=cfg.ratings, minimum=cfg.min_user_ratings, maximum=user_cap(cfg),
        exponent=cfg.user_activity_exponent, rng=rng(seed, "generate", "user_counts"),
    )
    start, span = _user_windows(counts, cfg.min_user_ratings, rng(seed, "generate", "user_windows"))
    ug = rng(seed, "generate", "user_params")
    f = _factor_scale(cfg)
    user_bias = skewed_bias(users, cfg.user_bias_sd, ug)
    share = cfg.half_star_share
    if 0.0 < share < 1.0:
        user_half = ug.beta(1.5 * share, 1.5 * (1.0 - share), size=users)
    else:
        user_half = np.full(users, share)
    if cfg.segments > 0:
        centres = _segment_centres(cfg.segments, k, f, rng(seed, "generate", "segment_centres"))
        segment = ug.integers(cfg.segments, size=users).astype(np.int64)
        factors = centres[segment] + ug.normal(0.0, cfg.segment_noise * f, size=(users, k))
    else:
        centres = np.empty((0, k))
        segment = np.full(users, -1, dtype=np.int64)
        factors = ug.normal(0.0, f, size=(users, k))

    mg = rng(seed, "generate", "movie_params")
    probs = movie_popularity(
        movies=movies, exponent=cfg.movie_popularity_exponent,
        offset=cfg.movie_popularity_offset, rng=mg,
    )
    ids = movie_ids(movies=movies, span=cfg.movie_id_span, rng=mg)
    movie_bias = skewed_bias(movies, cfg.movie_bias_sd, mg)
    movie_factors = mg.normal(0.0, f, size=(movies, k))
    exact_above = max(_EXACT_SHARE * movies, _EXACT_FLOOR)
    distinct, draws = expected_distinct_table(probs, max_draws=exact_above)

    tg = rng(seed, "generate", "taggers")
    n_taggers = min(int(round(cfg.tagging_users * users)), cfg.tags, users)
    if n_taggers > 0:
        taggers = np.sort(tg.choice(users, size=n_taggers, replace=False, p=counts / counts.sum()))
        tag_cap = max(math.ceil(2 * cfg.tags / n_taggers), math.ceil(0.05 * cfg.tags))
        tag_counts = user_rating_counts(
            users=n_taggers, total=cfg.tags, minimum=1, maximum=min(tag_cap, cfg.tags),
            exponent=_TAG_ACTIVITY_EXPONENT, rng=tg,
        )
    else:
        taggers, tag_counts = np.empty(0, np.int64), np.empty(0, np.int64)
    vocab = _tag_vocabulary()
    tag_w = (np.arange(len(vocab)) + 2.0) ** (-_TAG_VOCAB_EXPONENT)

    return SyntheticPlan(
        global_mean=cfg.global_mean, noise=cfg.noise, factor_scale=f,
        user_counts=counts, user_start=start, user_span=span, user_half=user_half,
        user_bias=user_bias, user_factors=factors, user_segment=segment, centres=centres,
        movie_ids=ids, movie_probs=probs, movie_bias=movie_bias, movie_factors=movie_factors,
        draw_distinct=distinct, draw_counts=draws, exact_above=exact_above,
        chunk_bounds=_chunk_bounds(counts, cfg.chunk_ratings),
        taggers=taggers.astype(np.int64), tag_counts=tag_counts,
        tag_bounds=_chunk_bounds(tag_counts, cfg.chunk_ratings) if n_taggers else np.zeros(1, np.int64),
        tag_vocab=vocab, tag_probs=tag_w / tag_w.sum(),
    )


def _tag_vocabulary() -> tuple[str, ...]:
    """The base tags, then lower-case "adjective noun" pairs as a long tail."""
    pairs = [f"{a.lower()} {n.lower()}" for n in _NOUNS for a in _ADJECTIVES]
    return tuple(_TAG_BASE) + tuple(pairs)


# =========================================================================== per-chunk generation


def round_rating(x: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Nearest half star in [0.5, 5] where ``half``, else nearest whole star in [1, 5]."""
    whole = np.clip(np.floor(x + 0.5), 1.0, 5.0)
    halves = np.clip(np.floor(2.0 * x + 0.5) / 2.0, 0.5, 5.0)
    return np.where(half, halves, whole)


_RATINGS_ARROW = to_arrow_schema(RATINGS_SCHEMA)
_TAGS_ARROW = to_arrow_schema(TAGS_SCHEMA)


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
    ts = plan.user_start[u] + np.floor(gen.random(u.size) * (plan.user_span[u] + 1)).astype(np.int64)
    half = (gen.random(u.size) < plan.user_half[u]) & (ts >= HALF_STARS_FROM)
    return pa.RecordBatch.from_arrays(
        [pa.array(u + 1), pa.array(plan.movie_ids[item]), pa.array(round_rating(x, half)), pa.array(ts)],
        schema=_RATINGS_ARROW,
    )


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
    ts = plan.user_start[u] + np.floor(gen.random(u.size) * (plan.user_span[u] + 1)).astype(np.int64)
    words = pc.take(pa.array(plan.tag_vocab, type=pa.string()), pa.array(tag))
    return pa.RecordBatch.from_arrays(
        [pa.array(u + 1), pa.array(plan.movie_ids[item]), words, pa.array(ts)], schema=_TAGS_ARROW
    )


def _chunk_task(
    batches: Iterator[pa.RecordBatch], *, plan: Broadcast, seed: int, kind: str
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: one output batch per chunk id in the input."""
    p: SyntheticPlan = plan.value
    make = ratings_chunk if kind == "ratings" else tags_chunk
    for batch in batches:
        for chunk in batch.column(0).to_numpy():
            yield make(p, int(chunk), seed=seed)


def _chunk_frame(
    spark: SparkSession, plan: Broadcast, n_chunks: int, *, seed: int, partitions: int, kind: str
) -> DataFrame:
    schema = RATINGS_SCHEMA if kind == "ratings" else TAGS_SCHEMA
    if n_chunks == 0:
        return spark.createDataFrame([], schema)
    # range() gives each partition a contiguous run of chunk ids, so output stays sorted.
    chunks = spark.range(0, n_chunks, 1, numPartitions=max(1, min(partitions, n_chunks)))
    task = functools.partial(_chunk_task, plan=plan, seed=seed, kind=kind)
    return chunks.mapInArrow(task, schema)


def ratings_frame(
    spark: SparkSession, plan: SyntheticPlan | Broadcast, *, seed: int, partitions: int
) -> DataFrame:
    """Lazily generated ratings (user_id, movie_id, rating, timestamp), Σ n_u rows.

    ``plan`` may be an existing broadcast of the plan. No action is run.
    """
    bc = plan if isinstance(plan, Broadcast) else spark.sparkContext.broadcast(plan)
    n_chunks = len(bc.value.chunk_bounds) - 1
    return _chunk_frame(spark, bc, n_chunks, seed=seed, partitions=partitions, kind="ratings")


def tags_frame(
    spark: SparkSession, plan: SyntheticPlan | Broadcast, *, seed: int, partitions: int
) -> DataFrame:
    """Lazily generated tags (user_id, movie_id, tag, timestamp), about Σ tag_counts rows."""
    bc = plan if isinstance(plan, Broadcast) else spark.sparkContext.broadcast(plan)
    n_chunks = max(len(bc.value.tag_bounds) - 1, 0) if bc.value.taggers.size else 0
    return _chunk_frame(spark, bc, n_chunks, seed=seed, partitions=partitions, kind="tags")


# =========================================================================== movies, links, truth


def movie_table(plan: SyntheticPlan, *, seed: int) -> pa.Table:
    """movies.csv content (movie_id, title, genres), built on the driver (one row per movie).

    Titles follow MovieLens conventions: "Name (Year)", moved articles ("Name, The (Year)"),
    foreign titles with an English alias, subtitles, sequels, a few quoted names and a few
    without a year. Genres: 1 to 4 of the MovieLens genres, alphabetical and pipe-separated,
    or "(no genres listed)".
    """
    gen = rng(seed, "generate", "movie_text")
    m = plan.movies
    year = np.clip(2024 - np.floor(gen.exponential(22.0, size=m)), 1874, 2023).astype(int)
    adj, noun = np.array(_ADJECTIVES), np.array(_NOUNS)
    a1, n1 = adj[gen.integers(adj.size, size=m)], noun[gen.integers(noun.size, size=m)]
    a2, n2 = adj[gen.integers(adj.size, size=m)], noun[gen.integers(noun.size, size=m)]
    foreign = gen.integers(len(_FOREIGN), size=m)
    kind = gen.choice(8, size=m, p=[0.57, 0.12, 0.08, 0.05, 0.08, 0.04, 0.01, 0.05])
    sequel = gen.integers(2, 5, size=m)
    titles = []
    for j in range(m):  # one string per movie on the driver: small, not per rating
        base = f"{a1[j]} {n1[j]}"
        k = kind[j]
        if k == 0:
            t = f"{base} ({year[j]})"
        elif k == 1:
            t = f"{base}, The ({year[j]})"
        elif k == 2:
            t = f"{base}: {a2[j]} {n2[j]} ({year[j]})"
        elif k == 3:
            t = f"{base} {sequel[j]} ({year[j]})"
        elif k == 4:
            name, article = _FOREIGN[foreign[j]]
            local = f"{name}, {article}" if article else name
            t = f"{local} ({base}) ({year[j]})"
        elif k == 5:
            t = f"{n1[j]}, {n2[j]} and Me ({year[j]})"
        elif k == 6:
            t = f'"{base}" {n2[j]} ({year[j]})'
        else:
            t = base
        titles.append(t)

    names = np.array(sorted(GENRE_WEIGHTS))
    logw = np.log(np.array([GENRE_WEIGHTS[g] for g in names]))
    n_genres = gen.choice(4, size=m, p=[0.45, 0.33, 0.16, 0.06]) + 1
    keys = logw + gen.gumbel(size=(m, names.size))  # Gumbel top-k: weighted, no repeats
    threshold = -np.sort(-keys, axis=1)[np.arange(m), n_genres - 1]
    chosen = keys >= threshold[:, None]
    no_genre = gen.random(m) < 0.05
    genres = [NO_GENRES if no_genre[j] else "|".join(names[chosen[j]]) for j in range(m)]
    return pa.table(
        {MOVIE_ID: pa.array(plan.movie_ids), TITLE: pa.array(titles), GENRES: pa.array(genres)},
        schema=to_arrow_schema(MOVIES_SCHEMA),
    )


def link_table(plan: SyntheticPlan, *, seed: int) -> pa.Table:
    """links.csv content (movie_id, imdb_id, tmdb_id): distinct ids increasing with movie id;
    imdb ids zero-padded to 7 digits, about 0.1% of tmdb ids missing."""
    gen = rng(seed, "generate", "links")
    m = plan.movies
    imdb = np.sort(gen.choice(max(10 * m, 10_000_000), size=m, replace=False) + 1)
    tmdb = np.sort(gen.choice(max(10 * m, 1_300_000), size=m, replace=False) + 1)
    imdb_text = np.char.zfill(imdb.astype(str), 7)
    missing = gen.random(m) < 0.001
    return pa.table(
        {
            MOVIE_ID: pa.array(plan.movie_ids),
            IMDB_ID: pa.array(imdb_text.tolist(), type=pa.string()),
            TMDB_ID: pa.array(tmdb, mask=missing),
        },
        schema=to_arrow_schema(LINKS_SCHEMA),
    )


def _factors_array(values: np.ndarray) -> pa.Array:
    rows, k = values.shape
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * k)
    return pa.ListArray.from_arrays(offsets, pa.array(values.ravel()))


#: Planted user parameters: user_id, n_ratings, bias, factors, segment (null when off).
TRUTH_USERS_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(N_RATINGS, T.LongType(), False),
        T.StructField(BIAS, T.DoubleType(), False),
        T.StructField(FACTORS, T.ArrayType(T.DoubleType(), False), False),
        T.StructField(SEGMENT, T.IntegerType(), True),
    ]
)
#: Planted movie parameters: movie_id, popularity (w_i), bias, factors.
TRUTH_MOVIES_SCHEMA = T.StructType(
    [
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(POPULARITY, T.DoubleType(), False),
        T.StructField(BIAS, T.DoubleType(), False),
        T.StructField(FACTORS, T.ArrayType(T.DoubleType(), False), False),
    ]
)


def truth_tables(plan: SyntheticPlan) -> tuple[pa.Table, pa.Table]:
    """The planted (users, movies) parameter tables, columns as in TRUTH_*_SCHEMA."""
    seg = plan.user_segment
    users = pa.table(
        {
            USER_ID: pa.array(np.arange(1, plan.users + 1, dtype=np.int64)),
            N_RATINGS: pa.array(plan.user_counts),
            BIAS: pa.array(plan.user_bias),
            FACTORS: _factors_array(plan.user_factors),
            SEGMENT: pa.array(seg.astype(np.int32), mask=seg < 0),
        },
        schema=to_arrow_schema(TRUTH_USERS_SCHEMA),
    )
    movies = pa.table(
        {
            MOVIE_ID: pa.array(plan.movie_ids),
            POPULARITY: pa.array(plan.movie_probs),
            BIAS: pa.array(plan.movie_bias),
            FACTORS: _factors_array(plan.movie_factors),
        },
        schema=to_arrow_schema(TRUTH_MOVIES_SCHEMA),
    )
    return users, movies


def truth_params(plan: SyntheticPlan, cfg: GenerateConfig, *, seed: int) -> dict:
    """Scalar planted parameters and segment centres (``_truth/params.json``)."""
    return {
        "seed": seed,
        "users": plan.users,
        "movies": plan.movies,
        "ratings": plan.ratings,
        "tags_planned": int(plan.tag_counts.sum()),
        "global_mean": plan.global_mean,
        "noise": plan.noise,
        "rank": cfg.rank,
        "factor_scale": plan.factor_scale,
        "segments": cfg.segments,
        "segment_centres": plan.centres.tolist(),
        "first_timestamp": FIRST_TIMESTAMP,
        "last_timestamp": LAST_TIMESTAMP,
        "half_stars_from": HALF_STARS_FROM,
    }


# =========================================================================== writing


@dataclass(frozen=True)
class SyntheticSummary:
    """What :func:`generate_movielens` wrote."""

    output: str
    users: int
    movies: int
    ratings: int
    tags_planned: int
    seconds: float
    single_files: bool

    def rate(self) -> float:
        """Ratings written per second of wall time (whole run)."""
        return self.ratings / self.seconds if self.seconds > 0 else float("nan")


def _local_path(spark: SparkSession, path: str) -> Path | None:
    """The local file-system path of ``path``, or None when it lives on another file system."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if str(fs.getScheme()) != "file":
        return None
    return Path(str(fs.makeQualified(hpath).toUri().getPath()))


def concat_parts(parts_dir: Path, target: Path, header: Sequence[str]) -> int:
    """Stream Spark's ``part-*`` files (in name, i.e. partition, order) into one CSV file
    with one header line; return the bytes written. Memory use is one 16 MB buffer."""
    parts = sorted(p for p in parts_dir.iterdir() if p.name.startswith("part-"))
    with open(target, "wb") as out:
        out.write((",".join(header) + "\n").encode("utf-8"))
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
        return out.tell()


def write_csv(
    spark: SparkSession, df: DataFrame, *, folder: str, name: str, header: Sequence[str]
) -> None:
    """Write ``df`` as ``<folder>/<name>`` in the MovieLens CSV dialect (RFC 4180 quoting).

    On the local file system the result is one file (parts concatenated, header once); on
    others (HDFS, object stores) ``<name>`` is a folder of part files each with the header,
    which Spark's CSV reader reads as one data set.
    """
    out = df.toDF(*header).write.option("escape", '"').option("quote", '"')
    local = _local_path(spark, folder)
    if local is None:
        out.option("header", True).csv(f"{folder}/{name}")
        return
    parts = f"{folder}/_parts/{name}"
    out.option("header", False).csv(parts)
    local_parts = _local_path(spark, parts)
    concat_parts(local_parts, local / name, header)
    shutil.rmtree(local_parts)
    if not any((local / "_parts").iterdir()):
        (local / "_parts").rmdir()


def generate_movielens(
    spark: SparkSession, *, cfg: Config, output: str | None = None
) -> SyntheticSummary:
    """Generate the data set described by ``cfg.generate`` and publish it at ``output``
    (default ``cfg.generate.output_dir``) atomically.

    Writes ratings.csv, movies.csv, tags.csv, links.csv and ``_truth/`` (users and movies
    Parquet of the planted parameters, params.json, config.toml). Actions: one Spark job per
    file; nothing but the driver-side plan is held in driver memory.
    """
    gcfg = cfg.generate
    seed = cfg.seed
    target = expand(output or gcfg.output_dir)
    begin = time.perf_counter()
    with stage(f"generate: plan {gcfg.users} users, {gcfg.movies} movies, {gcfg.ratings} ratings", spark):
        plan = plan_synthetic(gcfg, seed=seed)
    heavy = int((plan.user_counts > np.interp(plan.exact_above, plan.draw_counts, plan.draw_distinct)).sum())
    _logger.info(
        "plan: max user %d ratings, median %d, %d heavy users (Gumbel top-k), %d chunks, "
        "%d tagging users",
        plan.user_counts.max(), np.median(plan.user_counts), heavy, len(plan.chunk_bounds) - 1,
        plan.taggers.size,
    )
    bc = spark.sparkContext.broadcast(plan)
    try:
        with staged(spark, target) as staging:
            local = _local_path(spark, staging) is not None
            with stage(f"generate: ratings.csv ({plan.ratings} ratings)", spark):
                ratings = ratings_frame(spark, bc, seed=seed, partitions=gcfg.partitions)
                write_csv(spark, ratings, folder=staging, name="ratings.csv", header=ML_RATINGS_HEADER)
            with stage(f"generate: tags.csv (~{int(plan.tag_counts.sum())} tags)", spark):
                tags = tags_frame(spark, bc, seed=seed, partitions=gcfg.partitions)
                write_csv(spark, tags, folder=staging, name="tags.csv", header=ML_TAGS_HEADER)
            with stage(f"generate: movies.csv and links.csv ({plan.movies} movies)", spark):
                movies = spark.createDataFrame(movie_table(plan, seed=seed)).coalesce(1)
                write_csv(spark, movies, folder=staging, name="movies.csv", header=ML_MOVIES_HEADER)
                links = spark.createDataFrame(link_table(plan, seed=seed)).coalesce(1)
                write_csv(spark, links, folder=staging, name="links.csv", header=ML_LINKS_HEADER)
            with stage("generate: ground truth", spark):
                users_t, movies_t = truth_tables(plan)
                spark.createDataFrame(users_t).write.parquet(f"{staging}/_truth/users")
                spark.createDataFrame(movies_t).write.parquet(f"{staging}/_truth/movies")
                params = json.dumps(truth_params(plan, gcfg, seed=seed), indent=1)
                write_text(spark, f"{staging}/_truth/params.json", params + "\n")
                write_text(spark, f"{staging}/_truth/config.toml", to_toml(cfg))
    finally:
        bc.unpersist()
    seconds = time.perf_counter() - begin
    summary = SyntheticSummary(
        output=target, users=plan.users, movies=plan.movies, ratings=plan.ratings,
        tags_planned=int(plan.tag_counts.sum()), seconds=seconds, single_files=local,
    )
    _logger.info(
        "generated %d ratings in %.1f s (%.0f ratings/s) -> %s",
        summary.ratings, seconds, summary.rate(), target,
    )
    return summary
