"""EASE against its closed form in NumPy on a tiny matrix."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.config import load_config
from recspark.errors import DataQualityError
from recspark.models import registry
from recspark.models.neighbours.ease import ease_weights
from recspark.schema import MOVIE_ID, RATING, USER_ID
from recspark.serving.topn import recommend

# users × movies 10..60, 1 = rated; movie 60 is rated once and dropped by max_items=5
X = np.array(
    [
        [1, 1, 0, 0, 1, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 1, 1, 1, 0, 1],
        [0, 0, 1, 1, 1, 0],
        [1, 0, 0, 1, 1, 0],
        [1, 1, 0, 1, 0, 0],
    ],
    dtype=float,
)
MOVIES = np.array([10, 20, 30, 40, 50, 60])


def test_weights_solve_the_constrained_least_squares():
    b = ease_weights(X.T @ X, 2.0)  # (a fresh Gram: it is overwritten)
    assert np.all(np.diag(b) == 0)
    # stationarity of ||X − XB||² + λ||B||² with diag(B) = 0: off-diagonal gradient vanishes
    grad = X.T @ (X @ b - X) + 2.0 * b
    off = ~np.eye(6, dtype=bool)
    np.testing.assert_allclose(grad[off], 0.0, atol=1e-10)
    p = np.linalg.inv(X.T @ X + 2.0 * np.eye(6))  # the closed form, by NumPy's inverse
    np.testing.assert_allclose(b, np.where(np.eye(6) > 0, 0.0, -p / np.diag(p)), atol=1e-12)


@pytest.mark.parametrize("cell", [np.nan, -50.0])
def test_weights_refuse_a_gram_that_is_not_positive_definite(cell):
    g = X.T @ X
    g[0, 0] = cell
    with pytest.raises(DataQualityError, match="not finite and positive definite"):
        ease_weights(g, 2.0)


def _fitted(spark):
    """The ratings of X (every rating 4) and EASE fitted on them (λ 2, 5 most-rated movies)."""
    u, m = np.nonzero(X)
    train = spark.createDataFrame(
        [(int(a) + 1, int(MOVIES[c]), 4.0) for a, c in zip(u, m)],
        f"{USER_ID} long, {MOVIE_ID} long, {RATING} double",
    )
    cfg = load_config(overrides=["ease.reg=2", "ease.max_items=5", "ease.max_cells=1000"])
    return train, registry.fit("ease", train, cfg=cfg)


def test_ease_ranks_by_x_times_b_over_the_most_rated_movies(spark):
    train, model = _fitted(spark)
    assert model.item_ids.tolist() == [10, 20, 30, 40, 50]
    x = X[:, :5]
    b = ease_weights(x.T @ x, 2.0)
    scores = x @ b
    scores[x > 0] = -np.inf
    got = {r[USER_ID]: (r[MOVIE_ID], r["score"]) for r in recommend(model, train, n=1).collect()}
    for user in range(6):  # users 4 and 6 have two movies tied for best: either is right
        movie, score = got[user + 1]
        assert scores[user, MOVIES.tolist().index(movie)] == pytest.approx(scores[user].max(), rel=1e-5)
        assert score == pytest.approx(scores[user].max(), rel=1e-5)


def test_saved_and_loaded_ease_gives_the_same_top_n(spark, tmp_path):
    train, model = _fitted(spark)
    model.save(str(tmp_path / "ease"), chunk_bytes=2 * 5 * 4)  # two rows of 5 float32 per file
    assert sorted(p.name for p in (tmp_path / "ease" / "weights").glob("*.npy")) == [
        "part-00000.npy", "part-00001.npy", "part-00002.npy"
    ]
    back = registry.spec("ease").load(spark, str(tmp_path / "ease"))
    assert back.item_ids.tolist() == [10, 20, 30, 40, 50]
    np.testing.assert_array_equal(back.weights, model.weights)  # float32, bit for bit
    lists = [sorted(tuple(r) for r in recommend(m, train, n=3).collect()) for m in (model, back)]
    assert lists[0] == lists[1]
    assert len(lists[0]) == 6 * 2  # every user rated 3 of the 5 kept movies: 2 left to rank
