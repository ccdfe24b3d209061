import numpy as np
import pytest

from recspark.config import load_config
from recspark.errors import ModelError
from recspark.io import storage
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.mllib_als import MllibAlsModel
from recspark.schema import MOVIE_ID, MOVIE_IDX, PERSONALISED, PREDICTION, RATING, USER_ID, USER_IDX


@pytest.fixture(scope="module")
def planted(spark):
    """A full 30 x 20 matrix r = 3 + p_u · q_i: rank 3 (the constant needs a factor, MLlib has no biases)."""
    rng = np.random.default_rng(0)
    p, q = rng.normal(0, 0.6, (30, 2)), rng.normal(0, 0.6, (20, 2))
    r = 3 + p @ q.T
    rows = [(u + 100, i + 500, float(r[u, i]), u, i) for u in range(30) for i in range(20)]
    return spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING, USER_IDX, MOVIE_IDX]), r


def test_mllib_als_fits_planted_low_rank_far_better_than_bias(spark, planted):
    df, r = planted
    cfg = load_config(overrides=["mllib_als.rank=3", "mllib_als.reg_param=0.001", "mllib_als.max_iter=15",
                                 "train.rating_min=-10", "train.rating_max=10"])
    bias = fit_bias(df, cfg=cfg.bias, lo=-10, hi=10)
    model = registry.fit("mllib_als", df, cfg=cfg, bias=bias)
    pred = model.predict(df.select(USER_ID, MOVIE_ID, RATING)).toPandas()
    als_rmse = np.sqrt(np.mean((pred[RATING] - pred[PREDICTION]) ** 2))
    bias_pred = bias.predict(df.select(USER_ID, MOVIE_ID, RATING)).toPandas()
    bias_rmse = np.sqrt(np.mean((bias_pred[RATING] - bias_pred[PREDICTION]) ** 2))
    assert als_rmse < 0.05 < bias_rmse
    assert pred[PERSONALISED].all()


def test_unknown_ids_fall_back_to_the_bias_model(spark, planted):
    df, _ = planted
    cfg = load_config(overrides=["mllib_als.rank=2", "mllib_als.max_iter=3"])
    bias = fit_bias(df, cfg=cfg.bias)
    model = registry.fit("mllib_als", df, cfg=cfg, bias=bias)
    pairs = spark.createDataFrame([(999, 500), (100, 999), (100, 500)], [USER_ID, MOVIE_ID])
    got = {(r[USER_ID], r[MOVIE_ID]): r for r in model.predict(pairs).collect()}
    expected = {(r[USER_ID], r[MOVIE_ID]): r[PREDICTION] for r in bias.predict(pairs).collect()}
    for pair in [(999, 500), (100, 999)]:
        assert got[pair][PERSONALISED] is False
        assert got[pair][PREDICTION] == pytest.approx(expected[pair])
    assert got[(100, 500)][PERSONALISED] is True
    assert model.user_factors.count() == 30
    assert len(model.item_factors.first()["factors"]) == 2


def test_a_saved_model_loads_back_and_scores_the_same(spark, planted, tmp_path):
    df, _ = planted
    cfg = load_config(overrides=["mllib_als.rank=2", "mllib_als.max_iter=3", "mllib_als.num_blocks=2"])
    model = registry.fit("mllib_als", df, cfg=cfg, bias=fit_bias(df, cfg=cfg.bias))
    model.save(str(tmp_path / "m"))
    loaded = MllibAlsModel.load(spark, str(tmp_path / "m"))
    pairs = df.select(USER_ID, MOVIE_ID).unionByName(
        spark.createDataFrame([(999, 500), (100, 999)], [USER_ID, MOVIE_ID]))
    key = [USER_ID, MOVIE_ID]
    before = model.predict(pairs).orderBy(*key).toPandas()
    after = loaded.predict(pairs).orderBy(*key).toPandas()
    assert after.equals(before)  # MLlib's own model is saved: the very same floats
    a, b = model.ranking_inputs().scorer, loaded.ranking_inputs().scorer
    assert np.array_equal(a.item_ids, b.item_ids) and np.array_equal(a.item_factors, b.item_factors)
    assert loaded.user_factors.count() == 30


def test_a_half_saved_model_is_refused(spark, planted, tmp_path):
    df, _ = planted
    cfg = load_config(overrides=["mllib_als.rank=2", "mllib_als.max_iter=1", "mllib_als.num_blocks=2"])
    model = registry.fit("mllib_als", df, cfg=cfg, bias=fit_bias(df, cfg=cfg.bias))
    model.save(str(tmp_path / "m"))
    storage.delete(spark, str(tmp_path / "m" / "als"))
    with pytest.raises(ModelError, match="als/ is missing"):
        MllibAlsModel.load(spark, str(tmp_path / "m"))
