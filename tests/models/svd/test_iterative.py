"""Iterative SVD / soft impute (recspark.models.svd.iterative): the randomised SVD against
NumPy, planted low-rank recovery, and both SVD models on ml-latest-small."""

import numpy as np
import pytest

from recspark.blocks import build_blocks
from recspark.config import load_config
from recspark.evaluation.rating import regression_metrics
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.lowrank import STORAGE
from recspark.evaluation.sweeps import sweep_rows
from recspark.models.svd import history_rows
from recspark.models.svd.iterative import fit_iterative_svd, randomized_svd
from recspark.schema import (
    ITERATION,
    METRIC,
    MOVIE_ID,
    MOVIE_IDX,
    RATING,
    SWEEP_K,
    TRAIN_RMSE,
    USER_ID,
    USER_IDX,
    VALIDATION_RMSE,
)
from recspark.seeds import derive_seed
from tests.models._ml_small import train_test
from tests.models.svd._frames import ratings_frame


def test_randomized_svd_of_low_rank_plus_sparse_matches_numpy(spark):
    g = np.random.default_rng(11)
    m, n, k = 70, 90, 3
    # a dense rank-2 part plus a sparse part: a rank-3 block on 30 x 40 cells and light noise
    u0, _ = np.linalg.qr(g.normal(size=(m, 2)))
    v0, _ = np.linalg.qr(g.normal(size=(n, 2)))
    s0 = np.array([4.0, 2.0])
    mask = g.random((m, n)) < 0.1
    mask[:30, :40] = True
    sparse = np.where(mask, 0.01 * g.normal(size=(m, n)), 0.0)
    sparse[:30, :40] += g.normal(size=(30, 3)) @ np.diag([3.0, 2.0, 1.5]) @ g.normal(size=(3, 40)) / 5
    us, ms = np.nonzero(mask)
    df = spark.createDataFrame(
        [(int(a), int(b), float(sparse[a, b])) for a, b in zip(us, ms)], [USER_IDX, MOVIE_IDX, RATING]
    )
    blocks = build_blocks(df, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=2, storage=STORAGE)
    got_u, got_s, got_v = randomized_svd(
        blocks, u=u0, s=s0, v=v0, k=k, oversample=8, power_iters=4,
        generator=np.random.default_rng(0),
    )
    blocks.unpersist()
    x = (u0 * s0) @ v0.T + sparse
    eu, es, evt = np.linalg.svd(x)
    np.testing.assert_allclose(got_s, es[:k], rtol=1e-6)
    np.testing.assert_allclose((got_u * got_s) @ got_v.T, (eu[:, :k] * es[:k]) @ evt[:k], atol=1e-5)


def test_iterative_svd_recovers_hidden_entries_of_a_planted_low_rank_matrix(spark):
    g = np.random.default_rng(1)
    m, n = 60, 50
    r = 3 + g.normal(0, 0.8, (m, 2)) @ g.normal(0, 0.8, (n, 2)).T
    observed = g.random((m, n)) < 0.5
    observed[np.arange(m), np.arange(m) % n] = True
    observed[np.arange(n) % m, np.arange(n)] = True
    hidden_val = ~observed & (g.random((m, n)) < 0.5)
    hidden_test = ~observed & ~hidden_val
    train = ratings_frame(spark, r, observed).cache()
    val = ratings_frame(spark, r, hidden_val)
    test = ratings_frame(spark, r, hidden_test).select(USER_ID, MOVIE_ID, RATING)
    cfg = load_config(
        overrides=[
            "svd.rank=2", "svd.max_rounds=6", "svd.tol=0", "svd.blocks=2", "svd.patience=3",
            "svd.power_iters=1",
        ]
    )
    bias = fit_bias(train, cfg=cfg.bias, lo=-10, hi=10)
    model = fit_iterative_svd(
        train, cfg=cfg.svd, bias=bias, seed=derive_seed(1, "t"), lo=-10, hi=10, validation=val
    )
    bias_rmse = regression_metrics(bias.predict(test))["rmse"]
    svd_rmse = regression_metrics(model.predict(test))["rmse"]
    assert svd_rmse < 0.4 * bias_rmse

    h = model.history
    assert list(h[ITERATION]) == list(range(7))
    # round 1 is the plain truncated SVD; imputing keeps improving the hidden entries
    assert h[VALIDATION_RMSE].iloc[-1] < h[VALIDATION_RMSE].iloc[1] < h[VALIDATION_RMSE].iloc[0]
    assert h[TRAIN_RMSE].iloc[1] < h[TRAIN_RMSE].iloc[0]
    long = history_rows(model)
    assert {"train_rmse", "validation_rmse", "objective", "relative_change"} <= set(long[METRIC])



@pytest.mark.slow
def test_truncated_and_iterative_svd_on_ml_latest_small(spark, sample_dir):
    train, test = train_test(spark, sample_dir)
    cfg = load_config(["svd.toml"])
    bias = fit_bias(train, cfg=cfg.bias)
    pairs = test.select(USER_ID, MOVIE_ID, RATING)
    bias_rmse = regression_metrics(bias.predict(pairs))["rmse"]

    svd = registry.fit("svd", train, cfg=cfg, bias=bias)
    svd_rmse = regression_metrics(svd.predict(pairs))["rmse"]
    rows = sweep_rows(svd, pairs)
    assert set(rows[SWEEP_K]) == set(cfg.svd.sweep)

    iterative = fit_iterative_svd(
        train, cfg=cfg.svd, bias=bias, seed=derive_seed(cfg.seed, "iterative_svd")
    )
    iterative_rmse = regression_metrics(iterative.predict(pairs))["rmse"]
    print(f"bias {bias_rmse:.4f}  svd {svd_rmse:.4f}  iterative_svd {iterative_rmse:.4f}")
    assert svd_rmse <= 0.882 and svd_rmse < bias_rmse
    assert iterative_rmse <= 0.875 and iterative_rmse < svd_rmse
