"""The random draws of the generator that are not specific to one table: heavy-tailed counts,
distinct weighted samples, skewed biases. NumPy only, vectorised; no Spark.

* **Counts.** n_j = m + e_j with m the minimum. The excess follows a Lomax (Pareto II) tail
  P(e > x) = (1 + x/s)^(-α), read at stratified quantiles (j + V_j)/U in random order, capped
  at the maximum, with the scale s solved so that Σ n_j is exactly the total
  (largest-remainder rounding). Users' ratings and tagging users' tags are drawn this way.
* **Choice.** Owner j gets n_j distinct items: a *successive sample* from the weights w
  (draw by w, skip repeats, stop at n_j). Two exact samplers of that one law are used: for
  most owners, draws with replacement through the CDF (``searchsorted``) with enough
  oversampling that the first n_j distinct draws are usually there (the expected number of
  distinct items after t draws is Σ_i 1 − (1 − w_i)^t); for heavy owners, and the rare owner
  the draws fell short for, Gumbel top-k: the n_j largest log w_i + G_i, G_i ~ Gumbel(0, 1)
  (Efraimidis–Spirakis), O(M) per owner. No step costs O(owners·M).
* **Biases.** Mean 0, a given standard deviation, skewed left (negated Gamma(2)) for
  MovieLens' harsh users and bad movies.
"""

from __future__ import annotations

import math

import numpy as np

from recspark.errors import ConfigError

#: Use Gumbel top-k when the expected number of draws exceeds max(this share of M, floor).
_EXACT_SHARE = 0.125
_EXACT_FLOOR = 4096
_OVERSAMPLE = 1.1  # draws per expected draw, plus _OVERSAMPLE_EXTRA, before falling back
_OVERSAMPLE_EXTRA = 4
_BIAS_GAMMA_SHAPE = 2.0


def user_rating_counts(
    *, users: int, total: int, minimum: int, maximum: int, exponent: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Heavy-tailed per-user counts n_u with minimum ≤ n_u ≤ maximum and Σ n_u = total exactly.

    n_u = minimum + min(s·((1 − q_u)^(−1/α) − 1), maximum − minimum), where q_u are the
    stratified quantiles (j + V_j)/U (V_j uniform) in random order, α = ``exponent`` and s is
    solved by bisection; the fractions are rounded by largest remainder to hit ``total``.
    Returns an int64 array of length ``users``. Raises :class:`ConfigError` when no such
    counts exist (total outside users·minimum..users·maximum).
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
    return counts + _round_to_total(_lomax_scale(shape, extra, room), extra, room)


def _lomax_scale(shape: np.ndarray, extra: int, room: int) -> np.ndarray:
    """min(s·shape, room) with s found by bisection so the sum is within rounding of ``extra``
    (from below)."""

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
    return np.minimum(lo * shape, room)


def _round_to_total(cont: np.ndarray, extra: int, room: int) -> np.ndarray:
    """Largest-remainder rounding of ``cont`` (Σ cont ≤ extra) to integers ≤ room summing to
    ``extra``."""
    base = np.floor(cont).astype(np.int64)
    deficit = int(extra - base.sum())
    if deficit > 0:
        frac = np.where(base < room, cont - base, -1.0)
        top = np.argsort(-frac, kind="stable")[:deficit]
        if (frac[top] < 0).any():  # pragma: no cover - cannot happen when total ≤ users·maximum
            raise RuntimeError("user_rating_counts: rounding ran out of room")
        base[top] += 1
    return base


def exact_threshold(items: int) -> float:
    """Expected draws above which :func:`sample_distinct` uses Gumbel top-k for an owner:
    max(M/8, 4096). Below it, draws with replacement are cheaper than O(M) keys."""
    return max(_EXACT_SHARE * items, _EXACT_FLOOR)


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
    :func:`exact_threshold`), or whose draws fell short, use Gumbel top-k over all M items
    instead; both give the same law. Returns (owner, item) int64 arrays of length Σ counts,
    sorted by owner then item. Raises ValueError when an owner wants more than M items.
    """
    counts = np.asarray(counts, dtype=np.int64)
    m = probs.size
    if (counts > m).any():
        raise ValueError(f"sample_distinct: an owner wants more than the {m} items there are")
    if exact_above is None:
        exact_above = exact_threshold(m)
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
        chosen, short = _draws_with_replacement(counts, need, light, probs, rng)
        keys.append(chosen)
        heavy |= short
    if heavy.any():
        keys.extend(_gumbel_top_k(counts, np.flatnonzero(heavy), probs, rng))
    if not keys:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    key = np.sort(np.concatenate(keys))
    return key // m, key % m


def _draws_with_replacement(
    counts: np.ndarray, need: np.ndarray, light: np.ndarray, probs: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The light owners' first ``counts[j]`` distinct draws, as keys owner·M + item, and the
    mask of owners whose draws fell short (their keys are left out)."""
    m = probs.size
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
    return chosen, short


def _gumbel_top_k(
    counts: np.ndarray, owners: np.ndarray, probs: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """Keys owner·M + item of the ``counts[j]`` largest log w_i + Gumbel noise, per owner."""
    m = probs.size
    logp = np.log(np.maximum(probs, np.finfo(float).tiny))
    keys = []
    for j in owners:
        n = int(counts[j])
        if n == 0:
            continue
        top = np.argpartition(logp + rng.gumbel(size=m), m - n)[m - n:]
        keys.append(j * m + top.astype(np.int64))
    return keys


def skewed_bias(n: int, sd: float, gen: np.random.Generator) -> np.ndarray:
    """n biases with mean 0, standard deviation ``sd`` and a long left tail:
    b = −sd·(G − a)/√a, G ~ Gamma(a), a = 2 (skewness −√2), like MovieLens' harsh users and
    bad movies."""
    g = gen.gamma(_BIAS_GAMMA_SHAPE, size=n)
    return -sd * (g - _BIAS_GAMMA_SHAPE) / math.sqrt(_BIAS_GAMMA_SHAPE)
