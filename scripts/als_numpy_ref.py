"""A single-process NumPy/SciPy reference of recspark's explicit biased ALS (issue 15's yardstick).

``scripts/bench_als.py`` times one of these iterations on the same training ratings as the
Spark fits, so recspark's per-iteration time can be read against plain vectorised NumPy on
one core ("within 2 ×"). It is written straight from the equations of
:mod:`recspark.models.als` and shares no code with recspark's kernel or blocks: only the
seeded start (:func:`recspark.models.als.kernel.init_factors` with the seed the trainer
derives), so that the two fits follow the same path and their factors can be compared.

Half-step for the rows of a CSR matrix R (m × p) against the fixed side's rows
[q_i, b_i] (p × d, d = k + 1), with ỹ_i = [q_i; 1] and t_ui = r_ui − μ − b_i:

    G = A Z,   Z[i, (a, b)] = ỹ_ia ỹ_ib  (the d(d+1)/2 pairs a ≤ b),   A = R's 0/1 pattern
    h = T Ỹ,   T = R with values t_ui
    (G_u + s_u Λ) x_u = h_u,   Λ = diag(λ_f, …, λ_f, λ_b),   s_u = n_u (weighted) or 1

one sparse × dense product for all Gram matrices (untiled), one for the right-hand sides
and one batched ``numpy.linalg.solve``. Memory: O(m · d²) for the stacked systems.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


def half_step(
    r: sp.csr_matrix,
    fixed: np.ndarray,
    *,
    mu: float,
    reg_factors: float,
    reg_bias: float,
    weighted: bool = True,
) -> np.ndarray:
    """[factors, bias] (m × d) of every row of ``r`` (m × p, CSR, one row per entity with at
    least one rating) against ``fixed`` (p × d) = [factors, bias] of the columns."""
    p, d = fixed.shape
    k = d - 1
    y = np.empty((p, d))
    y[:, :k] = fixed[:, :k]
    y[:, k] = 1.0
    iu, ju = np.triu_indices(d)
    z = y[:, iu] * y[:, ju]
    pattern = sp.csr_matrix((np.ones_like(r.data), r.indices, r.indptr), shape=r.shape)
    gram = pattern @ z  # (m, d(d+1)/2)
    targets = sp.csr_matrix((r.data - mu - fixed[r.indices, k], r.indices, r.indptr), shape=r.shape)
    h = targets @ y  # (m, d)
    m = r.shape[0]
    system = np.empty((m, d, d))
    system[:, iu, ju] = gram
    system[:, ju, iu] = gram
    scale = np.diff(r.indptr).astype(np.float64) if weighted else np.ones(m)
    lam = np.full(d, float(reg_factors))
    lam[k] = float(reg_bias)
    system[:, np.arange(d), np.arange(d)] += scale[:, None] * lam
    return np.linalg.solve(system, h[..., None])[..., 0]


@dataclass
class ReferenceFit:
    """The result of :func:`fit`: factors, μ, and per-iteration seconds and training RMSE."""

    users: np.ndarray  # (n_users, d) [factors, bias] by user index (rows of unrated users 0)
    items: np.ndarray  # (n_items, d)
    mu: float
    build_s: float
    iteration_s: list[float] = field(default_factory=list)
    train_rmse: list[float] = field(default_factory=list)


def fit(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    *,
    rank: int,
    iters: int,
    reg: float,
    init_seed: int,
    init_std: float = 0.1,
    weighted: bool = True,
) -> ReferenceFit:
    """Biased ALS (λ_f = λ_b = ``reg``) from dense 0-based indices, one process, float64.

    The movie factors start at :func:`recspark.models.als.kernel.init_factors` with
    ``init_seed`` (recspark's trainer uses ``derive_seed(seed, "init", "movies")``), the
    movie biases at 0 (recspark without a bias model). Every iteration: users, then movies.
    ``build_s``: seconds to build the two CSR matrices; ``iteration_s``: seconds per
    iteration (training RMSE excluded).
    """
    from recspark.models.als.kernel import init_factors

    start = time.perf_counter()
    n_users, n_items = int(users.max()) + 1, int(items.max()) + 1
    vals = ratings.astype(np.float64)
    by_user = sp.csr_matrix((vals, (users, items)), shape=(n_users, n_items))
    by_item = by_user.T.tocsr()
    by_user.sort_indices()
    by_item.sort_indices()
    u_rows = np.flatnonzero(np.diff(by_user.indptr))
    i_rows = np.flatnonzero(np.diff(by_item.indptr))
    r_u, r_i = by_user[u_rows], by_item[i_rows]
    mu = float(vals.mean())
    build_s = time.perf_counter() - start

    d = rank + 1
    user_rows = np.zeros((n_users, d))
    item_rows = np.zeros((n_items, d))
    item_rows[:, :rank] = init_factors(np.arange(n_items), rank=rank, seed=init_seed, std=init_std)
    out = ReferenceFit(user_rows, item_rows, mu, build_s)
    kw = dict(mu=mu, reg_factors=reg, reg_bias=reg, weighted=weighted)
    for _ in range(iters):
        start = time.perf_counter()
        user_rows[u_rows] = half_step(r_u, item_rows, **kw)
        item_rows[i_rows] = half_step(r_i, user_rows, **kw)
        out.iteration_s.append(time.perf_counter() - start)
        out.train_rmse.append(rmse(users, items, vals, user_rows, item_rows, mu))
    return out


def _raw(users, items, user_rows, item_rows, mu, chunk: int = 1 << 20) -> np.ndarray:
    """μ + b_u + b_i + p_u · q_i for index pairs (in chunks: the gathered rows of 25 M
    pairs would be gigabytes)."""
    k = user_rows.shape[1] - 1
    out = np.empty(users.shape[0])
    for s in range(0, users.shape[0], chunk):
        pu, qi = user_rows[users[s : s + chunk]], item_rows[items[s : s + chunk]]
        out[s : s + chunk] = mu + pu[:, k] + qi[:, k] + np.einsum("ij,ij->i", pu[:, :k], qi[:, :k])
    return out


def predict(
    users: np.ndarray,
    items: np.ndarray,
    user_rows: np.ndarray,
    item_rows: np.ndarray,
    mu: float,
    lo: float = 0.5,
    hi: float = 5.0,
) -> np.ndarray:
    """μ + b_u + b_i + p_u · q_i for index pairs, clipped to [lo, hi]."""
    return np.clip(_raw(users, items, user_rows, item_rows, mu), lo, hi)


def rmse(users, items, vals, user_rows, item_rows, mu) -> float:
    """Unclipped training RMSE (what recspark's history reports)."""
    err = vals - _raw(users, items, user_rows, item_rows, mu)
    return float(np.sqrt(err @ err / err.size))
