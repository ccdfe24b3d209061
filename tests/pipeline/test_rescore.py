from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time

import numpy as np
import pytest

from recspark.config import Config, RescoreConfig, TrainConfig, default_config
from recspark.errors import ConfigError, ModelError
from recspark.io.runs import write_best
from recspark.io.scores import read_scores
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.factor import ITEM_FACTORS_SCHEMA, USER_FACTORS_SCHEMA, FactorModel
from recspark.models.popularity import fit_popularity
from recspark.pipeline.rescore import run_rescore
from recspark.schema import LINE_NUMBER, MOVIE_ID, PREDICTION, RANK, REASON, USER_ID

MU = 3.5
USERS = {1: (0.2, [1.0, 0.0]), 2: (-0.1, [0.0, 1.0])}  # user_id: (b_u, p_u)
ITEMS = {10: (0.3, [1.0, 0.5]), 20: (0.0, [0.2, 1.0]), 30: (-0.2, [0.8, -0.4]), 40: (0.1, [-0.5, 0.3])}
RATINGS = "user_id long, movie_id long, rating double, timestamp long"
V1 = [(1, 10, 4.0, 100), (2, 20, 3.0, 100), (3, 10, 5.0, 150), (3, 30, 4.0, 150)]


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """A saved model in one published run, beside an unfinished (staging) later run."""
    root = tmp_path_factory.mktemp("rescore_runs")
    model = FactorModel(
        name="als",
        global_mean=MU,
        rank=2,
        user_factors=spark.createDataFrame(
            [(u, i, b, f) for i, (u, (b, f)) in enumerate(USERS.items())], USER_FACTORS_SCHEMA
        ),
        item_factors=spark.createDataFrame(
            [(m, i, b, f) for i, (m, (b, f)) in enumerate(ITEMS.items())], ITEM_FACTORS_SCHEMA
        ),
        settings={"reg_factors": 0.1, "reg_bias": 0.1, "weighted_reg": True},
    )
    model.save(str(root / "20250101T000000Z" / "models" / "als"))
    # popularity: movies 20 and 30 have 3 training ratings each (the smaller id first), 10 and 40 one
    train = spark.createDataFrame(
        [(1, 20, 4.0, 1), (2, 20, 3.0, 1), (1, 30, 2.0, 1), (2, 30, 5.0, 1), (9, 20, 1.0, 1),
         (9, 10, 3.0, 1), (9, 30, 3.0, 1), (2, 40, 3.0, 1)], RATINGS,
    )
    fit_popularity(train).save(str(root / "20250101T000000Z" / "models" / "popularity"))
    write_best(spark, str(root / "20250101T000000Z"), BEST)
    (root / "20250102T000000Z._staging-deadbeef" / "models").mkdir(parents=True)
    return root


#: The run's best.json: als is its best saved model by both lists (nmf ranks higher but was
#: not saved).
BEST = {
    "split": "random/test",
    "rmse": [{"model": "als", "value": 0.85}],
    "ranking_metric": "ndcg@10",
    "ranking": [{"model": "nmf", "value": 0.4}, {"model": "als", "value": 0.3},
                {"model": "popularity", "value": 0.2}],
}


def _cfg(runs, tmp_path, **rescore) -> Config:
    base = {"output_dir": str(tmp_path / "scores"), "ratings": str(tmp_path / "ratings")}
    return default_config().replace(
        train=TrainConfig(output_dir=str(runs)),
        rescore=RescoreConfig(**{**base, **rescore}),
    )


def _write_ratings(spark, tmp_path, rows):
    spark.createDataFrame(rows, RATINGS).write.mode("overwrite").parquet(str(tmp_path / "ratings"))


def _lists(df):
    out: dict[int, list[int]] = {}
    for r in df.orderBy(USER_ID, RANK).collect():
        out.setdefault(r[USER_ID], []).append(r[MOVIE_ID])
    return out


def _score(b_u, p_u, movie):
    b_i, q_i = ITEMS[movie]
    return MU + b_u + b_i + float(np.dot(p_u, q_i))


def test_all_mode_ranks_unrated_movies_and_folds_in_new_users(spark, runs, tmp_path):
    _write_ratings(spark, tmp_path, V1)
    report = run_rescore(spark, _cfg(runs, tmp_path, mode="all", n=2, score_date="2025-02-01"))
    assert report["model_path"].endswith("20250101T000000Z/models/als")  # staging run skipped
    assert report["folded_in_users"] == 1 and report["watermark"] == 150
    lists = _lists(read_scores(spark, str(tmp_path / "scores")))
    for user, (b, p) in USERS.items():
        rated = {m for u, m, _, _ in V1 if u == user}
        ranked = sorted((m for m in ITEMS if m not in rated), key=lambda m: -_score(b, p, m))
        assert lists[user] == ranked[:2]
    assert set(lists) == {1, 2, 3}  # user 3 is new: folded in, then ranked
    assert not {10, 30} & set(lists[3])


def test_failed_run_leaves_published_output_then_next_run_replaces_it(spark, runs, tmp_path):
    cfg = _cfg(runs, tmp_path, mode="all", n=3, score_date="2025-02-01")
    out = str(tmp_path / "scores")
    _write_ratings(spark, tmp_path, V1)
    run_rescore(spark, cfg)
    before = sorted(map(tuple, read_scores(spark, out).collect()))

    _write_ratings(spark, tmp_path, V1 + [(1, 20, 1.0, 300)])  # changes user 1's list

    def crash(staging):
        raise RuntimeError("killed after writing part of the output")

    with pytest.raises(RuntimeError, match="killed"):
        run_rescore(spark, cfg, hook=crash)
    assert sorted(map(tuple, read_scores(spark, out).collect())) == before
    assert sorted(map(tuple, spark.read.parquet(out).collect())) == before  # plain reader too

    run_rescore(spark, cfg)
    after = read_scores(spark, out)
    assert 20 not in _lists(after)[1]
    after_rows = sorted(map(tuple, after.collect()))
    assert after_rows != before
    report = json.loads((tmp_path / "scores" / "score_date=2025-02-01" / "_report.json").read_text())
    assert report["watermark"] == 300
    run_rescore(spark, cfg)  # re-running the same date gives the same rows
    assert sorted(map(tuple, read_scores(spark, out).collect())) == after_rows


def test_incremental_scores_only_users_with_new_ratings(spark, runs, tmp_path):
    out = str(tmp_path / "scores")
    _write_ratings(spark, tmp_path, V1)
    run_rescore(spark, _cfg(runs, tmp_path, mode="all", score_date="2025-03-01"))
    _write_ratings(spark, tmp_path, V1 + [(2, 30, 2.0, 200), (4, 20, 5.0, 210)])
    cfg = _cfg(runs, tmp_path, mode="incremental", score_date="2025-03-02")
    report = run_rescore(spark, cfg)
    assert report["previous_watermark"] == 150 and report["watermark"] == 210
    day2 = read_scores(spark, out).where("score_date = '2025-03-02'")
    first = sorted(map(tuple, day2.drop("score_date").collect()))
    assert {r[USER_ID] for r in day2.collect()} == {2, 4}  # 4 is new: folded in
    assert 30 not in _lists(day2)[2]
    run_rescore(spark, cfg)  # same date again: watermark still from 2025-03-01, same rows
    again = read_scores(spark, out).where("score_date = '2025-03-02'").drop("score_date")
    assert sorted(map(tuple, again.collect())) == first


def test_pairs_mode_scores_counts_unknown_ids_and_quarantines_bad_lines(spark, runs, tmp_path):
    _write_ratings(spark, tmp_path, V1)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("userId,movieId\n1,20\n99,20\nabc,10\n2,777\n5\n2,40\n")
    cfg = _cfg(runs, tmp_path, mode="pairs", input=str(pairs), score_date="2025-04-01")
    report = run_rescore(spark, cfg)
    assert (report["rows"], report["quarantined"]) == (4, 2)
    assert (report["unknown_user"], report["unknown_movie"], report["bias_fallback"]) == (1, 1, 2)
    day = tmp_path / "scores" / "score_date=2025-04-01"
    got = {(r[USER_ID], r[MOVIE_ID]): r[PREDICTION] for r in spark.read.parquet(str(day)).collect()}
    assert got[(1, 20)] == pytest.approx(_score(*USERS[1], 20))
    assert got[(2, 40)] == pytest.approx(_score(*USERS[2], 40))
    assert got[(99, 20)] == pytest.approx(MU + ITEMS[20][0])  # own fallback: μ + b_i
    bad = sorted((r[LINE_NUMBER], r[REASON]) for r in spark.read.parquet(str(day / "_quarantine")).collect())
    assert bad == [(4, "non-numeric user id"), (6, "wrong field count")]


def test_missing_model_is_a_model_error(spark, runs, tmp_path):
    _write_ratings(spark, tmp_path, V1)
    with pytest.raises(ModelError, match="no saved model"):
        run_rescore(spark, _cfg(runs, tmp_path, model="als", run_id="20990101T000000Z"))
    with pytest.raises(ModelError, match="20990101T000000Z has no best.json naming a saved model"):
        run_rescore(spark, _cfg(runs, tmp_path, run_id="20990101T000000Z"))
    with pytest.raises(ModelError, match="no published train run"):
        run_rescore(spark, _cfg(runs, tmp_path, model="svd"))


def test_popularity_ranks_new_users_without_fold_in_and_cannot_score_pairs(spark, runs, tmp_path):
    _write_ratings(spark, tmp_path, V1)
    cfg = _cfg(runs, tmp_path, model="popularity", mode="all", n=2, score_date="2025-05-01")
    report = run_rescore(spark, cfg)
    assert report["folded_in_users"] == 0  # popularity cannot fold in, and needs not
    # every user of the current ratings, new user 3 included; rated movies excluded
    assert _lists(read_scores(spark, str(tmp_path / "scores"))) == {1: [20, 30], 2: [30, 10], 3: [20, 40]}
    with pytest.raises(ConfigError, match="cannot predict ratings"):
        run_rescore(spark, _cfg(runs, tmp_path, model="popularity", mode="pairs", input="x.csv"))


def test_without_fold_in_new_users_get_no_personalised_list(spark, runs, tmp_path):
    _write_ratings(spark, tmp_path, V1)
    cfg = _cfg(runs, tmp_path, mode="all", n=2, score_date="2025-06-01", foldin=False)
    report = run_rescore(spark, cfg)
    assert report["folded_in_users"] == 0
    assert set(_lists(read_scores(spark, str(tmp_path / "scores")))) == {1, 2}


@pytest.fixture(scope="module")
def bias_and_mllib_run(spark, tmp_path_factory):
    """A run holding saved bias and mllib_als models fitted on 6 users × 5 movies."""
    root = tmp_path_factory.mktemp("rescore_bias_mllib")
    rows = [(u, 10 * m, float((u + 2 * m) % 5 + 1), u - 1, m - 1)
            for u in range(1, 7) for m in range(1, 6) if (u + m) % 4]
    train = spark.createDataFrame(rows, "user_id long, movie_id long, rating double, user_idx int, movie_idx int")
    cfg = default_config().replace(
        mllib_als=default_config().mllib_als.replace(rank=2, max_iter=3, num_blocks=2)
    )
    bias = fit_bias(train, cfg=cfg.bias)
    mllib = registry.fit("mllib_als", train, cfg=cfg, bias=bias)
    run = root / "20250103T000000Z" / "models"
    bias.save(str(run / "bias"))
    mllib.save(str(run / "mllib_als"))
    return root, bias, mllib, rows


def test_bias_and_mllib_als_are_rescored_from_the_run(spark, bias_and_mllib_run, tmp_path):
    root, bias, mllib, rows = bias_and_mllib_run
    _write_ratings(spark, tmp_path, [(u, m, r, 100) for u, m, r, _, _ in rows])
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("userId,movieId\n1,20\n2,50\n99,10\n")
    cfg = _cfg(root, tmp_path, model="bias", mode="pairs", input=str(pairs), score_date="2025-08-01")
    report = run_rescore(spark, cfg)
    assert report["model_path"].endswith("20250103T000000Z/models/bias") and report["rows"] == 3
    day = str(tmp_path / "scores" / "score_date=2025-08-01")
    got = {(r[USER_ID], r[MOVIE_ID]): r[PREDICTION] for r in spark.read.parquet(day).collect()}
    want = bias.predict(spark.createDataFrame([(1, 20), (2, 50), (99, 10)], "user_id long, movie_id long"))
    assert got == {(r[USER_ID], r[MOVIE_ID]): r[PREDICTION] for r in want.collect()}

    cfg = _cfg(root, tmp_path, model="mllib_als", mode="all", n=2, score_date="2025-08-02")
    assert run_rescore(spark, cfg)["folded_in_users"] == 0  # MLlib ALS cannot fold in
    lists = _lists(spark.read.parquet(str(tmp_path / "scores" / "score_date=2025-08-02")))
    p = {r[USER_ID]: r["factors"] for r in mllib.user_factors.collect()}
    q = {r[MOVIE_ID]: r["factors"] for r in mllib.item_factors.collect()}
    rated = {(u, m) for u, m, *_ in rows}
    for user, got_list in lists.items():  # p_u·q_i over the unrated movies, best first
        ranked = sorted((m for m in q if (user, m) not in rated), key=lambda m: (-np.dot(p[user], q[m]), m))
        assert got_list == ranked[:2]
    assert set(lists) == {u for u in p if any((u, m) not in rated for m in q)}


def test_staging_folders_of_killed_runs_are_removed_by_the_next_run(spark, runs, tmp_path, caplog):
    _write_ratings(spark, tmp_path, V1)
    gone = subprocess.Popen(["true"])
    gone.wait()
    staging = tmp_path / "scores" / "_staging"
    mine = staging / f"score_date=2025-09-01._staging-{socket.gethostname()}-{gone.pid}-abcdef12"
    legacy = staging / "score_date=2025-09-01-deadbeef"  # an older recspark's name, 2 days old
    for folder in (mine, legacy):
        (folder / "part").mkdir(parents=True)
    two_days_ago = time.time() - 48 * 3600
    for path in (legacy / "part", legacy):
        os.utime(path, (two_days_ago, two_days_ago))
    caplog.set_level(logging.WARNING, logger="recspark.io.storage")
    run_rescore(spark, _cfg(runs, tmp_path, mode="all", n=2, score_date="2025-09-01"))
    assert not list(staging.iterdir())
    assert f"process {gone.pid} of this host is gone" in caplog.text
    assert "left by an unknown process, untouched for 48" in caplog.text


def test_the_default_model_is_the_runs_best_saved_model(spark, runs, tmp_path):
    _write_ratings(spark, tmp_path, V1)
    assert default_config().rescore.model == ""
    report = run_rescore(spark, _cfg(runs, tmp_path, mode="all", n=2, score_date="2025-07-01"))
    assert report["model"] == "als"  # nmf is first in best.json's ranking but not saved
    root = tmp_path / "runs"
    write_best(spark, str(root / "20250301T000000Z"), {**BEST, "ranking": BEST["ranking"][2:]})
    fit_popularity(spark.createDataFrame(V1, RATINGS)).save(
        str(root / "20250301T000000Z" / "models" / "popularity")
    )
    later = default_config().replace(
        train=TrainConfig(output_dir=str(root)),
        rescore=RescoreConfig(output_dir=str(tmp_path / "s2"), ratings=str(tmp_path / "ratings"),
                              mode="all", n=2, score_date="2025-07-01"),
    )
    assert run_rescore(spark, later)["model"] == "popularity"  # the latest run's best
    with pytest.raises(ModelError, match="names a saved model in its best.json"):
        run_rescore(spark, later.replace(rescore=later.rescore.replace(mode="pairs", input="x.csv")))
