from __future__ import annotations

import numpy as np
import pandas as pd

from recspark.plots import convergence_chart, pca_scatter, sweep_chart
from recspark.schema import ITERATION, METRIC, MODEL, SWEEP_K, TRAIN_RMSE, VALIDATION_RMSE, VALUE

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_chart_is_a_png(spark, tmp_path):
    rows = pd.DataFrame(
        [{MODEL: "svd", SWEEP_K: k, METRIC: m, VALUE: v}
         for k, m, v in [(1, "rmse", 0.9), (1, "mae", 0.7), (4, "rmse", 0.85), (4, "mae", 0.66)]]
    )
    assert sweep_chart(spark, rows, out_dir=str(tmp_path)) == f"{tmp_path}/svd_sweep.png"
    history = pd.DataFrame({ITERATION: [1, 2], TRAIN_RMSE: [0.9, 0.8], VALIDATION_RMSE: [np.nan, 0.85]})
    convergence_chart(spark, history, path=str(tmp_path / "c.png"), title="c")
    coords = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    pca_scatter(spark, coords, np.array([0.6, 0.3]), pd.Series(["a", "b", "a"]),
                path=str(tmp_path / "p.png"), title="p", n_total=3, max_groups=1)
    for name in ("svd_sweep.png", "c.png", "p.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG, name


def test_genre_groups_take_the_first_matching_group():
    from recspark.plots import OTHER_GROUP, genre_group

    assert genre_group("Adventure|Animation|Children|Comedy|Fantasy") == "Children & Animation"
    assert genre_group("Comedy|Horror") == "Horror & Thriller"
    assert genre_group("Drama|Romance") == "Comedy & Romance"
    assert genre_group("Crime|Drama") == "Drama, Crime & War"
    assert genre_group("(no genres listed)") == OTHER_GROUP
    assert genre_group(None) == OTHER_GROUP


def test_sweep_without_mae_and_convergence_without_validation(spark, tmp_path):
    rows = pd.DataFrame([{MODEL: "svd", SWEEP_K: k, METRIC: "rmse", VALUE: v}
                         for k, v in [(2, 0.9), (3, 0.8)]])
    assert (tmp_path / "svd_sweep.png").exists() is False
    sweep_chart(spark, rows, out_dir=str(tmp_path))
    history = pd.DataFrame({ITERATION: [1, 2], TRAIN_RMSE: [0.9, 0.8], VALIDATION_RMSE: [np.nan] * 2})
    convergence_chart(spark, history, path=str(tmp_path / "c.png"), title="c")
    for name in ("svd_sweep.png", "c.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG, name
