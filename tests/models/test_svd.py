import numpy as np
import pytest

from recspark.config import load_config
from recspark.errors import ConfigError
from recspark.evaluation.rating import regression_metrics
from recspark.evaluation.sweeps import sweep_rows
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.lowrank import STORAGE
from recspark.models.svd import (
    fit_iterative_svd,
    fit_truncated_svd,
    history_rows,
    randomized_svd,
    spark_svd_mode,
)
from recspark.blocks import build_blocks
from recspark.schema import (
    BIAS,
    ITERATION,
    METRIC,
    MOVIE_ID,
    MOVIE_IDX,
    PERSONALISED,
    PREDICTION,
    RATING,
    SWEEP_K,
    TRAIN_RMSE,
    USER_ID,
    USER_IDX,
    VALIDATION_RMSE,
)
from recspark.seeds import derive_seed
from tests.models._ml_small import train_test


def _ratings_frame(spark, r, mask):
    """Rows for the observed entries of a dense matrix; ids differ from the indices."""
    us, ms = np.nonzero(mask)
    rows = [(1000 + 7 * int(u), 5000 + 3 * int(i), float(r[u, i]), int(u), int(i)) for u, i in zip(us, ms)]
    return spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING, USER_IDX, MOVIE_IDX])


def _bias_arrays(bias, m, n):
    ub = {r[USER_ID]: r[BIAS] for r in bias.user_bias.collect()}
    ib = {r[MOVIE_ID]: r[BIAS] for r in bias.item_bias.collect()}
    return (
        np.array([ub.get(1000 + 7 * u, 0.0) for u in range(m)]),
        np.array([ib.get(5000 + 3 * i, 0.0) for i in range(n)]),
    )


def _predictions(model, spark, pairs):
    df = spark.createDataFrame(
        [(1000 + 7 * int(u), 5000 + 3 * int(i)) for u, i in pairs], [USER_ID, MOVIE_ID]
    )
    got = {(r[USER_ID], r[MOVIE_ID]): r for r in model.predict(df).collect()}
    return np.array([got[(1000 + 7 * int(u), 5000 + 3 * int(i))][PREDICTION] for u, i in pairs])


@pytest.fixture(scope="module")
def sparse_fit(spark):
    """40 users x 120 movies, ~30% observed, half-star ratings (n >= 100: distributed ARPACK),
    and a truncated SVD of rank 5 with a sweep up to 8 components fitted once on it."""
    g = np.random.default_rng(7)
    m, n = 40, 120
    r = np.round(np.clip(3.5 + g.normal(0, 1.0, (m, n)), 0.5, 5.0) * 2) / 2
    mask = g.random((m, n)) < 0.3
    mask[np.arange(m), np.arange(m)] = True  # every user and movie index appears
    mask[np.arange(n) % m, np.arange(n)] = True
    df = _ratings_frame(spark, r, mask).cache()
    cfg = load_config(overrides=["svd.rank=5", "svd.blocks=2", "svd.sweep=[2, 8]"])
    bias = fit_bias(df, cfg=cfg.bias)
    model = registry.fit("svd", df, cfg=cfg, bias=bias)
    return df, r, mask, bias, model


def test_truncated_svd_matches_numpy_svd_of_the_baseline_residuals(spark, sparse_fit):
    df, r, mask, bias, model = sparse_fit
    m, n, k = r.shape[0], r.shape[1], 5
    bu, bi = _bias_arrays(bias, m, n)
    baseline = bias.global_mean + bu[:, None] + bi[None, :]
    resid = np.where(mask, r - baseline, 0.0)
    u, s, vt = np.linalg.svd(resid)
    assert spark_svd_mode(n, 8) == "dist-eigs"
    np.testing.assert_allclose(model.singular_values, s[:8], rtol=1e-6)
    assert model.rank == k and model.sweep_model is not None and model.sweep_model.rank == 8

    low = (u[:, :k] * s[:k]) @ vt[:k]
    pairs = [(uu, ii) for uu in range(0, m, 3) for ii in range(0, n, 7)]  # observed and missing
    expected = np.clip([baseline[a, b] + low[a, b] for a, b in pairs], 0.5, 5.0)
    np.testing.assert_allclose(_predictions(model, spark, pairs), expected, atol=1e-6)
    factors = np.array(model.item_factors.orderBy(MOVIE_IDX).first()["factors"])
    assert factors.shape == (k,)


def test_user_mean_fill_in_local_gram_mode_matches_numpy(spark):
    g = np.random.default_rng(3)
    m, n, k = 25, 30, 4
    r = np.round(np.clip(3 + g.normal(0, 1.2, (m, n)), 0.5, 5.0) * 2) / 2
    mask = g.random((m, n)) < 0.5
    mask[np.arange(m), np.arange(m)] = True
    mask[np.arange(n) % m, np.arange(n)] = True
    df = _ratings_frame(spark, r, mask)
    cfg = load_config(overrides=[f"svd.rank={k}", "svd.fill=user_mean", "svd.blocks=2"])
    bias = fit_bias(df, cfg=cfg.bias)
    model = fit_truncated_svd(df, cfg=cfg.svd, bias=bias)

    means = np.array([r[i, mask[i]].mean() for i in range(m)])
    resid = np.where(mask, r - means[:, None], 0.0)
    u, s, vt = np.linalg.svd(resid)
    assert spark_svd_mode(n, k) == "local-eigs"
    np.testing.assert_allclose(model.singular_values, s[:k], rtol=1e-6)
    low = (u[:, :k] * s[:k]) @ vt[:k]
    pairs = [(a, b) for a in range(m) for b in range(0, n, 4)]
    expected = np.clip([means[a] + low[a, b] for a, b in pairs], 0.5, 5.0)
    np.testing.assert_allclose(_predictions(model, spark, pairs), expected, atol=1e-6)


def test_unknown_ids_fall_back_to_the_bias_model(spark, sparse_fit):
    _, _, _, bias, model = sparse_fit
    pairs = spark.createDataFrame([(1, 5000), (1000, 2), (1000, 5000)], [USER_ID, MOVIE_ID])
    got = {(r[USER_ID], r[MOVIE_ID]): r for r in model.predict(pairs).collect()}
    expected = {(r[USER_ID], r[MOVIE_ID]): r[PREDICTION] for r in bias.predict(pairs).collect()}
    for pair in [(1, 5000), (1000, 2)]:
        assert got[pair][PERSONALISED] is False
        assert got[pair][PREDICTION] == pytest.approx(expected[pair])
    assert got[(1000, 5000)][PERSONALISED] is True


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
    train = _ratings_frame(spark, r, observed).cache()
    val = _ratings_frame(spark, r, hidden_val)
    test = _ratings_frame(spark, r, hidden_test).select(USER_ID, MOVIE_ID, RATING)
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


def test_bad_svd_settings_are_rejected():
    # both problems reported at once, before any Spark work
    with pytest.raises(ConfigError, match="svd.rank.*svd.fill"):
        load_config(overrides=["svd.fill=median", "svd.rank=0"])


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
