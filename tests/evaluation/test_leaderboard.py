"""The leaderboard from a metrics table: picked splits, mean ± std, best marks, width."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recspark.evaluation.leaderboard import best, cell, format_board, leaderboard


def _metrics(rows, fold=False):
    cols = ["run_id", "model", "split", "metric", "value"] + (["fold"] if fold else [])
    return pd.DataFrame([("r", *row) for row in rows], columns=cols)


ROWS = [
    ("bias", "random/test", "rmse", 0.90),
    ("bias", "random/test", "mae", 0.70),
    ("bias", "random/train", "rmse", 0.80),  # the train split is not on the board
    ("bias", "random/train", "fit_seconds", 2.0),
    ("als", "random/test", "rmse", 0.85),
    ("als", "random/test", "mae", 0.72),
    ("als", "random/test", "ndcg@10", 0.01),
    ("als", "random/test", "hit_rate@10", 0.05),
    ("als", "random/test", "coverage@10", 0.30),
    ("als", "random/train", "fit_seconds", 9.0),
    ("als", "leave_last_out/test", "rmse", 0.99),  # another split kind
    ("als@k=5", "random/test", "rmse", 0.10),  # rank-sweep rows are not models
    ("popularity", "random/test", "ndcg@10", 0.16),
    ("popularity", "random/test", "hit_rate@10", 0.58),
    ("popularity", "random/test", "coverage@10", 0.01),
    ("popularity", "random/train", "fit_seconds", 1.0),
]


def test_rows_columns_and_sort_by_rmse():
    board = leaderboard(_metrics(ROWS), kind="random", k=10)
    assert list(board["model"]) == ["als", "bias", "popularity"]  # NaN RMSE last
    assert list(board.columns) == [
        "model", "rmse", "mae", "ndcg@10", "hit_rate@10", "coverage@10", "fit_seconds"
    ]
    assert board.loc[0, "rmse"] == 0.85 and board.loc[1, "rmse"] == 0.90
    assert board.loc[1, "fit_seconds"] == 2.0
    assert math.isnan(board.loc[2, "rmse"]) and math.isnan(board.loc[1, "ndcg@10"])


def test_other_kind_and_sort_by_a_ranking_metric():
    lol = leaderboard(_metrics(ROWS), kind="leave_last_out", k=10)
    assert lol.set_index("model").loc["als", "rmse"] == 0.99
    by_ndcg = leaderboard(_metrics(ROWS), kind="random", k=10, sort_by="ndcg@10")
    assert list(by_ndcg["model"]) == ["popularity", "als", "bias"]
    with pytest.raises(ValueError, match="cannot sort"):
        leaderboard(_metrics(ROWS), kind="random", k=10, sort_by="precision@10")


def test_best_marks_lowest_errors_and_highest_ranking():
    board = leaderboard(_metrics(ROWS), kind="random", k=10)
    assert best(board, k=10) == {
        "rmse": "als", "mae": "bias", "ndcg@10": "popularity", "hit_rate@10": "popularity",
        "coverage@10": "als", "fit_seconds": "popularity",
    }


def test_folds_use_summary_rows_and_show_mean_pm_std():
    rows = [
        ("als", "random/test", "rmse", 0.80, 0.0),
        ("als", "random/test", "rmse", 0.90, 1.0),
        ("als", "random/test", "rmse", 0.85, None),
        ("als", "random/test", "rmse_std", 0.05, None),
        ("als", "random/train", "fit_seconds", 3.0, None),
    ]
    board = leaderboard(_metrics(rows, fold=True), kind="random", k=10)
    assert list(board.columns)[:3] == ["model", "rmse", "rmse_std"]
    assert board.loc[0, "rmse"] == 0.85
    assert cell(board, 0, "rmse") == "0.8500 ± 0.0500"
    assert cell(board, 0, "fit_seconds") == "3.0"
    assert cell(board, 0, "mae") == ""


def test_printed_board_fits_120_columns_and_marks_best():
    rows = ROWS + [("a_model_with_a_very_long_name_" * 4, "random/test", "rmse", 0.95)]
    text = format_board(leaderboard(_metrics(rows), kind="random", k=10), k=10)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 120
    als = next(line for line in lines if line.startswith("als"))
    assert "0.8500*" in als and "0.7200 " in als + " "
    assert lines[-1].startswith("* best")
