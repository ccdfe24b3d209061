import math

import pytest

from recspark.evaluation.rating import metrics_frame, regression_metrics
from recspark.schema import METRIC, MODEL, PERSONALISED, PREDICTION, RATING, VALUE


def test_regression_metrics_by_hand(spark):
    df = spark.createDataFrame(
        [(4.0, 3.0, True), (2.0, 2.5, True), (5.0, 5.0, False), (1.0, 3.0, True)],
        [RATING, PREDICTION, PERSONALISED],
    )
    m = regression_metrics(df)
    # errors 1, -0.5, 0, -2: squares 1, .25, 0, 4
    assert m["rmse"] == pytest.approx(math.sqrt(5.25 / 4))
    assert m["mae"] == pytest.approx(3.5 / 4)
    assert m["personalised_share"] == pytest.approx(0.75)
    assert m["rows"] == 4


def test_metrics_frame_rows(spark):
    rows = metrics_frame(spark, run_id="r1", model="bias", split="random/test", values={"rmse": 0.9}).collect()
    assert [(r[MODEL], r[METRIC], r[VALUE]) for r in rows] == [("bias", "rmse", 0.9)]
