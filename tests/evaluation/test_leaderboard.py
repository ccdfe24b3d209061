import math

import pandas as pd
import pytest

from recspark.errors import ConfigError
from recspark.evaluation.leaderboard import fold_summary, format_leaderboard, leaderboard
from recspark.schema import FOLD, METRIC, MODEL, RUN_ID, SPLIT, VALUE

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
    board = leaderboard(metrics, k=5, sort_by="rmse")
    assert board[MODEL].tolist() == ["als", "bias", "popularity"]  # no RMSE: last
    als = board.iloc[0]
    assert als["rmse"] == pytest.approx(0.85) and als["rmse_std"] == pytest.approx(0.01 * 2**0.5)
    assert als["fit_seconds"] == pytest.approx(10.5) and als["ndcg@5"] == pytest.approx(0.1)
    assert math.isnan(board.iloc[2]["rmse"]) and math.isnan(board.iloc[1]["ndcg@5"])
    assert list(board.columns[:3]) == [MODEL, "rmse", "rmse_std"]
    assert leaderboard(metrics, k=5, sort_by="ndcg")[MODEL].tolist() == ["popularity", "als", "bias"]
    assert leaderboard(metrics, k=5, sort_by="fit_seconds")[MODEL].tolist() == ["bias", "popularity", "als"]
    assert "0.8500 ± 0.0141" in format_leaderboard(board)
    with pytest.raises(ConfigError, match="ndcg@5"):
        leaderboard(metrics, k=5, sort_by="precision")


def test_leaderboard_of_one_split_reads_the_main_split_and_has_no_std():
    metrics = _table([
        ("bias", "random/train", "fit_seconds", 30.0, None),
        ("bias", "random/test", "rmse", 0.87, None),
        ("bias", "leave_last_out/test", "rmse", 0.99, None),  # an extra split: not the board's
        ("bias@k=5", "random/test", "rmse", 0.5, None),  # a sweep row: not a model of the run
    ])
    board = leaderboard(metrics, k=10, sort_by="mae")
    assert board[MODEL].tolist() == ["bias"]
    assert board["rmse"].iloc[0] == 0.87 and math.isnan(board["rmse_std"].iloc[0])
    assert board["fit_seconds"].iloc[0] == 30.0
    assert "±" not in format_leaderboard(board)
