"""The search finds a planted best setting, never reads the test part, and writes an overlay."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from pydantic import Field
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import Section, load_config
from recspark.errors import ConfigError
from recspark.models import registry
from recspark.models.contract import Ability, ModelSpec
from recspark.pipeline.tune import overlay_text, parse_grid, search, trial_settings
from recspark.schema import MOVIE_ID, PERSONALISED, PREDICTION, RATING, TIMESTAMP, USER_ID
from recspark.seeds import derive_seed
from recspark.split import split_ratings
from tests.conftest import JobWatch
from tests.pipeline.test_new_model import ingested


class LevelConfig(Section):
    level: float = Field(3.0, ge=0)
    noise: int = 0  # searched too, but changes nothing


@dataclass(frozen=True)
class LevelModel:
    """Predicts ``level`` for every pair: its RMSE is sqrt(var(r) + (mean(r) − level)²)."""

    level: float
    name: str = "level"

    def predict(self, pairs: DataFrame) -> DataFrame:
        return pairs.withColumn(PREDICTION, F.lit(self.level)).withColumn(PERSONALISED, F.lit(True))


def _fit(train: DataFrame, *, cfg: LevelConfig) -> LevelModel:
    return LevelModel(cfg.level)


SPEC = ModelSpec("level", "a constant", fit=_fit, abilities=frozenset({Ability.PREDICT}),
                 config=LevelConfig)


@pytest.fixture
def level_model(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "level", "tests.pipeline.test_tune:SPEC")


def test_parse_grid_reads_toml_lists_and_rejects_bad_entries():
    assert parse_grid(["als.rank=[10, 20]", "als.reg_factors=0.1", "svd.fill=[\"zero\"]"]) == {
        "als.rank": [10, 20], "als.reg_factors": [0.1], "svd.fill": ["zero"]}
    for bad in (["rank=[1]"], ["als.rank=[]"], ["als.rank=[1]", "als.rank=[2]"], []):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def test_random_search_draws_a_seeded_subset_of_the_grid():
    grid = {"a.x": [1, 2, 3], "a.y": [0.1, 0.2]}
    everything = trial_settings(grid, trials=0, seed=1)
    assert len(everything) == 6 and everything[0] == {"a.x": 1, "a.y": 0.1}
    picked = trial_settings(grid, trials=3, seed=1)
    assert len(picked) == 3 and all(p in everything for p in picked)
    assert picked == trial_settings(grid, trials=3, seed=1)
    assert trial_settings(grid, trials=10, seed=1) == everything


def test_search_finds_the_planted_best_level_and_writes_an_overlay(spark, level_model, tmp_path):
    g = np.random.default_rng(11)
    rows = [(u, m, float(np.clip(np.round(g.normal(3.45, 0.6) * 2) / 2, 0.5, 5.0)), m)
            for u in range(1, 21) for m in range(1, 16)]
    cfg = load_config(overrides=["split.kind=random", "split.test_fraction=0.5"])
    # the test part (half the ratings) is all 5 stars: a search that read it would pick 4.0
    _, test = split_ratings(spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING, TIMESTAMP]),
                            cfg=cfg.split, seed=derive_seed(cfg.seed, "split"))
    held_out = {(r[USER_ID], r[MOVIE_ID]) for r in test.collect()}
    rows = [(u, m, 5.0 if (u, m) in held_out else r, t) for u, m, r, t in rows]
    ratings = spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING, TIMESTAMP])
    grid = {"level.level": [2.5, 3.0, 3.5, 4.0], "level.noise": [0, 1]}
    table = search(spark, cfg, ratings, model="level", grid=grid, folds=3)
    assert len(table) == 8 and table["rank"].tolist() == list(range(1, 9))
    assert table.iloc[0]["level.level"] == 3.5 and table.iloc[1]["level.level"] == 3.5
    assert (table["rmse"].diff().dropna() >= 0).all() and (table["rmse_std"] > 0).all()
    train = np.array([r for u, m, r, _ in rows if (u, m) not in held_out])
    assert abs(table.iloc[0]["rmse"] - np.sqrt(np.mean((train - 3.5) ** 2))) < 0.05
    assert abs(table.iloc[0]["mae"] - np.mean(np.abs(train - 3.5))) < 0.05  # the other metric too

    text = overlay_text(cfg, table, grid, command="python jobs/tune.py --model level", scoring="3-fold")
    assert "#   python jobs/tune.py --model level" in text
    (tmp_path / "level.toml").write_text(text)
    assert load_config([tmp_path / "level.toml"]).level.level == 3.5

    with pytest.raises(ConfigError, match="level.level"):
        search(spark, cfg, ratings, model="level", grid={"level.level": [-1.0]})
    with pytest.raises(ConfigError, match="rank movies"):
        search(spark, cfg, ratings, model="level", grid=grid, metric="ndcg")


def test_ranking_search_lists_only_movies_with_min_support(spark):
    """recommend.min_support applies in the search as in a train run: with a floor above
    every movie's count nothing is listed (coverage 0), with 1 the lists are scored."""
    g = np.random.default_rng(5)
    rows = [(u, m, float(g.choice([2.0, 4.5])), m) for u in range(1, 31) for m in range(1, 13)]
    ratings = spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING, TIMESTAMP])
    cfg = load_config(overrides=["split.kind=random", "recommend.k=3"])
    table = search(spark, cfg, ratings, model="popularity", metric="ndcg",
                   grid={"recommend.min_support": [1, 1000]})
    by_floor = table.set_index("recommend.min_support")
    assert by_floor.loc[1000, "coverage@3"] == 0 and by_floor.loc[1000, "ndcg@3"] == 0
    assert by_floor.loc[1, "coverage@3"] > 0 and by_floor.loc[1, "hit_rate@3"] > 0
    assert table.iloc[0]["recommend.min_support"] == 1


def test_the_tune_job_writes_trials_pictures_and_an_overlay_and_names_its_jobs(
    spark, level_model, tmp_path, run_job_script
):
    common = ingested(tmp_path, run_job_script)  # 39 ratings, mean 2.49
    out = tmp_path / "tune"
    argv = common + ["--model", "level", "--grid", "level.level=[4.5,2.5]", "--folds", "2",
                     "--output", str(out)]
    with JobWatch(spark) as jobs:
        assert run_job_script("tune", argv) == 0
    assert not jobs.unnamed, "jobs outside every stage:\n" + "\n".join(jobs.unnamed)

    trials = pd.read_parquet(out / "trials").sort_values("rank")
    assert trials["level.level"].tolist() == [2.5, 4.5]  # RMSE² = var + (mean − level)²
    assert trials["rmse"].iloc[0] < trials["rmse"].iloc[1]
    pd.testing.assert_frame_equal(pd.read_csv(out / "trials.csv").sort_values("rank"), trials,
                                  check_dtype=False)
    assert (out / "rmse_by_level.level.png").stat().st_size > 5_000
    assert load_config([out / "best.toml"]).level.level == 2.5
