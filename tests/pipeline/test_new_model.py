"""A new model is one module plus one registry line (issue 18).

``tests/pipeline/movie_mean.py`` defines a model the library has never heard of; the test
adds its registry line and runs the real jobs: the train run writes its predictions,
metric rows and top-N lists, and the re-scoring job publishes its lists.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recspark.io.scores import read_scores
from recspark.models import registry
from recspark.schema import (
    METRIC,
    MODEL,
    MOVIE_ID,
    PREDICTION,
    RANK,
    RATING,
    SPLIT,
    USER_ID,
    VALUE,
)

USERS, MOVIES = range(1, 9), (10, 20, 30, 40, 50, 60)


def _dataset(folder: Path) -> Path:
    """8 users × 6 movies, most pairs rated, ratings on the half-star grid."""
    folder.mkdir(parents=True)
    lines = ["userId,movieId,rating,timestamp"]
    for u in USERS:
        for m in MOVIES:
            if (u + m // 10) % 5:  # leave a few pairs unrated
                lines.append(f"{u},{m},{((u * 7 + m // 10) % 9 + 1) / 2},{1_000_000 + u * 100 + m}")
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(f"{m},Movie {m},Drama\n" for m in MOVIES)
    )
    return folder


def _reference_lists(means: pd.DataFrame, rated: pd.DataFrame, users, n: int) -> dict:
    """Each user's unrated movies by (−mean, movie id), the first n, computed in pandas."""
    order = means.sort_values(["mean_rating", MOVIE_ID], ascending=[False, True])[MOVIE_ID]
    seen = rated.groupby(USER_ID)[MOVIE_ID].apply(set).to_dict()
    lists = {u: [m for m in order if m not in seen.get(u, set())][:n] for u in users}
    return {u: top for u, top in lists.items() if top}


def _lists(df: pd.DataFrame) -> dict:
    return {u: g.sort_values(RANK)[MOVIE_ID].tolist() for u, g in df.groupby(USER_ID)}


def ingested(tmp_path: Path, run_job_script) -> list[str]:
    """Ingest :func:`_dataset` under ``tmp_path``; the options every later job needs."""
    common = [
        "--set", f"data.dir={_dataset(tmp_path / 'raw')}",
        "--set", "data.dataset=tiny",
        "--set", f"ingest.output_dir={tmp_path}/ingest",
        "--set", f"train.output_dir={tmp_path}/runs",
    ]
    assert run_job_script("ingest", common) == 0
    return common


def test_a_new_model_is_one_module_and_one_registry_line(
    spark, tmp_path, run_job_script, monkeypatch
):
    monkeypatch.setitem(registry.MODELS, "tiny", "tests.pipeline.movie_mean:SPEC")
    common = ingested(tmp_path, run_job_script)
    train_args = ["--set", "train.run_id=r1", "--set", "train.models=bias,tiny",
                  "--set", "recommend.n=3", "--set", "recommend.k=3"]
    assert run_job_script("train", common + train_args) == 0

    run = tmp_path / "runs" / "r1"
    means = pd.read_parquet(run / "models" / "tiny" / "means")
    predictions = pd.read_parquet(run / "predictions")
    metrics = pd.read_parquet(run / "metrics")
    mine = predictions[predictions[MODEL] == "tiny"]
    test_rows = metrics[(metrics[MODEL] == "bias") & (metrics[SPLIT] == "random/test")
                        & (metrics[METRIC] == "rows")][VALUE].iloc[0]
    assert len(mine) == test_rows > 0
    known = mine.merge(means, on=MOVIE_ID)
    assert (known[PREDICTION] == known["mean_rating"]).all()
    tiny = metrics[metrics[MODEL] == "tiny"].set_index([SPLIT, METRIC])[VALUE]
    rmse = ((mine[RATING] - mine[PREDICTION]) ** 2).mean() ** 0.5
    assert abs(tiny[("random/test", "rmse")] - rmse) < 1e-12
    for metric in ("hit_rate@3", "ndcg@3", "coverage@3", "fit_seconds"):
        assert any(m == metric for _, m in tiny.index), metric

    lists = pd.read_parquet(run / "recommendations")
    lists = lists[lists[MODEL] == "tiny"]
    ratings = pd.read_parquet(tmp_path / "ingest" / "ratings")
    train_pairs = ratings.merge(mine[[USER_ID, MOVIE_ID]], how="left", indicator=True)
    train_pairs = train_pairs[train_pairs["_merge"] == "left_only"]
    assert _lists(lists) == _reference_lists(means, train_pairs, sorted(set(train_pairs[USER_ID])), 3)

    out = tmp_path / "scores"
    rescore_args = ["--set", "rescore.model=tiny", "--set", "rescore.mode=all",
                    "--set", "rescore.n=2", "--set", f"rescore.output_dir={out}",
                    "--set", 'rescore.score_date="2025-01-01"']  # unquoted, TOML reads a date
    assert run_job_script("rescore", common + rescore_args) == 0
    published = read_scores(spark, str(out)).toPandas()
    assert set(published[MODEL]) == {"tiny"}
    assert _lists(published) == _reference_lists(
        means, ratings, sorted(set(train_pairs[USER_ID])), 2
    )
