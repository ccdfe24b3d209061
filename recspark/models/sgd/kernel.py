"""The compiled inner loops of SGD matrix factorisation and SVD++ (one block, one pass).

A per-rating sequential update (each step reads the factors the previous step wrote) has
no vectorised NumPy form, so these loops are compiled by numba (once per Python worker;
the compiled code is cached on disk). Every function works on one block of ratings held
in CSR form over *local* rows: user row ``u`` of the block has the ratings
``cols[indptr[u]:indptr[u+1]]`` (local movie rows) with values ``vals[...]``; ``users``
repeats the row of every rating. ``order`` lists the ratings in the order they are visited.

Updates (Funk / Surprise "SVD"; Koren 2008 for SVD++), for a rating r of user u, movie i,
learning rate γ, with e = r − r̂:

    b_u += γ (e − λ_b b_u)            b_i += γ (e − λ_b b_i)
    p_u += γ (e q_i − λ_f p_u)        q_i += γ (e (p_u + z_u) − λ_f q_i)     (old p_u, q_i)

where z_u = |N(u)|^-½ Σ_{j∈N(u)} y_j (0 for plain MF). Plain MF visits the block's ratings
in one seeded permutation (:func:`rating_order`). SVD++ visits the block *user by user*
(:func:`user_order`): z_u is summed once when the visit of u starts, u's ratings are
visited in a seeded order, and when they are done every y_j of u's movies in the block
moves once by the summed gradient

    y_j += γ (|N(u)|^-½ Σ_{i visited} e_ui q_i − λ_y y_j)        (q_i as at each rating)

Koren's per-rating form (Surprise's) moves all |N(u)| y_j and re-sums z_u at every rating,
Σ_u |N(u)|² · k work per epoch (25 M · k on ml-latest-small's fit part, 390 s per 20
epochs); this form costs Σ_u |N(u)| · k like plain MF. λ_y therefore acts once per user
visit, not once per rating, so its good values are larger (``conf/svdpp.toml``).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["rating_order", "user_order", "sgd_pass", "svdpp_pass", "implicit_sums", "block_sse"]


def rating_order(seed: int, epoch: int, user_block: int, movie_block: int, n: int) -> np.ndarray:
    """The seeded order (a permutation of ``range(n)``) block (user_block, movie_block)
    visits its ``n`` ratings in during ``epoch``: a pure function of its arguments, so a
    fit is deterministic for a given number of blocks."""
    return np.random.default_rng([seed, epoch, user_block, movie_block]).permutation(n)


@numba.njit(cache=True, nogil=True, inline="always")
def _step(u, i, e, p, bu, q, bi, z, lr, reg_f, reg_b):  # pragma: no cover
    """The update of one rating with error ``e`` (module docstring): biases, then p_u and
    q_i from their old values; ``z`` is z_u (zeros for plain MF)."""
    bu[u] += lr * (e - reg_b * bu[u])
    bi[i] += lr * (e - reg_b * bi[i])
    for f in range(p.shape[1]):
        pf = p[u, f]
        qf = q[i, f]
        p[u, f] += lr * (e * qf - reg_f * pf)
        q[i, f] += lr * (e * (pf + z[f]) - reg_f * qf)


@numba.njit(cache=True, nogil=True)
def sgd_pass(order, users, cols, vals, mu, p, bu, q, bi, lr, reg_f, reg_b):  # pragma: no cover
    """One pass of biased-MF SGD over the ratings in ``order`` (module docstring).

    ``p`` (n_users × k), ``bu`` (n_users,), ``q`` (n_movies × k), ``bi`` (n_movies,) are
    updated in place. Returns Σ e² of the ratings as visited (before each update).
    """
    k = p.shape[1]
    zero = np.zeros(k)
    sse = 0.0
    for t in range(order.shape[0]):
        x = order[t]
        u = users[x]
        i = cols[x]
        pred = mu + bu[u] + bi[i]
        for f in range(k):
            pred += p[u, f] * q[i, f]
        e = vals[x] - pred
        sse += e * e
        _step(u, i, e, p, bu, q, bi, zero, lr, reg_f, reg_b)
    return sse


def user_order(seed: int, epoch: int, user_block: int, movie_block: int,
               users: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded SVD++ visit order of block (user_block, movie_block) in ``epoch``:
    ``(uorder, rorder)``, ``uorder`` a permutation of the ``n_rows`` local user rows and
    ``rorder`` (nnz,) the rating indices grouped by user row in ascending row order (so
    ``rorder[indptr[u]:indptr[u+1]]`` are u's ratings), each user's in a random order.
    ``users`` (nnz,) is the row of every rating, sorted. A pure function of its arguments."""
    rng = np.random.default_rng([seed, epoch, user_block, movie_block])
    uorder = rng.permutation(n_rows)
    rorder = np.lexsort((rng.random(users.shape[0]), users))
    return uorder, rorder


@numba.njit(cache=True, nogil=True)
def svdpp_pass(
    uorder, rorder, indptr, cols, vals, mu, p, bu, z_out, scale, q, bi, y, lr, reg_f, reg_b, reg_y
):  # pragma: no cover
    """One user-by-user pass of SVD++ SGD over a block (module docstring; order from
    :func:`user_order`).

    The implicit sum of user u is z_u = ``z_out[u]`` + |N(u)|^-½ Σ_{j ∈ N(u) ∩ block} y_j:
    ``z_out`` (n_users × k, read only) holds the part over u's movies outside this block
    (their y belong to other tasks: fixed here, see :func:`implicit_sums`), the in-block
    part is summed from the current ``y`` (n_movies × k) when u's visit starts. ``scale``
    is |N(u)|^-½ per user row. The y_j updated after u's ratings are those of u's movies
    in this block (``cols[indptr[u]:indptr[u+1]]``). p, bu, q, bi, y are updated in place.
    Returns Σ e² of the ratings as visited (before each update).
    """
    k = p.shape[1]
    z = np.empty(k)
    g = np.empty(k)
    sse = 0.0
    for t in range(uorder.shape[0]):
        u = uorder[t]
        lo, hi = indptr[u], indptr[u + 1]
        if hi == lo:
            continue
        s = scale[u]
        for f in range(k):
            z[f] = 0.0
            g[f] = 0.0
        for c in range(lo, hi):
            j = cols[c]
            for f in range(k):
                z[f] += y[j, f]
        for f in range(k):
            z[f] = z_out[u, f] + s * z[f]
        for c in range(lo, hi):
            x = rorder[c]
            i = cols[x]
            pred = mu + bu[u] + bi[i]
            for f in range(k):
                pred += q[i, f] * (p[u, f] + z[f])
            e = vals[x] - pred
            sse += e * e
            for f in range(k):
                g[f] += e * s * q[i, f]
            _step(u, i, e, p, bu, q, bi, z, lr, reg_f, reg_b)
        for c in range(lo, hi):
            j = cols[c]
            for f in range(k):
                y[j, f] += lr * (g[f] - reg_y * y[j, f])
    return sse


@numba.njit(cache=True, nogil=True)
def implicit_sums(indptr, cols, y, scale, out):  # pragma: no cover
    """``out[u] += scale[u] · Σ_{j ∈ cols[indptr[u]:indptr[u+1]]} y[j]`` for every row u
    (call once per movie block to sum over all of a user's rated movies)."""
    k = y.shape[1]
    for u in range(indptr.shape[0] - 1):
        s = scale[u]
        for c in range(indptr[u], indptr[u + 1]):
            j = cols[c]
            for f in range(k):
                out[u, f] += s * y[j, f]
    return out


@numba.njit(cache=True, nogil=True)
def block_sse(users, cols, vals, mu, p, bu, q, bi, lo, hi):  # pragma: no cover
    """Σ (r − clip(μ + b_u + b_i + p_u·q_i, lo, hi))² over the ratings (no update); for
    SVD++ pass p + z as ``p``."""
    k = p.shape[1]
    sse = 0.0
    for x in range(vals.shape[0]):
        u = users[x]
        i = cols[x]
        pred = mu + bu[u] + bi[i]
        for f in range(k):
            pred += p[u, f] * q[i, f]
        pred = min(max(pred, lo), hi)
        e = vals[x] - pred
        sse += e * e
    return sse
