"""The ALS trainer (recspark.models.als.trainer) through fit_als: every half-step against
NumPy, broadcast = routed, the recorded history, planted-factor recovery, 50 iterations."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from recspark.evaluation.rating import regression_metrics
from recspark.models.als import AlsConfig, fit_als, init_factors
from recspark.models.bias import BiasConfig, fit_bias
from recspark.models.factor import FactorModel
from recspark.schema import (
    ITERATION,
    MOVIE_ID,
    MOVIE_IDX,
    OBJECTIVE,
    RATING,
    TRAIN_RMSE,
    USER_ID,
    USER_IDX,
    VALIDATION_RMSE,
)
from recspark.seeds import derive_seed
from tests.models.als._reference import (
    N_MOVIES,
    N_USERS,
    RANK,
    SEED,
    dense_objective,
    dense_step,
    hand_bias_model,
    load_sample,
    ratings_frame,
    small_matrix,
    table_of,
)


@pytest.mark.parametrize("weighted", [True, False])
def test_every_half_step_matches_numpy(spark, weighted):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask)
    cfg = AlsConfig(
        rank=RANK, max_iter=2, reg_factors=0.25, reg_bias=0.15, weighted_reg=weighted,
        blocks=3, mode="broadcast",
    )
    movie_bias = {500 + i: 0.1 * i - 0.4 for i in range(N_MOVIES)}
    bias = hand_bias_model(spark, movie_bias=movie_bias, user_bias={}, mu=3.0)

    model = fit_als(df, cfg=cfg, seed=SEED, bias=bias)

    mu = float(ratings[mask].mean())
    assert model.global_mean == pytest.approx(mu, abs=1e-12)
    items = np.zeros((N_MOVIES, RANK + 1))
    items[:, :RANK] = init_factors(
        np.arange(N_MOVIES), rank=RANK, seed=derive_seed(SEED, "init", "movies"), std=cfg.init_std
    )
    items[:, RANK] = [movie_bias[500 + i] for i in range(N_MOVIES)]
    history = []
    for _ in range(2):
        users = dense_step(ratings, mask, items, mu=mu, cfg=cfg)  # user half-step
        items = dense_step(ratings.T, mask.T, users, mu=mu, cfg=cfg)  # movie half-step
        history.append(dense_objective(ratings, mask, users, items, mu=mu, cfg=cfg))
    np.testing.assert_allclose(table_of(model.user_factors, USER_IDX, N_USERS, RANK), users, atol=1e-5)
    np.testing.assert_allclose(table_of(model.item_factors, MOVIE_IDX, N_MOVIES, RANK), items, atol=1e-5)
    np.testing.assert_allclose(model.history[TRAIN_RMSE], [h[0] for h in history], rtol=1e-8)
    np.testing.assert_allclose(model.history[OBJECTIVE], [h[1] for h in history], rtol=1e-8)


def test_broadcast_and_routed_modes_give_the_same_factors(spark):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask).cache()
    base = AlsConfig(rank=RANK, max_iter=3, reg_factors=0.1, reg_bias=0.05, blocks=3, checkpoint_every=1)
    # 12 users x 4 doubles = 384 bytes does not fit under 320 bytes; 9 movies (288) does.
    tiny = 320 / 2**20
    fits = {
        mode: fit_als(df, cfg=base.replace(**over), seed=SEED)
        for mode, over in {
            "broadcast": {"mode": "broadcast"},
            "routed": {"mode": "routed"},
            "mixed": {"mode": "auto", "broadcast_max_mb": tiny},
        }.items()
    }
    ref = fits["broadcast"]
    for mode in ("routed", "mixed"):
        got = fits[mode]
        for df_name, idx, n in (("user_factors", USER_IDX, N_USERS), ("item_factors", MOVIE_IDX, N_MOVIES)):
            np.testing.assert_allclose(
                table_of(getattr(got, df_name), idx, n, RANK),
                table_of(getattr(ref, df_name), idx, n, RANK),
                rtol=0, atol=1e-10,
            )
        np.testing.assert_allclose(got.history[OBJECTIVE], ref.history[OBJECTIVE], rtol=1e-12)


def test_the_factors_do_not_depend_on_the_number_of_blocks(spark):
    # als.blocks = 0 lets the count follow the cluster's cores: only safe because every
    # row's sums are formed in the same order whatever block holds it (bit for bit).
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask).cache()
    base = AlsConfig(rank=RANK, max_iter=3, reg_factors=0.1, reg_bias=0.05, checkpoint_every=1)
    fits = {b: fit_als(df, cfg=base.replace(blocks=b), seed=SEED) for b in (0, 1, 5, 13)}
    ref = fits[1]
    for b in (0, 5, 13):
        for df_name, idx, n in (("user_factors", USER_IDX, N_USERS), ("item_factors", MOVIE_IDX, N_MOVIES)):
            np.testing.assert_array_equal(
                table_of(getattr(fits[b], df_name), idx, n, RANK),
                table_of(getattr(ref, df_name), idx, n, RANK),
            )
        np.testing.assert_allclose(fits[b].history[OBJECTIVE], ref.history[OBJECTIVE], rtol=1e-12)


def test_history_agrees_with_predictions_and_objective_never_increases(spark):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask)
    train = df.where(F.xxhash64(USER_ID, MOVIE_ID) % 4 != 0).cache()
    held = df.where(F.xxhash64(USER_ID, MOVIE_ID) % 4 == 0)
    # a user and a movie the model never saw: scored by the bias fallback
    unknown = spark.createDataFrame(
        [(999, 500, 99, 0, 4.0), (100, 999, 0, 99, 1.0)], [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING]
    )
    validation = held.unionByName(unknown).cache()
    bias = fit_bias(train, cfg=BiasConfig())
    cfg = AlsConfig(rank=2, max_iter=6, reg_factors=0.05, reg_bias=0.05, blocks=2, mode="routed")

    model = fit_als(train, cfg=cfg, seed=SEED, bias=bias, validation=validation)

    h = model.history
    assert list(h[ITERATION]) == list(range(1, 7))
    assert (np.diff(h[OBJECTIVE]) <= 1e-9 * h[OBJECTIVE].iloc[0]).all()
    scored = model.predict(validation)
    assert h[VALIDATION_RMSE].iloc[-1] == pytest.approx(regression_metrics(scored)["rmse"], rel=1e-9)
    wide = FactorModel(**{**model.__dict__, "lo": -100.0, "hi": 100.0})
    assert h[TRAIN_RMSE].iloc[-1] == pytest.approx(regression_metrics(wide.predict(train))["rmse"], rel=1e-9)


def test_recovers_a_planted_biased_low_rank_matrix(spark):
    rng = np.random.default_rng(5)
    nu, ni = 40, 30
    p, q = rng.normal(0, 0.5, (nu, 2)), rng.normal(0, 0.5, (ni, 2))
    truth = 3.0 + rng.normal(0, 0.4, (nu, 1)) + rng.normal(0, 0.4, (1, ni)) + p @ q.T
    observed = rng.random((nu, ni)) < 0.7
    df = ratings_frame(spark, truth, observed)
    held = ratings_frame(spark, truth, ~observed)
    # train RMSE 0.24, 0.12, 0.011, 0.0024, 6.4e-4, 1.9e-4, 8e-5, then 6e-5 to 40 iterations
    cfg = AlsConfig(rank=2, max_iter=12, reg_factors=1e-4, reg_bias=1e-4, weighted_reg=False, blocks=2)
    model = fit_als(df, cfg=cfg, seed=SEED, lo=-10, hi=10)

    als_rmse = regression_metrics(model.predict(held))["rmse"]
    bias_rmse = regression_metrics(fit_bias(df, cfg=BiasConfig(), lo=-10, hi=10).predict(held))["rmse"]
    assert model.history[TRAIN_RMSE].iloc[-1] < 1e-3
    assert als_rmse < 0.05 < 0.3 < bias_rmse


def test_twenty_iterations_on_ml_latest_small_cut_lineage_five_times(spark, sample_dir):
    # one block: the lineage grows by the same stages per iteration as with two, at half
    # the time; the NumPy-match and mode tests cover routing between blocks, and
    # tests/models/test_iterative.py which iterations checkpoint (this test ran 50
    # iterations, 55-61 s, until session 23)
    ratings = load_sample(spark, sample_dir).cache()
    cfg = AlsConfig(rank=2, max_iter=20, blocks=1, mode="routed", checkpoint_every=4)
    model = fit_als(ratings, cfg=cfg, seed=SEED)
    h = model.history
    assert len(h) == 20 and h[TRAIN_RMSE].iloc[-1] < h[TRAIN_RMSE].iloc[0] < 1.0
    assert (np.diff(h[OBJECTIVE]) <= 1e-9 * h[OBJECTIVE].iloc[0]).all()
    assert model.user_factors.count() == 610

