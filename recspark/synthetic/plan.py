"""The plan of a synthetic data set: every per-user and per-movie parameter, drawn on the
driver and broadcast to the tasks that draw the ratings and tags.

With U users, M movies, R ratings and rank k:

* **Activity.** n_u = m + e_u with m = ``min_user_ratings``, e_u Lomax-tailed
  (α = ``user_activity_exponent``), capped at ``max_user_share``·M, Σ n_u = R exactly
  (:func:`~recspark.synthetic.sampling.user_rating_counts`).
* **Popularity.** The movie of popularity rank r has probability
  w_r ∝ (r + c·M)^(-β) (Zipf–Mandelbrot; β = ``movie_popularity_exponent``,
  c = ``movie_popularity_offset``); ranks are a random permutation of the movies. Movie ids
  grow by gaps 1 + Poisson(λ_j), λ_j rising along the catalogue so the largest id is about
  ``movie_id_span``·M (MovieLens ids have gaps, denser among old ids).
* **Parameters.** Biases b_u, b_i of mean 0, standard deviations ``user_bias_sd`` and
  ``movie_bias_sd``, skewed left (:func:`~recspark.synthetic.sampling.skewed_bias`);
  p_u, q_i ~ N(0, f² I_k) with k·f⁴ = ``interaction_sd``², so sd(p_u·q_i) =
  ``interaction_sd``. With ``segments`` = K > 0, user u of segment s(u) has
  p_u = c_s(u) + N(0, (τf)² I_k), τ = ``segment_noise``, the K centres picked far apart
  (farthest-point choice among Gaussian candidates of scale f). Each user's half-star
  propensity h_u ~ Beta with mean ``half_star_share``.
* **Time.** User u is active over [t_u, t_u + d_u]: t_u's year drawn from MovieLens-like
  yearly sign-up weights (1995 to 2023), log10 d_u ~ N(2.9 + 1.5 log10(n_u/m), 1.3) seconds
  (a 20-rating user rates in one sitting, a heavy one over years); each rating or tag time
  is uniform in the window, in whole seconds since the epoch.

Every part has its own seed derived from the root seed by name, so adding a part does not
change the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from recspark.config import GenerateConfig
from recspark.seeds import rng
from recspark.synthetic.chunks import chunk_bounds
from recspark.synthetic.sampling import (
    exact_threshold,
    expected_distinct_table,
    skewed_bias,
    user_rating_counts,
)
from recspark.synthetic.tags import plan_tags


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

    def event_times(self, users: np.ndarray, gen: np.random.Generator) -> np.ndarray:
        """One time per entry of ``users`` (user indices), uniform over the whole seconds of
        that user's window [t_u, t_u + d_u]; int64 seconds since the epoch."""
        offset = np.floor(gen.random(users.size) * (self.user_span[users] + 1)).astype(np.int64)
        return self.user_start[users] + offset


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


def _user_params(cfg: GenerateConfig, f: float, *, seed: int) -> dict[str, np.ndarray]:
    """The users' fields of :class:`SyntheticPlan` (counts, windows, biases, half-star
    propensities, factors, segments, centres), by their field names."""
    users, k = cfg.users, cfg.rank
    counts = user_rating_counts(
        users=users, total=cfg.ratings, minimum=cfg.min_user_ratings, maximum=cfg.user_cap,
        exponent=cfg.user_activity_exponent, rng=rng(seed, "generate", "user_counts"),
    )
    start, span = _user_windows(counts, cfg.min_user_ratings, rng(seed, "generate", "user_windows"))
    ug = rng(seed, "generate", "user_params")
    bias = skewed_bias(users, cfg.user_bias_sd, ug)
    share = cfg.half_star_share
    if 0.0 < share < 1.0:
        half = ug.beta(1.5 * share, 1.5 * (1.0 - share), size=users)
    else:
        half = np.full(users, share)
    if cfg.segments > 0:
        centres = _segment_centres(cfg.segments, k, f, rng(seed, "generate", "segment_centres"))
        segment = ug.integers(cfg.segments, size=users).astype(np.int64)
        factors = centres[segment] + ug.normal(0.0, cfg.segment_noise * f, size=(users, k))
    else:
        centres = np.empty((0, k))
        segment = np.full(users, -1, dtype=np.int64)
        factors = ug.normal(0.0, f, size=(users, k))
    return dict(
        user_counts=counts, user_start=start, user_span=span, user_half=half, user_bias=bias,
        user_factors=factors, user_segment=segment, centres=centres,
    )


def _movie_params(cfg: GenerateConfig, f: float, *, seed: int) -> dict[str, np.ndarray]:
    """The movies' fields of :class:`SyntheticPlan` (ids, popularity, biases, factors), by
    their field names."""
    mg = rng(seed, "generate", "movie_params")
    probs = movie_popularity(
        movies=cfg.movies, exponent=cfg.movie_popularity_exponent,
        offset=cfg.movie_popularity_offset, rng=mg,
    )
    ids = movie_ids(movies=cfg.movies, span=cfg.movie_id_span, rng=mg)
    bias = skewed_bias(cfg.movies, cfg.movie_bias_sd, mg)
    factors = mg.normal(0.0, f, size=(cfg.movies, cfg.rank))
    return dict(movie_ids=ids, movie_probs=probs, movie_bias=bias, movie_factors=factors)


def plan_synthetic(cfg: GenerateConfig, *, seed: int) -> SyntheticPlan:
    """Draw every per-user and per-movie parameter on the driver (see the module docstring).

    Cost O(U·k + M·k) memory and time, plus O(M) per point of the 256-point draw table; no
    rating is drawn here. Each part has its own derived seed. ``cfg`` was checked when it
    was built (:class:`~recspark.config.GenerateConfig`), so the shape is feasible.
    """
    f = _factor_scale(cfg)
    users = _user_params(cfg, f, seed=seed)
    movies = _movie_params(cfg, f, seed=seed)
    exact_above = exact_threshold(cfg.movies)
    distinct, draws = expected_distinct_table(movies["movie_probs"], max_draws=exact_above)
    return SyntheticPlan(
        global_mean=cfg.global_mean, noise=cfg.noise, factor_scale=f, **users, **movies,
        draw_distinct=distinct, draw_counts=draws, exact_above=exact_above,
        chunk_bounds=chunk_bounds(users["user_counts"], cfg.chunk_ratings),
        **plan_tags(cfg, users["user_counts"], seed=seed)._asdict(),
    )


def scaled_config(cfg: GenerateConfig, fraction: float) -> GenerateConfig:
    """``cfg`` with users, movies, ratings and tags multiplied by ``fraction`` (rounded), the
    other settings kept: the same shape (ratings per user and per movie) at another size,
    e.g. 1/8 of ml-32m for a size sweep. At tiny fractions the floors keep it feasible: at
    least one user, ``min_user_ratings`` ratings per user, and enough movies that the mean
    user fits under the cap ``max_user_share``·movies. Raises
    :class:`~recspark.errors.ConfigError` if the result is still infeasible."""
    users = max(round(cfg.users * fraction), 1)
    ratings = max(round(cfg.ratings * fraction), users * cfg.min_user_ratings)
    per_user = max(cfg.min_user_ratings, math.ceil(ratings / users))
    movies = max(round(cfg.movies * fraction), math.ceil(per_user / cfg.max_user_share))
    return cfg.replace(users=users, movies=movies, ratings=ratings, tags=round(cfg.tags * fraction))
