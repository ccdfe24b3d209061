import logging
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recspark.config import config_from_dict, default_config
from recspark.io import runs, storage
from recspark.pipeline import train as train_pipeline
from recspark.pipeline.train import write_history, write_metrics
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
from tests.conftest import REPO


@pytest.mark.slow
def test_train_job_end_to_end_on_ml_latest_small(spark, sample_ingest, tmp_path, run_job_script):
    common = sample_ingest.args + ["--set", f"train.output_dir={tmp_path}/runs"]
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

    # beyond accuracy beside the ranking metrics; the run names its best models
    for model in ("mllib_als", "popularity"):
        assert 0.0 < value(model, "random/test", "ild@10") < 1.0
        assert value(model, "random/test", "novelty@10") > 0.0
        assert 0.0 < value(model, "random/test", "popularity_bias@10") <= 1.0
    # the most popular movies sit at the top percentile; unfiltered mllib_als lists obscure
    # movies (0.29 on this run: see the README's top-N section)
    assert value("popularity", "random/test", "popularity_bias@10") > 0.99
    assert value("popularity", "random/test", "popularity_bias@10") > value(
        "mllib_als", "random/test", "popularity_bias@10"
    )
    best = runs.read_best(spark, run)
    assert best["ranking"][0]["model"] == metrics[metrics[METRIC] == "best_by_ndcg@10"][MODEL].item()
    assert best["rmse"][0]["model"] == metrics[metrics[METRIC] == "best_by_rmse"][MODEL].item()


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


def _scratch(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if "._" in p.name)


_KILLED_AFTER_THE_FIRST_MODEL = """
import os, runpy, signal, sys
from recspark.pipeline import train

fit_and_report = train._fit_and_report

def killed(*args, **kwargs):
    result = fit_and_report(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up runs: as a kill -9 of the driver
    return result

train._fit_and_report = killed
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_a_killed_run_leaves_scratch_that_the_next_run_removes(
    spark, tiny, run_job_script, caplog, tmp_path
):
    _, common = tiny
    runs_dir = tmp_path / "runs"
    args = common + ["--set", "train.run_id=r1", "--set", "train.models=bias,mllib_als",
                     "--set", "spark.checkpoint_dir=", "--set", f"train.output_dir={runs_dir}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_THE_FIRST_MODEL, str(REPO / "jobs" / "train.py"), *args],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    left = _scratch(runs_dir)
    assert [n.split("._")[1].split("-")[0] for n in left] == ["checkpoints", "staging"]
    staging = runs_dir / next(n for n in left if "._staging-" in n)
    assert (staging / "models" / "bias" / "model.json").is_file()  # output was written
    assert not (staging / "metrics").exists()

    caplog.set_level(logging.WARNING, logger="recspark.io.storage")
    assert run_job_script("train", args) == 0
    assert _scratch(runs_dir) == [] and sorted(p.name for p in runs_dir.iterdir()) == ["r1"]
    assert caplog.text.count("left behind by a killed run") == 2
    run = runs_dir / "r1"
    for model in ("bias", "mllib_als"):
        assert (run / "models" / model / "model.json").is_file()
    metrics = pd.read_parquet(run / "metrics")
    assert {"bias", "mllib_als"} <= set(metrics[MODEL]) and (run / "config.toml").is_file()


@pytest.mark.slow
def test_150_mllib_als_iterations_complete_without_a_checkpoint_dir(
    spark, tiny, run_job_script, tmp_path
):
    """Without a checkpoint directory MLlib's ALS never cuts its lineage and dies of
    StackOverflowError well before 150 iterations; the run gives it a folder of its own."""
    _, common = tiny
    sc = spark.sparkContext
    session_dir = sc.getCheckpointDir()
    set_dir = getattr(sc._jsc.sc(), "checkpointDir_$eq")
    set_dir(sc._jvm.scala.Option.apply(None))  # a session without one, as a job starts
    try:
        args = common + ["--set", "train.run_id=long", "--set", "train.models=bias,mllib_als",
                         "--set", "spark.checkpoint_dir=", "--set", "mllib_als.max_iter=150",
                         "--set", "recommend.enabled=false", "--set", f"train.output_dir={tmp_path}"]
        assert run_job_script("train", args) == 0
        assert sc.getCheckpointDir() is None  # restored after the run
    finally:
        set_dir(sc._jvm.scala.Option.apply(session_dir))
    assert _scratch(tmp_path) == []
    metrics = pd.read_parquet(tmp_path / "long" / "metrics")
    rmse = metrics[(metrics[MODEL] == "mllib_als") & (metrics[METRIC] == "rmse")][VALUE]
    assert len(rmse) == 2 and rmse.notna().all()


def test_write_metrics_names_the_best_models_in_the_table_and_best_json(spark, tmp_path):
    metrics = pd.DataFrame(
        [("r", "bias", "random/test", "rmse", 0.87), ("r", "als", "random/test", "rmse", 0.85),
         ("r", "als", "random/test", "hit_rate@10", 0.30), ("r", "popularity", "random/test", "hit_rate@10", 0.58),
         ("r", "als", "random/test", "ndcg@10", 0.06), ("r", "popularity", "random/test", "ndcg@10", 0.16)],
        columns=["run_id", MODEL, SPLIT, METRIC, VALUE],
    )
    cfg = default_config().replace(recommend=default_config().recommend.replace(best_metric="hit_rate"))

    best = write_metrics(spark, cfg, metrics, run_id="r", kind="random", out_dir=str(tmp_path))

    table = spark.read.parquet(str(tmp_path / "metrics")).toPandas()
    winners = table[table[METRIC].str.startswith("best_by_")].set_index(METRIC)
    assert winners[MODEL].to_dict() == {"best_by_rmse": "als", "best_by_hit_rate@10": "popularity"}
    assert winners[VALUE].to_dict() == {"best_by_rmse": 0.85, "best_by_hit_rate@10": 0.58}
    assert len(table) == len(metrics) + 2
    assert runs.read_best(spark, str(tmp_path)) == best
    assert [e["model"] for e in best["ranking"]] == ["popularity", "als"]


def test_whole_star_data_set_never_gets_a_prediction_outside_1_to_5(tmp_path, spark, run_job_script):
    # issue 11: on an ml-1m layout data set (whole stars 1-5) mllib_als predicted 0.973,
    # because every model clipped to 0.5-5. Harsh users (1-4) rate bad movies (1-3) one star,
    # so a biased model's raw prediction for them falls below 1.
    raw = tmp_path / "ml-1m"
    raw.mkdir()
    lines = [
        f"{u}::{m}::{1 if u <= 4 and m <= 3 else 2 + (u * m) % 4}::{978300000 + u * 10 + m}"
        for u in range(1, 9) for m in range(1, 7)
    ]
    (raw / "ratings.dat").write_text("\n".join(lines) + "\n")
    (raw / "users.dat").write_text("".join(f"{u}::F::1::10::48067\n" for u in range(1, 9)))
    (raw / "movies.dat").write_bytes(
        "".join(f"{m}::Movie {m} (2000)::Drama\n" for m in range(1, 7)).encode("latin-1")
    )
    common = [
        "--set", "data.dataset=ml-1m-inline", "--set", f"data.dir={raw}",
        "--set", f"ingest.output_dir={tmp_path}/ingest/{{dataset}}",
        "--set", f"train.output_dir={tmp_path}/runs", "--set", "ingest.user_blocks=2",
    ]
    assert run_job_script("ingest", common) == 0
    argv = common + ["--set", "train.run_id=scale", "--set", "train.models=bias,mllib_als",
                     "--set", "recommend.enabled=false", "--set", "mllib_als.max_iter=5",
                     "--set", "split.test_fraction=0.5"]
    assert run_job_script("train", argv) == 0
    run = tmp_path / "runs" / "scale"
    saved = tomllib.loads((run / "config.toml").read_text())["train"]
    assert (saved["rating_min"], saved["rating_max"], saved["rating_step"]) == (1.0, 5.0, 1.0)
    predictions = spark.read.parquet(str(run / "predictions")).toPandas()
    assert set(predictions[MODEL]) == {"bias", "mllib_als"}
    assert predictions[PREDICTION].between(1.0, 5.0).all()
    assert predictions[PREDICTION].min() == 1.0  # the clip at 1 is what holds them


def test_cross_validated_run_writes_per_fold_rows_their_summary_and_a_leaderboard(
    spark, tiny, tmp_path, run_job_script
):
    root, common = tiny
    common = common + ["--set", f"train.output_dir={tmp_path}/runs"]
    args = ["--set", "train.run_id=cv", "--set", "train.models=bias,popularity",
            "--set", "train.folds=3", "--set", "recommend.n=3", "--set", "recommend.k=3",
            "--set", "train.leaderboard_by=ndcg"]
    assert run_job_script("train", common + args) == 0

    run = tmp_path / "runs" / "cv"
    metrics = pd.read_parquet(run / "metrics")
    per_fold = metrics[metrics["fold"].notna()]
    rows = per_fold[(per_fold[MODEL] == "bias") & (per_fold[METRIC] == "rows")]
    assert sorted(rows["fold"]) == [0, 1, 2] and set(rows[SPLIT]) == {"kfold/test"}
    ratings = pd.read_parquet(root / "ingest" / "ratings")
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

    # train.parallel: the three folds at once from threads give the same per-fold rows
    assert run_job_script("train", common + ["--set", "train.run_id=cv3", "--set", "train.parallel=3"]
                          + args[2:]) == 0
    parallel = pd.read_parquet(tmp_path / "runs" / "cv3" / "metrics")

    def rows_of(table):
        rows = table[table["fold"].notna() & ~table[METRIC].str.startswith("fit_seconds")]
        return rows.drop(columns="run_id").sort_values([MODEL, SPLIT, METRIC, "fold"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(rows_of(parallel), rows_of(metrics))


def test_fit_seconds_add_the_earlier_fits_a_model_reused(spark, monkeypatch):
    """A blend that reuses the run's fit of a member is charged that member's fit seconds."""
    offered = {}

    def fake_fit(name, train, *, cfg, bias, validation, fitted):
        offered[name] = dict(fitted)
        return SimpleNamespace(name=name, reused=("als",) if name == "blend" else ())

    monkeypatch.setattr(train_pipeline.registry, "fit", fake_fit)
    split = train_pipeline._Split("random", None, None, None, None, bias_seconds=2.0)
    als, als_seconds = train_pipeline._fit(spark, default_config(), "als", split)
    split.fit_seconds["als"] = 30.0  # as if the als fit had taken 30 s
    blend, blend_seconds = train_pipeline._fit(spark, default_config(), "blend", split)
    assert offered == {"als": {}, "blend": {"als": als}}
    assert 2.0 <= als_seconds < 3.0
    assert 32.0 <= blend_seconds < 33.0  # its own (~0 s) + the baseline's 2 s + als's 30 s
    split.unpersist()
    assert split.fitted == {}
