import pytest
from chispa import assert_df_equality

from recspark.config import SplitConfig
from recspark.errors import ConfigError
from recspark.schema import MOVIE_ID, RATING, TIMESTAMP, USER_ID
from recspark.split import leave_last_out, random_split, split_config, split_ratings

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
    with pytest.raises(ConfigError, match="kind: input should be .random. or .leave_last_out."):
        split_config(cfg, "by_time")
