"""The ALS package surface (recspark.models.als): config checks, the spec's fit, save/load,
and the accuracy target on ml-latest-small."""

from __future__ import annotations

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recspark.config import load_config
from recspark.errors import ConfigError
from recspark.evaluation.rating import regression_metrics
from recspark.models import registry
from recspark.models.als import AlsConfig
from recspark.models.bias import BiasConfig, fit_bias
from recspark.models.factor import FactorModel
from recspark.schema import MOVIE_ID, PERSONALISED, RATING, USER_ID
from recspark.split import random_split
from tests.models.als._reference import load_sample, ratings_frame, small_matrix


def test_bad_settings_are_rejected_before_any_work():
    with pytest.raises(ConfigError, match="als.mode: input should be 'auto', 'broadcast' or 'routed'"):
        load_config(overrides=["als.mode=fast"])
    with pytest.raises(ConfigError, match="reg_factors: input should be greater than 0"):
        AlsConfig().replace(reg_factors=0.0)


def test_save_and_load_give_identical_predictions(spark, tmp_path):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask)
    bias = fit_bias(df, cfg=BiasConfig())
    cfg = load_config(overrides=["als.rank=2", "als.max_iter=3", "als.blocks=2"])
    model = registry.fit("als", df, cfg=cfg, bias=bias)
    path = str(tmp_path / "als")
    model.save(path)
    loaded = FactorModel.load(spark, path)

    pairs = df.select(USER_ID, MOVIE_ID, RATING).unionByName(
        spark.createDataFrame([(999, 500, 3.0), (100, 999, 2.0)], [USER_ID, MOVIE_ID, RATING])
    )
    before = model.predict(pairs).orderBy(USER_ID, MOVIE_ID)
    assert_df_equality(loaded.predict(pairs).orderBy(USER_ID, MOVIE_ID), before)
    assert before.where(~F.col(PERSONALISED)).count() == 2
    assert loaded.global_mean == model.global_mean and loaded.rank == 2
    assert loaded.settings["rank"] == 2 and loaded.settings["blocks"] == 2
    pd.testing.assert_frame_equal(loaded.history, model.history)


@pytest.mark.slow
def test_ml_latest_small_test_rmse_with_tuned_settings(spark, sample_dir):
    cfg = load_config(["als.toml"])
    ratings = load_sample(spark, sample_dir)
    train, test = random_split(ratings, test_fraction=0.2, seed=42)
    train = train.cache()
    bias = fit_bias(train, cfg=cfg.bias, lo=cfg.train.rating_min, hi=cfg.train.rating_max)
    model = registry.fit("als", train, cfg=cfg, bias=bias)
    rmse = regression_metrics(model.predict(test))["rmse"]
    assert rmse <= 0.860
