"""The leaderboard from a metrics table: picked splits, mean ± std, best marks, width."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recspark.errors import ConfigError
from recspark.evaluation.leaderboard import best, board_metric, cell, fold_summary, format_board, leaderboard
from recspark.schema import FOLD, METRIC, MODEL, RUN_ID, SPLIT, VALUE


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


COLUMNS = [RUN_ID, MODEL, SPLIT, METRIC, VALUE, FOLD]


def _table(rows):
    return pd.DataFrame([("r", *row) for row in rows], columns=COLUMNS)


def test_fold_summary_is_the_mean_and_sample_std_over_folds():
    per_fold = _table(
        [("als", "kfold/test", "rmse", v, f) for f, v in enumerate((0.8, 0.9, 1.0))]
        + [("als", "kfold/train", "fit_seconds", v, f) for f, v in enumerate((2.0, 4.0, 9.0))]
        + [("als", "kfold/test", "rows", 5.0, None)]  # not a per-fold row: left out
    )
    got = fold_summary(per_fold).set_index([SPLIT, METRIC])[VALUE]
    assert got[("kfold/test", "rmse")] == pytest.approx(0.9)
    assert got[("kfold/test", "rmse_std")] == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    assert got[("kfold/train", "fit_seconds")] == pytest.approx(5.0)
    assert got[("kfold/train", "fit_seconds_std")] == pytest.approx(math.sqrt((9 + 1 + 16) / 2))
    assert len(got) == 4 and fold_summary(per_fold)[FOLD].isna().all()


def test_leaderboard_of_a_cross_validated_run_sorts_and_carries_the_std():
    per_fold = _table(
        [("als", "kfold/test", "rmse", v, f) for f, v in enumerate((0.84, 0.86))]
        + [("bias", "kfold/test", "rmse", v, f) for f, v in enumerate((0.88, 0.90))]
        + [(m, "kfold/test", "ndcg@5", v, f) for m, v in (("als", 0.1), ("popularity", 0.3))
           for f in (0, 1)]
        + [(m, "kfold/train", "fit_seconds", s + f, f) for m, s in
           (("als", 10.0), ("bias", 3.0), ("popularity", 3.5)) for f in (0, 1)]
    )
    metrics = pd.concat([per_fold, fold_summary(per_fold)], ignore_index=True)
    board = leaderboard(metrics, kind="kfold", k=5, sort_by=board_metric("rmse", 5))
    assert board[MODEL].tolist() == ["als", "bias", "popularity"]  # no RMSE: last
    als = board.iloc[0]
    assert als["rmse"] == pytest.approx(0.85) and als["rmse_std"] == pytest.approx(0.01 * 2**0.5)
    assert als["fit_seconds"] == pytest.approx(10.5) and als["ndcg@5"] == pytest.approx(0.1)
    assert math.isnan(board.iloc[2]["rmse"]) and math.isnan(board.iloc[1]["ndcg@5"])
    assert list(board.columns[:3]) == [MODEL, "rmse", "rmse_std"]
    by_ndcg = leaderboard(metrics, kind="kfold", k=5, sort_by=board_metric("ndcg", 5))
    assert by_ndcg[MODEL].tolist() == ["popularity", "als", "bias"]
    by_time = leaderboard(metrics, kind="kfold", k=5, sort_by=board_metric("fit_seconds", 5))
    assert by_time[MODEL].tolist() == ["bias", "popularity", "als"]
    assert "0.8500 ± 0.0141" in format_board(board, k=5)
    with pytest.raises(ConfigError, match="ndcg@5"):
        board_metric("precision", 5)
