from __future__ import annotations

import pytest
from chispa import assert_df_equality

from recspark.config import default_config
from recspark.errors import ModelError
from recspark.models import registry
from recspark.models.popularity import PopularityModel
from recspark.schema import MODEL, MOVIE_ID, N_RATINGS, RATING, USER_ID
from recspark.serving.topn import recommend

# counts: movie 10 -> 3, 20 -> 2, 30 -> 2, 40 -> 1
TRAIN = [(1, 10), (2, 10), (2, 20), (3, 10), (3, 30), (3, 40), (4, 20), (4, 30)]
LISTS = [
    (1, 1, 20, 2.0), (1, 2, 30, 2.0),  # tie broken by the smaller movie id
    (2, 1, 30, 2.0), (2, 2, 40, 1.0),
    (3, 1, 20, 2.0),  # rated three of four movies: a single row
    (4, 1, 10, 3.0), (4, 2, 40, 1.0),
]


@pytest.fixture
def train(spark):
    return spark.createDataFrame(
        [(u, m, 4.0) for u, m in TRAIN], f"{USER_ID} long, {MOVIE_ID} long, {RATING} double"
    )


def test_popularity_ranks_most_rated_unrated_movies(spark, train, tmp_path):
    model = registry.fit("popularity", train, cfg=default_config())
    assert {r[MOVIE_ID]: r[N_RATINGS] for r in model.counts.collect()} == {10: 3, 20: 2, 30: 2, 40: 1}
    got = recommend(model, train, n=2, block_users=2)
    expected = spark.createDataFrame(LISTS, "user_id long, rank int, movie_id long, score double")
    assert {r[MODEL] for r in got.collect()} == {"popularity"}
    assert_df_equality(got.drop(MODEL), expected, ignore_row_order=True, ignore_nullable=True)

    model.save(str(tmp_path / "popularity"))
    loaded = registry.spec("popularity").load(spark, str(tmp_path / "popularity"))
    again = recommend(loaded, train, n=2, block_users=3).drop(MODEL)
    assert_df_equality(again, expected, ignore_row_order=True, ignore_nullable=True)


def test_loading_another_models_folder_is_a_model_error(spark, train, tmp_path):
    with pytest.raises(ModelError, match="no saved model"):
        PopularityModel.load(spark, str(tmp_path / "missing"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.json").write_text('{"name": "popularity", "format": "x"}')
    with pytest.raises(ModelError, match="not a version-1 popularity model"):
        PopularityModel.load(spark, str(tmp_path / "other"))
