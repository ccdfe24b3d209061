"""item_knn and user_knn against a NumPy reference of KNN-with-baseline on a tiny matrix."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.config import load_config
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.schema import BIAS, MOVIE_ID, PERSONALISED, PREDICTION, RATING, USER_ID
from recspark.serving.topn import recommend

NAN = np.nan
# users × movies (ids 1.. and 10, 20, ...); NaN = unrated
R = np.array(
    [
        [5.0, 4.0, NAN, 1.0, 2.0],
        [4.0, 5.0, 1.0, NAN, 1.5],
        [1.0, NAN, 5.0, 4.0, NAN],
        [NAN, 1.0, 4.5, 5.0, 4.0],
        [4.5, 4.0, NAN, 2.0, NAN],
        [2.0, 1.5, 4.0, NAN, 5.0],
    ]
)
USERS = np.arange(1, 7)
MOVIES = np.array([10, 20, 30, 40, 50])
TEST = [(1, 30), (3, 20), (5, 50), (5, 30), (6, 40), (99, 10)]


def _frame(spark):
    u, m = np.nonzero(~np.isnan(R))
    rows = [(int(USERS[a]), int(MOVIES[b]), float(R[a, b])) for a, b in zip(u, m)]
    return spark.createDataFrame(rows, f"{USER_ID} long, {MOVIE_ID} long, {RATING} double")


def _residuals(bias) -> np.ndarray:
    ub = {r[USER_ID]: r[BIAS] for r in bias.user_bias.collect()}
    ib = {r[MOVIE_ID]: r[BIAS] for r in bias.item_bias.collect()}
    base = bias.global_mean + np.array([ub[u] for u in USERS])[:, None] + np.array([ib[m] for m in MOVIES])
    return R - base, base


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    both = ~np.isnan(a) & ~np.isnan(b)
    x, y = a[both], b[both]
    den = np.sqrt((x**2).sum() * (y**2).sum())
    return float(x @ y / den) if both.any() and den > 0 else 0.0


def _reference(res: np.ndarray, base: np.ndarray, u: int, i: int, *, k: int, side: str) -> float | None:
    """KNN-with-baseline by brute force; None when no neighbour rated the pair."""
    if side == "user":
        return _reference(res.T, base.T, i, u, k=k, side="item")
    sims = [(_cosine(res[:, i], res[:, j]), j) for j in range(res.shape[1]) if j != i]
    cands = sorted(((s, j) for s, j in sims if s > 0 and not np.isnan(res[u, j])), key=lambda t: (-t[0], t[1]))[:k]
    if not cands:
        return None
    return base[u, i] + sum(s * res[u, j] for s, j in cands) / sum(s for s, _ in cands)


@pytest.mark.parametrize("side", ["item", "user"])
def test_prediction_matches_numpy_reference_and_survives_save(spark, tmp_path, side):
    name = f"{side}_knn"
    cfg = load_config(overrides=[f"{name}.k=2", f"{name}.shrinkage=0", f"{name}.measure=cosine"])
    train = _frame(spark)
    bias = fit_bias(train, cfg=cfg.bias)
    model = registry.fit(name, train, cfg=cfg, bias=bias)
    res, base = _residuals(bias)
    pairs = spark.createDataFrame(TEST, f"{USER_ID} long, {MOVIE_ID} long")
    got = {(r[USER_ID], r[MOVIE_ID]): r for r in model.predict(pairs).collect()}
    assert len(got) == len(TEST)
    for u, m in TEST[:-1]:
        want = _reference(res, base, int(np.flatnonzero(USERS == u)[0]), int(np.flatnonzero(MOVIES == m)[0]), k=2, side=side)
        row = got[(u, m)]
        assert row[PERSONALISED] == (want is not None)
        if want is not None:
            assert row[PREDICTION] == pytest.approx(min(max(want, 0.5), 5.0), abs=1e-9)
    assert got[(99, 10)][PERSONALISED] is False  # unseen user: the bias fallback

    model.save(str(tmp_path / name))
    loaded = registry.spec(name).load(spark, str(tmp_path / name))
    again = {(r[USER_ID], r[MOVIE_ID]): r[PREDICTION] for r in loaded.predict(pairs).collect()}
    assert again == pytest.approx({key: row[PREDICTION] for key, row in got.items()})


def test_item_knn_top_n_sums_similarities_of_rated_movies(spark):
    cfg = load_config(overrides=["item_knn.shrinkage=0", "item_knn.measure=jaccard", "item_knn.values=rating"])
    train = _frame(spark)
    model = registry.fit("item_knn", train, cfg=cfg, bias=fit_bias(train, cfg=cfg.bias))
    lists = recommend(model, train, n=1).collect()
    rated = ~np.isnan(R)
    jac = (rated.T.astype(float) @ rated) / (rated.sum(0)[:, None] + rated.sum(0)[None, :] - rated.T.astype(float) @ rated)
    np.fill_diagonal(jac, 0.0)
    for row in lists:
        u = int(np.flatnonzero(USERS == row[USER_ID])[0])
        score = jac[:, rated[u]].sum(axis=1)
        score[rated[u]] = -np.inf
        best = int(np.argmax(score))
        assert row[MOVIE_ID] == MOVIES[best]
        assert row["score"] == pytest.approx(score[best])
    assert len(lists) == len(USERS)
