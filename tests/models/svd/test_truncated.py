"""Truncated SVD (recspark.models.svd.truncated) against NumPy's SVD, and the rank sweep of
the svd package."""

import numpy as np
import pytest

from recspark.config import load_config
from recspark.errors import ConfigError
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.svd.truncated import fit_truncated_svd, spark_svd_mode
from recspark.schema import (
    BIAS,
    MOVIE_ID,
    MOVIE_IDX,
    PERSONALISED,
    PREDICTION,
    USER_ID,
)
from tests.models.svd._frames import ratings_frame


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
    df = ratings_frame(spark, r, mask).cache()
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
    df = ratings_frame(spark, r, mask)
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


def test_bad_svd_settings_are_rejected():
    # both problems reported at once, before any Spark work
    with pytest.raises(ConfigError, match="svd.rank.*svd.fill"):
        load_config(overrides=["svd.fill=median", "svd.rank=0"])

