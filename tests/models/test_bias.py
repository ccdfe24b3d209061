import pytest
from chispa import assert_approx_df_equality

from recspark.errors import ModelError
from recspark.models import bias as bias_module
from recspark.models.bias import BiasConfig, BiasModel, fit_bias
from recspark.models.popularity import fit_popularity
from recspark.schema import BIAS, MOVIE_ID, PERSONALISED, PREDICTION, RATING, USER_ID
from recspark.session import sql_settings

MU = 11 / 3


@pytest.fixture(scope="module")
def ratings(spark):
    return spark.createDataFrame(
        [(1, 1, 4.0), (1, 2, 2.0), (2, 1, 5.0)], [USER_ID, MOVIE_ID, RATING]
    )


def test_one_round_of_damped_biases_by_hand(spark, ratings):
    model = fit_bias(ratings, cfg=BiasConfig(rounds=1, user_reg=1.0, item_reg=1.0))
    assert model.global_mean == pytest.approx(MU)
    # b_i = Σ(r − μ) / (n_i + 1): movie 1 → (4 + 5 − 2μ)/3, movie 2 → (2 − μ)/2
    expected_items = spark.createDataFrame([(1, 5 / 9), (2, -5 / 6)], [MOVIE_ID, BIAS])
    # b_u = Σ(r − μ − b_i) / (n_u + 1): user 1 → −19/54, user 2 → 7/18
    expected_users = spark.createDataFrame([(1, -19 / 54), (2, 7 / 18)], [USER_ID, BIAS])
    assert_approx_df_equality(model.item_bias, expected_items, 1e-9, ignore_row_order=True)
    assert_approx_df_equality(model.user_bias, expected_users, 1e-9, ignore_row_order=True)


def test_unregularised_biases_fit_an_additive_matrix_exactly(spark):
    # r = 3 + a_u + c_i on a full 3 x 3 grid: alternating updates converge to a perfect fit.
    a, c = {1: -1.0, 2: 0.0, 3: 1.0}, {1: 0.5, 2: 0.0, 3: -0.5}
    rows = [(u, i, 3 + a[u] + c[i]) for u in a for i in c]
    df = spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING])
    model = fit_bias(df, cfg=BiasConfig(rounds=5, user_reg=0.0, item_reg=0.0))
    errors = [r[RATING] - r[PREDICTION] for r in model.predict(df).collect()]
    assert max(abs(e) for e in errors) < 1e-9


@pytest.mark.parametrize("limit, join", [(None, "BroadcastHashJoin"), (0, "SortMergeJoin")])
def test_fitted_tables_are_joined_by_broadcast_under_the_size_limit(spark, ratings, monkeypatch, limit, join):
    # Spark cannot size the checkpointed tables; left to itself it sort-merge joins every row
    if limit is not None:
        monkeypatch.setattr(bias_module, "BROADCAST_MAX_BYTES", limit)
    with sql_settings(spark, {"spark.sql.autoBroadcastJoinThreshold": "-1",
                              "spark.sql.adaptive.enabled": "false"}):
        model = fit_bias(ratings, cfg=BiasConfig(rounds=2))
        plan = model.predict(ratings)._jdf.queryExecution().executedPlan().toString()
    assert plan.count(join) == 2 and plan.count("Join") == 2


def test_prediction_falls_back_and_clips(spark, ratings):
    model = fit_bias(ratings, cfg=BiasConfig(rounds=1, user_reg=1.0, item_reg=1.0), lo=0.5, hi=3.8)
    pairs = spark.createDataFrame([(1, 2), (9, 2), (9, 9), (2, 1)], [USER_ID, MOVIE_ID])
    got = {(r[USER_ID], r[MOVIE_ID]): (r[PREDICTION], r[PERSONALISED]) for r in model.predict(pairs).collect()}
    assert got[(1, 2)] == (pytest.approx(MU - 19 / 54 - 5 / 6), True)
    assert got[(9, 2)] == (pytest.approx(MU - 5 / 6), False)  # unseen user: μ + b_i
    assert got[(9, 9)] == (pytest.approx(MU), False)  # nothing known: μ
    assert got[(2, 1)] == (pytest.approx(3.8), True)  # μ + 7/18 + 5/9 = 4.61 clipped to 3.8


def test_a_saved_model_loads_back_and_predicts_the_same(spark, ratings, tmp_path):
    model = fit_bias(ratings, cfg=BiasConfig(rounds=2, user_reg=1.0, item_reg=1.0), lo=1.0, hi=4.5)
    model.save(str(tmp_path / "bias"))
    loaded = BiasModel.load(spark, str(tmp_path / "bias"))
    assert (loaded.global_mean, loaded.lo, loaded.hi, loaded.name) == (model.global_mean, 1.0, 4.5, "bias")
    pairs = spark.createDataFrame([(1, 1), (2, 2), (9, 1), (1, 9)], [USER_ID, MOVIE_ID])
    before = {(r[USER_ID], r[MOVIE_ID]): (r[PREDICTION], r[PERSONALISED]) for r in model.predict(pairs).collect()}
    after = {(r[USER_ID], r[MOVIE_ID]): (r[PREDICTION], r[PERSONALISED]) for r in loaded.predict(pairs).collect()}
    assert after == before and after[(9, 1)][1] is False


def test_loading_another_models_folder_says_what_to_do(spark, ratings, tmp_path):
    fit_popularity(ratings).save(str(tmp_path / "popularity"))
    with pytest.raises(ModelError, match="not a version-1 bias model .* re-train it"):
        BiasModel.load(spark, str(tmp_path / "popularity"))
