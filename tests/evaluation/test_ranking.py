from __future__ import annotations

import math

import pytest

from recspark.evaluation.ranking import metric_names, ranking_metrics, relevant_items
from recspark.schema import MOVIE_ID

RECS = "user_id long, rank int, movie_id long"
TEST = "user_id long, movie_id long, rating double"

# A: list 1,2,3 (| 4 at rank 4, beyond k); relevant {2, 4} -> one hit at rank 2
# B: list 6,7,8; relevant {6, 8} -> hits at ranks 1 and 3
# C: list 1,6,9; no relevant test item -> not evaluated (random split)
# D: no list; relevant {7} -> zeros
RECS_ROWS = [
    (1, 1, 1), (1, 2, 2), (1, 3, 3), (1, 4, 4),
    (2, 1, 6), (2, 2, 7), (2, 3, 8),
    (3, 1, 1), (3, 2, 6), (3, 3, 9),
]
TEST_ROWS = [
    (1, 2, 5.0), (1, 4, 4.5), (1, 5, 3.0),
    (2, 6, 4.0), (2, 8, 4.0),
    (3, 3, 2.0),
    (4, 7, 5.0),
]


def test_ranking_metrics_equal_hand_computed_values(spark):
    recs = spark.createDataFrame(RECS_ROWS, RECS)
    test = spark.createDataFrame(TEST_ROWS, TEST)
    catalogue = spark.createDataFrame([(m,) for m in range(1, 11)], "movie_id long")
    got = ranking_metrics(recs, relevant_items(test, threshold=4.0), k=3, catalogue=catalogue)
    l3 = 1 / math.log2(3)  # discount at rank 2
    idcg2 = 1 + l3
    expected = {
        "precision@3": (1 / 3 + 2 / 3 + 0) / 3,
        "recall@3": (1 / 2 + 1 + 0) / 3,
        "ndcg@3": (l3 / idcg2 + (1 + 0.5) / idcg2 + 0) / 3,
        "map@3": ((1 / 2) / 2 + (1 + 2 / 3) / 2 + 0) / 3,
        "hit_rate@3": 2 / 3,
        "coverage@3": 7 / 10,  # {1,2,3,6,7,8,9}; movie 4 is only at rank 4
        "ranking_users": 3.0,
    }
    assert list(got) == metric_names(3)
    assert got == pytest.approx(expected, abs=1e-12)


def test_leave_last_out_counts_every_held_out_item_as_relevant(spark):
    recs = spark.createDataFrame(RECS_ROWS, RECS)
    # one held-out item per user, whatever its rating
    test = spark.createDataFrame([(1, 2, 1.0), (2, 9, 0.5), (3, 9, 2.0)], TEST)
    catalogue = spark.createDataFrame([(m,) for m in range(1, 11)], "movie_id long")
    got = ranking_metrics(recs, relevant_items(test, threshold=None), k=3, catalogue=catalogue)
    # user 1: hit at rank 2; user 2: miss; user 3: hit at rank 3
    assert got["hit_rate@3"] == pytest.approx(2 / 3)
    assert got["recall@3"] == pytest.approx(2 / 3)
    assert got["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 3)
    assert got["map@3"] == pytest.approx((1 / 2 + 1 / 3) / 3)
    assert got["ndcg@3"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)
    assert got["ranking_users"] == 3.0


def test_perfect_lists_score_one(spark):
    recs = spark.createDataFrame([(1, 1, 5), (1, 2, 6)], RECS)
    test = spark.createDataFrame([(1, 5, 5.0), (1, 6, 4.0)], TEST)
    got = ranking_metrics(recs, relevant_items(test, threshold=4.0), k=2,
                          catalogue=recs.select(MOVIE_ID))
    for name in ("precision@2", "recall@2", "ndcg@2", "map@2", "hit_rate@2", "coverage@2"):
        assert got[name] == pytest.approx(1.0), name
