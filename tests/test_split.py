import datetime

import pytest
from chispa import assert_df_equality

from recspark.config import SplitConfig
from recspark.errors import ConfigError
from recspark.schema import MOVIE_ID, RATING, TIMESTAMP, USER_ID
from recspark.split import (
    kfold_split,
    leave_last_out,
    random_split,
    split_config,
    split_ratings,
    stratified_split,
    temporal_cutoff,
    temporal_split,
)

COLS = [USER_ID, MOVIE_ID, RATING, TIMESTAMP]


def _grid(spark, users=100, movies=100):
    rows = [(u, m, 3.0, 1000 + m) for u in range(1, users + 1) for m in range(1, movies + 1)]
    return spark.createDataFrame(rows, COLS)


def test_random_split_is_disjoint_complete_and_near_the_fraction(spark):
    ratings = _grid(spark)
    train, test = random_split(ratings, test_fraction=0.2, seed=42)
    n_train, n_test = train.count(), test.count()
    assert n_train + n_test == 10_000
    assert 1_850 <= n_test <= 2_150  # 4 standard deviations of a Binomial(10000, 0.2)
    assert train.join(test, [USER_ID, MOVIE_ID]).count() == 0


def test_random_split_ignores_partitioning_and_order(spark):
    ratings = _grid(spark, 40, 40)
    _, test_a = random_split(ratings, test_fraction=0.3, seed=7)
    shuffled = ratings.repartition(7).orderBy(RATING, MOVIE_ID)
    _, test_b = random_split(shuffled, test_fraction=0.3, seed=7)
    assert_df_equality(test_a, test_b, ignore_row_order=True)
    _, test_c = random_split(ratings, test_fraction=0.3, seed=8)
    assert sorted(test_a.collect()) != sorted(test_c.collect())


def test_leave_last_out_takes_each_users_latest_rating(spark):
    ratings = spark.createDataFrame(
        [
            (1, 10, 4.0, 100),
            (1, 11, 3.0, 300),  # user 1's latest
            (1, 12, 5.0, 200),
            (2, 10, 2.0, 50),
            (2, 13, 1.0, 50),  # tie on time: larger movie id is "later"
            (3, 10, 4.5, 10),  # single rating: stays in train
        ],
        COLS,
    )
    train, test = leave_last_out(ratings)
    expected_test = spark.createDataFrame([(1, 11, 3.0, 300), (2, 13, 1.0, 50)], COLS)
    assert_df_equality(test, expected_test, ignore_row_order=True)
    assert sorted((r[USER_ID], r[MOVIE_ID]) for r in train.collect()) == [
        (1, 10), (1, 12), (2, 10), (3, 10)
    ]
    same_train, same_test = split_ratings(ratings, cfg=SplitConfig(kind="leave_last_out"), seed=0)
    assert_df_equality(same_test, expected_test, ignore_row_order=True)


def test_split_config_sets_the_kind_and_rejects_unknown_ones():
    cfg = SplitConfig(test_fraction=0.3)
    assert split_config(cfg, "leave_last_out") == SplitConfig(kind="leave_last_out", test_fraction=0.3)
    with pytest.raises(ConfigError, match="kind: input should be .random., .leave_last_out."):
        split_config(cfg, "by_time")


def test_kfold_parts_are_disjoint_and_cover_every_rating(spark):
    ratings = _grid(spark, 30, 30)
    tests = [
        {(r[USER_ID], r[MOVIE_ID]) for r in kfold_split(ratings, folds=4, fold=f, seed=3)[1].collect()}
        for f in range(4)
    ]
    assert sum(len(t) for t in tests) == 900
    assert set().union(*tests) == {(u, m) for u in range(1, 31) for m in range(1, 31)}
    assert all(150 <= len(t) <= 300 for t in tests)  # ≈ 225 each, > 5 standard deviations
    train, test = kfold_split(ratings, folds=4, fold=2, seed=3)
    assert {(r[USER_ID], r[MOVIE_ID]) for r in train.collect()} == set().union(*tests) - tests[2]
    again = {(r[USER_ID], r[MOVIE_ID]) for r in kfold_split(ratings, folds=4, fold=0, seed=4)[1].collect()}
    assert again != tests[0]
    _, via_config = split_ratings(ratings, cfg=SplitConfig(kind="kfold", test_fraction=0.25), seed=3)
    assert {(r[USER_ID], r[MOVIE_ID]) for r in via_config.collect()} == tests[0]
    with pytest.raises(ConfigError, match="folds >= 2"):
        kfold_split(ratings, folds=4, fold=4, seed=3)


def test_temporal_split_puts_no_test_rating_before_the_cutoff(spark):
    ratings = spark.createDataFrame(
        [(u, m, 3.0, 100 * m + u) for u in range(1, 6) for m in range(1, 11)], COLS
    )  # timestamps 101..1005
    cutoff = temporal_cutoff(ratings, test_fraction=0.2)
    assert cutoff == 805  # the 40th of 50 sorted timestamps (101..105, 201..205, ...)
    train, test = temporal_split(ratings, cutoff=cutoff)
    assert test.agg({TIMESTAMP: "min"}).first()[0] >= cutoff
    assert train.agg({TIMESTAMP: "max"}).first()[0] < cutoff
    assert train.count() + test.count() == 50 and 9 <= test.count() <= 11
    day = int(datetime.datetime(2001, 9, 9, tzinfo=datetime.timezone.utc).timestamp())
    dated = spark.createDataFrame([(1, 1, 3.0, day - 1), (1, 2, 3.0, day), (2, 1, 3.0, day + 5)], COLS)
    _, late = split_ratings(dated, cfg=SplitConfig(kind="temporal", cutoff="2001-09-09"), seed=0)
    assert sorted((r[USER_ID], r[MOVIE_ID]) for r in late.collect()) == [(1, 2), (2, 1)]


def test_stratified_split_keeps_every_test_user_in_train(spark):
    rows = [(u, m, 3.0, m) for u in range(1, 21) for m in range(1, u + 1)]  # user u rated u movies
    train, test = stratified_split(spark.createDataFrame(rows, COLS), test_fraction=0.25, seed=5)
    per_user = {r[USER_ID]: r["count"] for r in test.groupBy(USER_ID).count().collect()}
    assert per_user == {u: u // 4 for u in range(4, 21)}  # floor(0.25 · n_u); users 1..3 none
    assert set(per_user) <= {r[USER_ID] for r in train.select(USER_ID).distinct().collect()}
    assert train.count() + test.count() == len(rows)
    assert train.join(test, [USER_ID, MOVIE_ID]).count() == 0


def test_split_config_accepts_a_toml_date_as_the_cutoff():
    assert SplitConfig(cutoff=datetime.date(2015, 1, 2)).cutoff == "2015-01-02"
    with pytest.raises(ValueError):
        SplitConfig(cutoff="2015/01/02")
