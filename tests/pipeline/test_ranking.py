from __future__ import annotations

from recspark.config import default_config
from recspark.models.factor import ITEM_FACTORS_SCHEMA, USER_FACTORS_SCHEMA, FactorModel
from recspark.models.popularity import fit_popularity
from recspark.pipeline.ranking import recommend_and_rank
from recspark.schema import MOVIE_ID, RANK, hit_rate_at

RATINGS = "user_id long, movie_id long, rating double"


def test_train_step_writes_lists_and_metric_rows_of_every_ranker(spark, tmp_path):
    model = FactorModel(
        name="m", global_mean=3.0, rank=1,
        user_factors=spark.createDataFrame([(1, 0, 0.0, [1.0]), (2, 1, 0.0, [-1.0])], USER_FACTORS_SCHEMA),
        item_factors=spark.createDataFrame(
            [(10, 0, 0.0, [2.0]), (20, 1, 0.0, [1.0]), (30, 2, 0.0, [-1.0])], ITEM_FACTORS_SCHEMA
        ),
    )
    train = spark.createDataFrame([(1, 10, 5.0), (2, 30, 4.0), (2, 10, 1.0)], RATINGS)
    test = spark.createDataFrame([(1, 20, 4.5), (2, 20, 2.0)], RATINGS)
    rows = recommend_and_rank(
        spark, default_config(), rankers={"m": model, "popularity": fit_popularity(train)},
        train=train, test=test, run_id="r", out_dir=str(tmp_path), kind="random",
    )
    metrics = {(r["model"], r["metric"]): r["value"] for df in rows for r in df.collect()}
    assert {m for m, _ in metrics} == {"m", "popularity"}
    # user 1 (relevant {20}): m ranks 20, 30 -> hit at rank 1; user 2 has nothing relevant
    assert metrics[("m", hit_rate_at(10))] == 1.0 and metrics[("m", "ranking_users")] == 1.0
    # popularity knows only the training movies 10 and 30: user 1's list is [30], a miss
    assert metrics[("popularity", hit_rate_at(10))] == 0.0
    recs = spark.read.parquet(str(tmp_path / "recommendations"))
    assert sorted(r["model"] for r in recs.select("model").distinct().collect()) == ["m", "popularity"]
    user1 = recs.where("model = 'm' and user_id = 1").orderBy(RANK).collect()
    assert [r[MOVIE_ID] for r in user1] == [20, 30]


def test_nothing_is_ranked_when_disabled(spark, tmp_path):
    cfg = default_config()
    cfg = cfg.replace(recommend=cfg.recommend.replace(enabled=False))
    train = spark.createDataFrame([(1, 10, 5.0)], RATINGS)
    assert recommend_and_rank(
        spark, cfg, rankers={"popularity": fit_popularity(train)}, train=train, test=train,
        run_id="r", out_dir=str(tmp_path), kind="random",
    ) == []
    assert not (tmp_path / "recommendations").exists()
