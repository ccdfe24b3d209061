from __future__ import annotations

import numpy as np
import pytest

from recspark.config import load_config
from recspark.errors import ConfigError
from recspark.evaluation.rating import regression_metrics
from recspark.evaluation.sweeps import sweep_rows
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.svd import truncate
from recspark.schema import MAE, METRIC, MOVIE_ID, MOVIE_IDX, RATING, RMSE, SWEEP_K, USER_ID, USER_IDX, VALUE


@pytest.fixture(scope="module")
def svd_fit(spark):
    """20 users × 24 movies, half observed, and a rank-2 truncated SVD with a sweep to 6."""
    g = np.random.default_rng(4)
    rows = [
        (10 + u, 300 + i, u, i, float(np.round(g.uniform(1, 5) * 2) / 2))
        for u in range(20)
        for i in range(24)
        if g.random() < 0.5 or u == i % 20
    ]
    df = spark.createDataFrame(rows, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING]).cache()
    cfg = load_config(overrides=["svd.rank=2", "svd.sweep=[1, 6]", "svd.blocks=2"])
    return df, registry.fit("svd", df, cfg=cfg, bias=fit_bias(df, cfg=cfg.bias))


def test_sweep_rows_equal_each_truncated_models_own_metrics(svd_fit):
    df, model = svd_fit
    data = df.select(USER_ID, MOVIE_ID, RATING)
    assert model.sweep_model is not None and model.sweep_model.rank == 6
    assert sorted(set(sweep_rows(model, data)[SWEEP_K])) == [1, 6]  # the fitted svd.sweep
    rows = sweep_rows(model, data, ks=[1, 4, 99])
    assert sorted(set(rows[SWEEP_K])) == [1, 4]  # 99 > computed components: skipped
    for k in (1, 4):
        direct = regression_metrics(truncate(model.sweep_model, k).predict(data))
        got = rows[(rows[SWEEP_K] == k)].set_index(METRIC)[VALUE]
        assert got[RMSE] == pytest.approx(direct[RMSE], rel=1e-9)
        assert got[MAE] == pytest.approx(direct[MAE], rel=1e-9)
    # more components fit the training ratings better
    rmse = rows[rows[METRIC] == RMSE].set_index(SWEEP_K)[VALUE]
    assert rmse[4] < rmse[1]
    with pytest.raises(ConfigError, match="no rank"):
        sweep_rows(model, data, ks=[99])
