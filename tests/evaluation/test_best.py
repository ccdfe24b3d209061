from __future__ import annotations

import math

import pandas as pd

from recspark.evaluation.best import best_models, best_rows
from recspark.schema import METRIC, METRICS_SCHEMA, MODEL, SPLIT, VALUE

ROWS = [
    ("bias", "random/test", "rmse", 0.87),
    ("als", "random/test", "rmse", 0.85),
    ("svd", "random/test", "rmse", 0.85),  # tied with als: the name decides
    ("svd@k=5", "random/test", "rmse", 0.80),  # a rank-sweep row, not a model
    ("nmf", "random/test", "rmse", math.nan),  # NaN: left out
    ("als", "random/train", "rmse", 0.60),  # another split
    ("als", "random/test", "ndcg@10", 0.06),
    ("popularity", "random/test", "ndcg@10", 0.16),
    ("als_implicit", "random/test", "ndcg@10", 0.31),
    ("als_implicit", "leave_last_out/test", "ndcg@10", 0.90),
]


def table(rows) -> pd.DataFrame:
    return pd.DataFrame([("r", m, s, k, v, None) for m, s, k, v in rows], columns=METRICS_SCHEMA.names)


def test_best_models_orders_each_list_best_first():
    best = best_models(table(ROWS), split="random/test", ranking_metric="ndcg@10")
    assert best == {
        "split": "random/test",
        "rmse": [{MODEL: "als", VALUE: 0.85}, {MODEL: "svd", VALUE: 0.85}, {MODEL: "bias", VALUE: 0.87}],
        "ranking_metric": "ndcg@10",
        "ranking": [
            {MODEL: "als_implicit", VALUE: 0.31}, {MODEL: "popularity", VALUE: 0.16},
            {MODEL: "als", VALUE: 0.06},
        ],
    }


def test_best_rows_name_the_winners():
    best = best_models(table(ROWS), split="random/test", ranking_metric="ndcg@10")
    rows = best_rows(best, run_id="r")
    assert rows[[MODEL, SPLIT, METRIC, VALUE]].values.tolist() == [
        ["als", "random/test", "best_by_rmse", 0.85],
        ["als_implicit", "random/test", "best_by_ndcg@10", 0.31],
    ]


def test_no_ranked_model_gives_no_ranking_row():
    best = best_models(table(ROWS[:3]), split="random/test", ranking_metric="hit_rate@10")
    assert best["ranking"] == [] and list(best_rows(best, run_id="r")[METRIC]) == ["best_by_rmse"]
