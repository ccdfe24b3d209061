"""Implicit ALS (recspark.models.als.implicit): the half-step against a dense NumPy solve of
the confidence-weighted normal equations, in the kernel and through the trainer in both
modes; planted preferences ranked first; fold-in; the MLlib baseline."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.models.als.implicit import AlsImplicitConfig, fit_als_implicit
from recspark.models.als.kernel import init_factors, solve_implicit_rows, tile_columns
from recspark.models.mllib_als import fit_mllib_als_implicit
from recspark.schema import MOVIE_ID, MOVIE_IDX, OBJECTIVE, RANK, RATING, USER_ID, USER_IDX
from recspark.seeds import derive_seed
from recspark.serving.foldin import fold_in_implicit
from recspark.serving.topn import recommend
from tests.models.als._reference import (
    N_MOVIES,
    N_USERS,
    RANK as K,
    SEED,
    ratings_frame,
    small_matrix,
    table_of,
)


def dense_implicit_step(ratings, mask, fixed, *, reg, alpha, kind="rating", weighted, offset=0.0):
    """One row at a time over EVERY column: (Yᵀ C_u Y + λ s_u I) x_u = Yᵀ C_u p_u, with
    c = 1 + α r (or 1 + α) on rated cells and 1 elsewhere, p = 1 on rated cells."""
    k = fixed.shape[1]
    out = np.zeros((ratings.shape[0], k))
    for u in range(ratings.shape[0]):
        rated = mask[u]
        c = np.where(rated, 1 + alpha * (ratings[u] if kind == "rating" else 1.0), 1.0)
        p = rated.astype(float)
        s = rated.sum() + offset if weighted else 1.0
        a = fixed.T @ (c[:, None] * fixed) + reg * s * np.eye(k)
        out[u] = np.linalg.solve(a, fixed.T @ (c * p))
    return out


def dense_loss(ratings, mask, users, items, *, alpha, kind="rating"):
    c = np.where(mask, 1 + alpha * (ratings if kind == "rating" else 1.0), 1.0)
    return float((c * (mask - users @ items.T) ** 2).sum())


@pytest.mark.parametrize("weighted, offset", [(True, 0.0), (True, 3.0), (False, 0.0)])
@pytest.mark.parametrize("kind", ["rating", "binary"])
@pytest.mark.parametrize("width, chunk", [(100, 10**9), (4, 7), (1, 1)])
def test_kernel_matches_dense_confidence_weighted_solve(weighted, offset, kind, width, chunk):
    rng = np.random.default_rng(4)
    ratings, mask = small_matrix()
    fixed = rng.normal(0, 0.5, (N_MOVIES, K))
    rows, cols = np.nonzero(mask)
    indptr = np.concatenate([[0], np.cumsum(mask.sum(1))])
    tiles = tile_columns(indptr, cols, ratings[rows, cols], n_cols=N_MOVIES, width=width)

    x, loss, penalty = solve_implicit_rows(
        tiles, fixed, gram=fixed.T @ fixed, reg=0.3, alpha=2.0, kind=kind, weighted=weighted,
        reg_offset=offset, chunk_nnz=chunk,
    )

    expected = dense_implicit_step(
        ratings, mask, fixed, reg=0.3, alpha=2.0, kind=kind, weighted=weighted, offset=offset
    )
    np.testing.assert_allclose(x, expected, atol=1e-10)
    assert loss == pytest.approx(dense_loss(ratings, mask, expected, fixed, alpha=2.0, kind=kind), rel=1e-9)
    s = mask.sum(1) + offset if weighted else np.ones(N_USERS)
    assert penalty == pytest.approx(float((0.3 * s * (expected**2).sum(1)).sum()), rel=1e-9)


@pytest.mark.parametrize("mode", ["broadcast", "routed"])
def test_every_half_step_matches_numpy_in_both_modes(spark, mode):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask)
    cfg = AlsImplicitConfig(
        rank=K, max_iter=2, reg=0.2, alpha=1.5, weighted_reg=True, reg_offset=1.0, blocks=3,
        mode=mode, checkpoint_every=1,
    )

    model = fit_als_implicit(df, cfg=cfg, seed=SEED)

    items = init_factors(
        np.arange(N_MOVIES), rank=K, seed=derive_seed(SEED, "init", "movies"), std=cfg.init_std
    )
    objectives = []
    for _ in range(2):
        users = dense_implicit_step(ratings, mask, items, reg=0.2, alpha=1.5, weighted=True, offset=1.0)
        items = dense_implicit_step(ratings.T, mask.T, users, reg=0.2, alpha=1.5, weighted=True, offset=1.0)
        penalty = sum(
            float((0.2 * (m.sum(1) + 1.0) * (t**2).sum(1)).sum())
            for t, m in ((users, mask), (items, mask.T))
        )
        objectives.append(dense_loss(ratings, mask, users, items, alpha=1.5) + penalty)
    got_users = table_of(model.user_factors, USER_IDX, N_USERS, K)
    got_items = table_of(model.item_factors, MOVIE_IDX, N_MOVIES, K)
    np.testing.assert_allclose(got_users[:, :K], users, atol=1e-6)
    np.testing.assert_allclose(got_items[:, :K], items, atol=1e-6)
    assert np.all(got_items[:, K] == 0.0) and model.global_mean == 0.0  # no biases
    np.testing.assert_allclose(model.history[OBJECTIVE], objectives, rtol=1e-8)


def planted(spark):
    """Two taste groups of 8 users: group g likes movies 5g..5g+4. User u of group g rated
    all of them but movie 5g + (u % 5) (its planted movie), plus one movie of the other
    group, rated low."""
    rows = []
    for u in range(16):
        g = u // 8
        mine = [5 * g + j for j in range(5) if j != u % 5]
        other = 5 * (1 - g) + (u % 5)
        rows += [(u, m, 4.5) for m in mine] + [(u, other, 2.0)]
    return spark.createDataFrame(
        [(100 + u, 500 + m, u, m, r) for u, m, r in rows], [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING]
    )


def test_planted_preferences_are_ranked_first(spark):
    df = planted(spark).cache()
    cfg = AlsImplicitConfig(rank=2, max_iter=15, reg=0.05, alpha=2.0, blocks=2)

    model = fit_als_implicit(df, cfg=cfg, seed=SEED)
    top = recommend(model, df, n=1).collect()

    assert {r[USER_ID]: r[MOVIE_ID] for r in top} == {
        100 + u: 500 + 5 * (u // 8) + u % 5 for u in range(16)
    }
    assert all(r[RANK] == 1 for r in top)


def test_fold_in_is_one_implicit_half_step(spark):
    rng = np.random.default_rng(9)
    item_ids = [3, 7, 11, 19, 23, 29]
    q = rng.normal(size=(6, 2))
    items = spark.createDataFrame(
        [(m, 0.0, f.tolist()) for m, f in zip(item_ids, q)],
        f"{MOVIE_ID} long, bias double, factors array<double>",
    )
    ratings = [(1, 3, 4.0), (1, 11, 2.5), (1, 29, 5.0), (2, 7, 1.0), (2, 19, 3.0), (2, 999, 5.0)]
    df = spark.createDataFrame(ratings, "user_id long, movie_id long, rating double")

    got = {r[USER_ID]: r["factors"] for r in fold_in_implicit(
        df, items, reg=0.1, alpha=3.0, weighted=True, min_rating=2.0, blocks=2
    ).collect()}

    mask = np.zeros((2, 6), dtype=bool)
    values = np.zeros((2, 6))
    for u, m, r in ratings:
        if m in item_ids and r >= 2.0:  # unknown movies and ratings below min_rating dropped
            mask[u - 1, item_ids.index(m)], values[u - 1, item_ids.index(m)] = True, r
    expected = dense_implicit_step(values, mask, q, reg=0.1, alpha=3.0, weighted=True)
    np.testing.assert_allclose(got[1], expected[0], atol=1e-10)
    np.testing.assert_allclose(got[2], expected[1], atol=1e-10)


def test_mllib_implicit_baseline_ranks_the_planted_movies_too(spark):
    df = planted(spark).cache()
    cfg = AlsImplicitConfig(rank=2, max_iter=15, reg=0.01, alpha=2.0, blocks=2)

    model = fit_mllib_als_implicit(df, cfg=cfg, seed=SEED)
    top = {r[USER_ID]: r[MOVIE_ID] for r in recommend(model, df, n=1).collect()}

    hits = sum(top[100 + u] == 500 + 5 * (u // 8) + u % 5 for u in range(16))
    assert model.name == "mllib_als_implicit" and hits >= 14
