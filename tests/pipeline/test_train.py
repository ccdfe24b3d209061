import logging
import tomllib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recspark.config import config_from_dict
from recspark.io import storage
from recspark.pipeline.train import write_history
from recspark.schema import (
    ITERATION,
    METRIC,
    MODEL,
    PERSONALISED,
    PREDICTION,
    RATING,
    SPLIT,
    TRAIN_RMSE,
    VALIDATION_RMSE,
    VALUE,
)


@pytest.mark.slow
def test_train_job_end_to_end_on_ml_latest_small(spark, sample_dir, tmp_path, run_job_script):
    common = [
        "--set", f"data.dir={sample_dir}",
        "--set", f"ingest.output_dir={tmp_path}/ingest",
        "--set", f"train.output_dir={tmp_path}/runs",
    ]
    assert run_job_script("ingest", common) == 0
    assert run_job_script("train", common + ["--set", "train.run_id=e2e"]) == 0

    run = f"{tmp_path}/runs/e2e"
    metrics = spark.read.parquet(f"{run}/metrics").toPandas()

    def value(model, split, metric):
        hit = metrics[(metrics[MODEL] == model) & (metrics[SPLIT] == split) & (metrics[METRIC] == metric)]
        assert len(hit) == 1, (model, split, metric)
        return float(hit[VALUE].iloc[0])

    # issue acceptance: random 80/20 split, seed 42
    assert value("bias", "random/test", "rmse") <= 0.895
    assert value("mllib_als", "random/test", "rmse") <= 0.885
    assert value("mllib_als", "random/test", "rmse") < value("mllib_als", "random/train", "rmse") + 0.5

    predictions = spark.read.parquet(f"{run}/predictions").toPandas()
    test_rows = value("bias", "random/test", "rows")
    assert 0.19 * 100_836 < test_rows < 0.21 * 100_836
    for model in ("bias", "mllib_als"):
        mine = predictions[predictions[MODEL] == model]
        assert len(mine) == test_rows  # no test row dropped
        assert mine[PREDICTION].between(0.5, 5.0).all()
        rmse = ((mine[RATING] - mine[PREDICTION]) ** 2).mean() ** 0.5
        assert rmse == pytest.approx(value(model, "random/test", "rmse"))
        assert mine[PERSONALISED].mean() == pytest.approx(value(model, "random/test", "personalised_share"))
    # unseen movies in test exist and fall back to the bias model
    assert 0.9 < value("mllib_als", "random/test", "personalised_share") < 1.0

    # the default extra split: every model refitted on leave-last-out, one held-out rating per
    # user, ranked next to the popularity baseline in the same metrics table
    assert value("bias", "leave_last_out/test", "rows") == 610
    for model in ("mllib_als", "popularity"):
        for split in ("random/test", "leave_last_out/test"):
            assert 0.0 <= value(model, split, "hit_rate@10") <= 1.0
            assert value(model, split, "precision@10") <= value(model, split, "hit_rate@10")
        # leave-last-out: one relevant item per user, so recall@10 = hit rate@10
        assert value(model, "leave_last_out/test", "recall@10") == pytest.approx(
            value(model, "leave_last_out/test", "hit_rate@10")
        )
    # the default models: popularity is fitted, saved and ranked like any model; it cannot
    # predict, so it has no predictions and no RMSE
    assert storage.exists(spark, f"{run}/models/popularity/model.json")
    assert set(predictions[MODEL]) == {"bias", "mllib_als"}
    assert not ((metrics[MODEL] == "popularity") & (metrics[METRIC] == "rmse")).any()
    lists = spark.read.parquet(f"{run}/splits/leave_last_out/recommendations")
    assert lists.groupBy("user_id", "model").count().where("count != 10").count() == 0

    saved = config_from_dict(tomllib.loads(storage.read_text(spark, f"{run}/config.toml")))
    assert saved.train.run_id == "e2e" and saved.seed == 42


def test_unknown_model_name_is_a_clear_error(spark, tmp_path, run_job_script, caplog):
    caplog.set_level(logging.ERROR)
    code = run_job_script("train", ["--set", "train.models=bias,als2", "--set", f"ingest.output_dir={tmp_path}/none"])
    assert code == 2
    assert "unknown model 'als2'; choose from bias, mllib_als, als" in caplog.text


def test_missing_ingest_output_says_to_run_ingest(spark, tmp_path, run_job_script, caplog):
    caplog.set_level(logging.ERROR)
    assert run_job_script("train", ["--set", f"ingest.output_dir={tmp_path}/none"]) == 2
    assert "ingest" in caplog.text and str(tmp_path / "none") in caplog.text


def test_write_history_writes_parquet_png_and_metric_points(spark, tmp_path):
    history = pd.DataFrame(
        {ITERATION: [1, 2, 3], TRAIN_RMSE: [0.9, 0.8, 0.75], VALIDATION_RMSE: [np.nan, 0.9, 0.89]}
    )
    values = write_history(spark, SimpleNamespace(name="hand", history=history), str(tmp_path))
    assert values == {
        "train_rmse@iter=001": 0.9, "train_rmse@iter=002": 0.8, "train_rmse@iter=003": 0.75,
        "validation_rmse@iter=002": 0.9, "validation_rmse@iter=003": 0.89,
    }
    back = pd.read_parquet(tmp_path / "hand_history").sort_values(ITERATION).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, history, check_dtype=False)
    assert (tmp_path / "hand_convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cross_validated_run_writes_per_fold_rows_their_summary_and_a_leaderboard(
    spark, tmp_path, run_job_script
):
    from tests.pipeline.test_new_model import ingested

    common = ingested(tmp_path, run_job_script)
    args = ["--set", "train.run_id=cv", "--set", "train.models=bias,popularity",
            "--set", "train.folds=3", "--set", "recommend.n=3", "--set", "recommend.k=3",
            "--set", "train.leaderboard_by=ndcg"]
    assert run_job_script("train", common + args) == 0

    run = tmp_path / "runs" / "cv"
    metrics = pd.read_parquet(run / "metrics")
    per_fold = metrics[metrics["fold"].notna()]
    rows = per_fold[(per_fold[MODEL] == "bias") & (per_fold[METRIC] == "rows")]
    assert sorted(rows["fold"]) == [0, 1, 2] and set(rows[SPLIT]) == {"kfold/test"}
    ratings = pd.read_parquet(tmp_path / "ingest" / "ratings")
    assert rows[VALUE].sum() == len(ratings)  # every rating tested exactly once
    rmse = per_fold[(per_fold[MODEL] == "bias") & (per_fold[METRIC] == "rmse")][VALUE]
    summary = metrics[metrics["fold"].isna()].set_index([MODEL, SPLIT, METRIC])[VALUE]
    assert summary[("bias", "kfold/test", "rmse")] == pytest.approx(rmse.mean())
    assert summary[("bias", "kfold/test", "rmse_std")] == pytest.approx(rmse.std(ddof=1))
    assert summary[("popularity", "kfold/test", "ndcg@3")] >= 0
    assert summary[("bias", "kfold/train", "fit_seconds")] > 0  # the baseline's fit counts

    board = pd.read_parquet(run / "leaderboard")
    assert board[MODEL].tolist() == ["popularity", "bias"]  # by NDCG@3; bias cannot rank
    assert board.loc[1, "rmse"] == pytest.approx(rmse.mean())
    assert pd.read_csv(run / "leaderboard.csv")[MODEL].tolist() == ["popularity", "bias"]
    assert (run / "folds" / "2" / "recommendations").is_dir()
