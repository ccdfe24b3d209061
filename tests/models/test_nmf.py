import numpy as np
import pytest

from recspark.config import load_config
from recspark.errors import ConfigError
from recspark.evaluation.rating import regression_metrics
from recspark.models.bias import fit_bias
from recspark.models import registry
from recspark.models.nmf import check_scale, fit_nmf, fit_nmf_als, init_factors
from recspark.schema import (
    FACTORS,
    ITERATION,
    MOVIE_ID,
    MOVIE_IDX,
    OBJECTIVE,
    PERSONALISED,
    PREDICTION,
    RATING,
    TRAIN_RMSE,
    USER_ID,
    USER_IDX,
)
from recspark.seeds import derive_seed
from tests.models._ml_small import train_test


def _reference(t, mask, p, q, reg, iters):
    """Dense NumPy multiplicative updates on the observed entries (the brief's formulas)."""
    n_u, n_i = mask.sum(1)[:, None], mask.sum(0)[:, None]
    tt = np.where(mask, t, 0.0)
    for _ in range(iters):
        p = p * (tt @ q) / (np.where(mask, p @ q.T, 0.0) @ q + reg * n_u * p)
        q = q * (tt.T @ p) / (np.where(mask, p @ q.T, 0.0).T @ p + reg * n_i * q)
    return p, q


@pytest.fixture(scope="module")
def planted(spark):
    """30 users x 25 movies, 60% observed, r = 0.5 + 1.2 · p·q with non-negative rank-3 p, q."""
    g = np.random.default_rng(5)
    m, n = 30, 25
    r = 0.5 + 1.2 * g.random((m, 3)) @ g.random((n, 3)).T
    mask = g.random((m, n)) < 0.6
    mask[np.arange(m), np.arange(m) % n] = True
    mask[np.arange(n), np.arange(n)] = True
    us, ms = np.nonzero(mask)
    rows = [(100 + int(u), 900 + int(i), float(r[u, i]), int(u), int(i)) for u, i in zip(us, ms)]
    df = spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING, USER_IDX, MOVIE_IDX]).cache()
    return df, r, mask


def test_multiplicative_updates_match_numpy_stay_nonnegative_and_never_increase_j(spark, planted):
    df, r, mask = planted
    m, n = r.shape
    cfg = load_config(
        overrides=["nmf.rank=3", "nmf.max_iter=12", "nmf.reg=0.02", "nmf.scale01=true", "nmf.blocks=2"]
    )
    bias = fit_bias(df, cfg=cfg.bias)
    seed = derive_seed(9, "nmf")
    model = fit_nmf(df, cfg=cfg.nmf, bias=bias, seed=seed)

    objective = model.history[OBJECTIVE].to_numpy()
    assert list(model.history[ITERATION]) == list(range(13))
    assert np.all(np.diff(objective) <= 1e-12 * objective[:-1])
    assert objective[-1] < 0.5 * objective[0]
    for table in (model.user_factors, model.item_factors):
        values = np.array([row[FACTORS] for row in table.collect()])
        assert values.shape[1] == 3 and (values >= 0).all()

    lo, scale = 0.5, 4.5
    p0, q0 = init_factors(m, n, rank=3, mean_target=(bias.global_mean - lo) / scale, seed=seed)
    p, q = _reference((r - lo) / scale, mask, p0, q0, 0.02, 12)
    expected = np.clip(lo + scale * p @ q.T, 0.5, 5.0)
    pairs = spark.createDataFrame(
        [(100 + u, 900 + i) for u in range(m) for i in range(n)], [USER_ID, MOVIE_ID]
    )
    got = np.zeros((m, n))
    for row in model.predict(pairs).collect():
        got[row[USER_ID] - 100, row[MOVIE_ID] - 900] = row[PREDICTION]
    np.testing.assert_allclose(got, expected, atol=1e-9)
    # the recorded training RMSE is that of the final factors, on the rating scale
    train_rmse = np.sqrt(np.mean((expected - r)[mask] ** 2))
    assert model.history[TRAIN_RMSE].iloc[-1] == pytest.approx(train_rmse, rel=1e-9)


def test_validation_keeps_the_best_iteration_and_unknown_ids_fall_back(spark, planted):
    df, _, _ = planted
    train, val = df.randomSplit([0.8, 0.2], seed=1)
    cfg = load_config(overrides=["nmf.rank=3", "nmf.max_iter=8", "nmf.reg=0.0", "nmf.blocks=2"])
    bias = fit_bias(train, cfg=cfg.bias)
    model = registry.fit("nmf", train, cfg=cfg, bias=bias, validation=val)
    h = model.history
    best = int(model.settings["best_iteration"])
    assert h["validation_rmse"].iloc[best] == h["validation_rmse"].min()
    pairs = spark.createDataFrame([(1, 900), (100, 1), (100, 900)], [USER_ID, MOVIE_ID])
    got = {(r[USER_ID], r[MOVIE_ID]): r for r in model.predict(pairs).collect()}
    expected = {(r[USER_ID], r[MOVIE_ID]): r[PREDICTION] for r in bias.predict(pairs).collect()}
    for pair in [(1, 900), (100, 1)]:
        assert got[pair][PERSONALISED] is False
        assert got[pair][PREDICTION] == pytest.approx(expected[pair])
    assert got[(100, 900)][PERSONALISED] is True


def test_nonnegative_als_fits_planted_data_with_nonnegative_factors(spark, planted):
    df, _, _ = planted
    cfg = load_config(overrides=["nmf.rank=3", "nmf.als_reg=0.001", "nmf.als_max_iter=15", "nmf.blocks=2"])
    bias = fit_bias(df, cfg=cfg.bias)
    model = fit_nmf_als(df, cfg=cfg.nmf, bias=bias, seed=3)
    data = df.select(USER_ID, MOVIE_ID, RATING)
    nmf_rmse = regression_metrics(model.predict(data))["rmse"]
    bias_rmse = regression_metrics(bias.predict(data))["rmse"]
    assert nmf_rmse < 0.5 * bias_rmse
    for table in (model.user_factors, model.item_factors):
        assert (np.array([row[FACTORS] for row in table.collect()]) >= 0).all()


def test_bad_nmf_settings_are_rejected():
    with pytest.raises(ConfigError, match="nmf.reg.*nmf.solver"):
        load_config(overrides=["nmf.solver=gradient", "nmf.reg=-1"])
    with pytest.raises(ConfigError, match="scale01"):
        check_scale(load_config().nmf, lo=-1.0)


@pytest.mark.slow
def test_nmf_on_ml_latest_small(spark, sample_dir):
    train, test = train_test(spark, sample_dir)
    cfg = load_config(["nmf.toml"])
    bias = fit_bias(train, cfg=cfg.bias)
    model = registry.fit("nmf", train, cfg=cfg, bias=bias)
    rmse = regression_metrics(model.predict(test.select(USER_ID, MOVIE_ID, RATING)))["rmse"]
    print(f"nmf {rmse:.4f}")
    assert rmse <= 0.925
    objective = model.history[OBJECTIVE].to_numpy()
    assert np.all(np.diff(objective) <= 1e-12 * objective[:-1])
