"""FactorModel (recspark.models.factor): scoring with the fallback, save/load, history."""

from __future__ import annotations

import json

import numpy as np
import pytest
from chispa import assert_approx_df_equality

from recspark.errors import ModelError
from recspark.models.bias import BiasModel
from recspark.models.base import broadcast_if_small
from recspark.models.factor import (
    DOT_UNROLLED_MAX,
    FactorModel,
    dot,
    factor_frame,
    factor_schema,
)
from recspark.session import sql_settings
from tests.models.als._reference import hand_bias_model


def hand_model(spark, *, fallback: BiasModel | None) -> FactorModel:
    users = spark.createDataFrame(
        [(1, 0, 0.1, [1.0, 2.0]), (2, 1, 0.0, [2.0, 2.0])],
        "user_id long, user_idx int, bias double, factors array<double>",
    )
    items = spark.createDataFrame(
        [(10, 0, 0.2, [0.5, -1.0]), (20, 1, 1.0, [1.0, 1.0])],
        "movie_id long, movie_idx int, bias double, factors array<double>",
    )
    return FactorModel("hand", 3.5, 2, users, items, fallback=fallback)


def test_predict_scores_known_pairs_and_falls_back_for_unknown_ids(spark):
    bias = hand_bias_model(spark, user_bias={1: 0.5, 3: 0.25}, movie_bias={10: -0.25, 30: 0.5}, mu=3.0)
    pairs = spark.createDataFrame(
        [(1, 10), (2, 20), (3, 10), (1, 30), (99, 99)], "user_id long, movie_id long"
    )
    expected_schema = "user_id long, movie_id long, prediction double, personalised boolean"
    expected = spark.createDataFrame(
        [
            (1, 10, 3.5 + 0.1 + 0.2 + (0.5 - 2.0), True),  # 2.3
            (2, 20, 5.0, True),  # 3.5 + 0 + 1 + 4 = 8.5, clipped
            (3, 10, 3.0 + 0.25 - 0.25, False),  # bias model: unknown user
            (1, 30, 3.0 + 0.5 + 0.5, False),  # bias model: unknown movie
            (99, 99, 3.0, False),
        ],
        expected_schema,
    )
    got = hand_model(spark, fallback=bias).predict(pairs)
    assert_approx_df_equality(got, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)

    own = hand_model(spark, fallback=None).predict(pairs)
    expected_own = spark.createDataFrame(
        [(1, 10, 2.3, True), (2, 20, 5.0, True), (3, 10, 3.7, False), (1, 30, 3.6, False), (99, 99, 3.5, False)],
        expected_schema,
    )
    assert_approx_df_equality(own, expected_own, 1e-12, ignore_row_order=True, ignore_nullable=True)


def _plan(frame) -> str:
    return frame._jdf.queryExecution().executedPlan().toString()


def test_scoring_broadcasts_factor_tables_under_the_limit_whatever_spark_would_choose(spark):
    model = hand_model(spark, fallback=None)
    for table in (model.user_factors, model.item_factors):  # as fitted models hold them
        table.cache().count()
    pairs = spark.createDataFrame([(1, 10), (2, 20)], "user_id long, movie_id long")
    # Spark on its own would sort-merge join everything; predict still broadcasts the tables
    with sql_settings(spark, {"spark.sql.autoBroadcastJoinThreshold": "-1",
                              "spark.sql.adaptive.enabled": "false"}):
        assert "SortMergeJoin" in _plan(pairs.join(model.user_factors, "user_id"))
        assert "BroadcastHashJoin" in _plan(pairs.join(broadcast_if_small(model.user_factors), "user_id"))
        assert "SortMergeJoin" in _plan(pairs.join(broadcast_if_small(model.user_factors, 0), "user_id"))
        plan = _plan(model.predict(pairs))
    assert plan.count("BroadcastHashJoin") == 2 and "SortMergeJoin" not in plan


@pytest.mark.parametrize("rank", [12, DOT_UNROLLED_MAX + 1])
def test_dot_sums_in_order_and_is_null_when_an_array_is_null_or_short(spark, rank):
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(2, 3, rank))
    rows = [(0, a[0].tolist(), b[0].tolist()), (1, a[1].tolist(), b[1].tolist()),
            (2, None, b[2].tolist()), (3, a[2][:5].tolist(), b[2].tolist())]
    frame = spark.createDataFrame(rows, "i int, a array<double>, b array<double>")
    got = {r["i"]: r["d"] for r in frame.select("i", dot("a", "b", rank).alias("d")).collect()}
    for i in (0, 1):  # the same sums in the same order as a left-to-right loop: equal bits
        want = 0.0
        for x, y in zip(a[i], b[i]):
            want += x * y
        assert got[i] == want
    assert got[2] is None and got[3] is None


def test_load_explains_missing_incomplete_and_foreign_folders(spark, tmp_path):
    with pytest.raises(ModelError, match="no saved model at"):
        FactorModel.load(spark, str(tmp_path / "nothing"))
    model = hand_model(spark, fallback=None)
    path = tmp_path / "m"
    model.save(str(path))
    FactorModel.load(spark, str(path))  # complete: loads

    (path / "item_factors" / "_SUCCESS").unlink()
    with pytest.raises(ModelError, match="item_factors/ is missing or was not fully written"):
        FactorModel.load(spark, str(path))
    meta = json.loads((path / "model.json").read_text())
    (path / ".model.json.crc").unlink(missing_ok=True)  # Hadoop's checksum of the original
    (path / "model.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ModelError, match="layout version 99"):
        FactorModel.load(spark, str(path))
    (path / "model.json").write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(ModelError, match="not a recspark factor model"):
        FactorModel.load(spark, str(path))
    (path / "model.json").unlink()
    with pytest.raises(ModelError, match="model.json is missing"):
        FactorModel.load(spark, str(path))




@pytest.mark.parametrize("in_tasks", [False, True])
def test_factor_frame_holds_the_driver_arrays_row_for_row(spark, in_tasks):
    rng = np.random.default_rng(5)
    idx = np.array([7, 2, 11, 4, 0])
    bias, factors = rng.normal(size=5), rng.normal(size=(5, 3))

    frame = factor_frame(spark, "user_idx", idx, bias, factors, in_tasks=in_tasks)

    got = {r["user_idx"]: (r["bias"], r["factors"]) for r in frame.collect()}
    assert got == {int(i): (float(b), f.tolist()) for i, b, f in zip(idx, bias, factors)}
    assert frame.schema == factor_schema("user_idx")
    if in_tasks:  # one Arrow batch per core, decoded in the tasks
        assert frame.rdd.getNumPartitions() == min(5, spark.sparkContext.defaultParallelism)
    assert spark.conf.get("spark.sql.execution.arrow.localRelationThreshold") != "0"
