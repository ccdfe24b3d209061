from __future__ import annotations

import numpy as np
import pytest

from recspark.models.als import AlsConfig
from recspark.errors import ModelError
from recspark.models.als import fit_als
from recspark.serving.foldin import FOLDED_USER_IDX, fold_in, fold_in_model_users, foldin_settings
from recspark.schema import BIAS, FACTORS, MOVIE_ID, USER_ID, USER_IDX


def ridge_reference(ratings, item_ids, q, bi, *, mu, lf, lb, weighted):
    """Per-user dense normal equations, written out independently of solve_rows."""
    out = {}
    for user in sorted({u for u, _, _ in ratings}):
        rows = [(m, r) for u, m, r in ratings if u == user and m in item_ids]
        if not rows:
            continue
        pos = [item_ids.index(m) for m, _ in rows]
        y = np.hstack([q[pos], np.ones((len(pos), 1))])
        t = np.array([r for _, r in rows]) - mu - bi[pos]
        s = len(rows) if weighted else 1.0
        lam = np.diag([lf] * q.shape[1] + [lb])
        out[user] = np.linalg.solve(y.T @ y + s * lam, y.T @ t)
    return out


@pytest.mark.parametrize("weighted", [True, False])
def test_fold_in_matches_dense_ridge_reference(spark, weighted):
    rng = np.random.default_rng(5)
    item_ids = [3, 7, 11, 19, 23]
    q, bi = rng.normal(size=(5, 2)), rng.normal(size=5) * 0.3
    ratings = [(u, m, float(rng.integers(1, 11)) / 2) for u in (100, 200, 300)
               for m in rng.choice(item_ids, size=3 + u // 100 - 1, replace=False).tolist()]
    ratings += [(200, 999, 5.0), (400, 998, 3.0)]  # unknown movies: ignored; user 400 has no row
    items = spark.createDataFrame(
        [(m, float(b), f.tolist()) for m, b, f in zip(item_ids, bi, q)],
        f"{MOVIE_ID} long, {BIAS} double, {FACTORS} array<double>",
    )
    df = spark.createDataFrame(ratings, "user_id long, movie_id long, rating double")
    got = {r[USER_ID]: r for r in fold_in(df, items, global_mean=3.4, reg_factors=0.2,
                                          reg_bias=0.05, weighted=weighted, blocks=2).collect()}
    ref = ridge_reference(ratings, item_ids, q, bi, mu=3.4, lf=0.2, lb=0.05, weighted=weighted)
    assert set(got) == set(ref) == {100, 200, 300}
    for user, x in ref.items():
        assert got[user][USER_IDX] == FOLDED_USER_IDX
        np.testing.assert_allclose(got[user][FACTORS], x[:2], atol=1e-10)
        assert got[user][BIAS] == pytest.approx(x[2], abs=1e-10)


def test_fold_in_reproduces_trained_als_user_factors(spark):
    """Users seen in training, folded in from the same ratings against the trained movie
    factors, get the trained user factors back: at convergence the user step is a fixed point."""
    rng = np.random.default_rng(0)
    n_users, n_items, rank = 12, 9, 2
    p, q = rng.normal(size=(n_users, rank)), rng.normal(size=(n_items, rank))
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, size=6, replace=False):
            r = float(np.clip(np.round((3.5 + p[u] @ q[i] * 0.7) * 2) / 2, 0.5, 5.0))
            rows.append((u + 1, int(i) + 1, u, int(i), r))
    train = spark.createDataFrame(
        rows, "user_id long, movie_id long, user_idx int, movie_idx int, rating double"
    )
    cfg = AlsConfig(rank=rank, max_iter=60, reg_factors=0.1, reg_bias=0.1, blocks=2, mode="broadcast")
    model = fit_als(train, cfg=cfg, seed=1)
    trained = {r[USER_ID]: r for r in model.user_factors.collect()}
    folded = {r[USER_ID]: r for r in fold_in_model_users(model, train, blocks=2).collect()}
    assert set(folded) == set(trained)
    for user, row in trained.items():
        np.testing.assert_allclose(folded[user][FACTORS], row[FACTORS], atol=1e-4)
        assert folded[user][BIAS] == pytest.approx(row[BIAS], abs=1e-4)


def test_missing_settings_is_a_model_error():
    with pytest.raises(ModelError, match="rescore.foldin = false"):
        foldin_settings({"rank": 10}, model="svd")


def test_factor_model_fold_in_adds_only_unknown_users(spark):
    rng = np.random.default_rng(2)
    rows = [(u + 1, i + 1, u, i, float(rng.integers(1, 11)) / 2) for u in range(6) for i in range(5)]
    train = spark.createDataFrame(
        rows, "user_id long, movie_id long, user_idx int, movie_idx int, rating double"
    )
    model = fit_als(train, cfg=AlsConfig(rank=2, max_iter=3, blocks=2, mode="broadcast"), seed=3)
    new = spark.createDataFrame(
        [(1, 2, 5.0), (50, 1, 4.0), (50, 3, 2.0), (60, 999, 3.0)],  # known user 1; 60: unknown movie
        "user_id long, movie_id long, rating double",
    )
    folded = model.fold_in(new)
    before = {r[USER_ID]: r[FACTORS] for r in model.user_factors.collect()}
    after = {r[USER_ID]: r for r in folded.user_factors.collect()}
    assert set(after) == set(before) | {50}  # 60 rated no known movie: stays unknown
    assert all(after[u][FACTORS] == f for u, f in before.items())  # trained users untouched
    direct = fold_in_model_users(model, new.where("user_id = 50"), blocks=2).first()
    np.testing.assert_allclose(after[50][FACTORS], direct[FACTORS])
    assert after[50][USER_IDX] == FOLDED_USER_IDX
