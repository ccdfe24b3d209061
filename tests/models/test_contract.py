"""Every registered model keeps the promises of the abilities its spec claims."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.config import load_config
from recspark.io.runs import read_model_meta
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.contract import (
    PROTOCOLS,
    Ability,
    BlockScorer,
    FitContext,
    ModelSpec,
    RankingInputs,
)
from recspark.io.ingested import MOVIES_DIR, TAGS_DIR
from recspark.schema import (
    MOVIES_SCHEMA,
    TAGS_SCHEMA,
    FACTORS,
    ITERATION,
    MOVIE_ID,
    MOVIE_IDX,
    PERSONALISED,
    PREDICTION,
    RATING,
    USER_ID,
    USER_IDX,
)
from recspark.serving.topn import recommend

USERS, MOVIES = 12, 10
SETTINGS = [
    "als.rank=2", "als.max_iter=2", "als.blocks=2",
    "mllib_als.rank=2", "mllib_als.max_iter=2", "mllib_als.num_blocks=2",
    "svd.rank=2", "svd.sweep=[1, 3]", "svd.max_rounds=2", "svd.blocks=2",
    "nmf.rank=2", "nmf.max_iter=2", "nmf.als_max_iter=2", "nmf.blocks=2",
    "als_implicit.rank=2", "als_implicit.max_iter=2", "als_implicit.blocks=2",
    "sgd_mf.rank=2", "sgd_mf.epochs=2", "svdpp.rank=2", "svdpp.epochs=2",
    "blend.members=[\"bias\", \"svd\"]",
]


@pytest.fixture(scope="module")
def data(spark):
    """12 users × 10 movies, 70 % rated, half stars; ids differ from the dense indices."""
    g = np.random.default_rng(18)
    rows = [
        (100 + u, 500 + 7 * i, u, i, float(np.round(g.uniform(1, 5) * 2) / 2))
        for u in range(USERS)
        for i in range(MOVIES)
        if g.random() < 0.7 or u == i
    ]
    df = spark.createDataFrame(rows, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING]).cache()
    cfg = load_config(overrides=SETTINGS)
    return df, cfg, fit_bias(df, cfg=cfg.bias)


def _with_content(spark, tmp) -> object:
    """The test config with ``ingest.output_dir`` at a tiny ingested movies and tags folder
    (content_knn reads them)."""
    genres = ["Comedy", "Drama|Romance", "Horror|Sci-Fi", "Action"]
    spark.createDataFrame(
        [(500 + 7 * i, f"Movie {i} ({1990 + i})", genres[i % 4]) for i in range(MOVIES + 1)],
        MOVIES_SCHEMA,
    ).write.parquet(str(tmp / MOVIES_DIR))
    spark.createDataFrame(
        [(100, 500 + 7 * i, "tag" + str(i % 3), 0) for i in range(MOVIES)], TAGS_SCHEMA
    ).write.parquet(str(tmp / TAGS_DIR))
    return load_config(overrides=SETTINGS + [f"ingest.output_dir={tmp}"])


@pytest.fixture(scope="module", params=list(registry.MODELS))
def fitted(request, data, tmp_path_factory):
    df, cfg, bias = data
    spec = registry.spec(request.param)
    if spec.name == "content_knn":
        cfg = _with_content(df.sparkSession, tmp_path_factory.mktemp("ingest"))
    return spec, spec.fit_model(FitContext(train=df, cfg=cfg, bias=bias, validation=df))


def test_fitted_model_satisfies_every_protocol_its_spec_claims(fitted):
    spec, model = fitted
    assert model.name == spec.name
    for ability in spec.abilities:
        assert isinstance(model, PROTOCOLS[ability]), f"{spec.name} lacks {ability.value}"


def test_claimed_abilities_work(spark, fitted, data, tmp_path):
    spec, model = fitted
    df = data[0]
    pairs = df.select(USER_ID, MOVIE_ID).unionByName(
        spark.createDataFrame([(999, 500), (100, 999)], [USER_ID, MOVIE_ID])  # unknown ids
    )
    if spec.can(Ability.PREDICT):
        out = model.predict(pairs)
        assert {PREDICTION, PERSONALISED} <= set(out.columns)
        assert out.count() == pairs.count()
    if spec.can(Ability.TOP_N):
        inputs = model.ranking_inputs()
        assert isinstance(inputs, RankingInputs) and isinstance(inputs.scorer, BlockScorer)
        assert np.all(np.diff(inputs.scorer.item_ids) > 0)  # ascending ids
        lists = recommend(model, df, n=3).collect()
        assert lists and all(r[MOVIE_ID] in set(inputs.scorer.item_ids.tolist()) for r in lists)
    if spec.can(Ability.FACTORS):
        assert {USER_ID, FACTORS} <= set(model.user_factors.columns)
        assert {MOVIE_ID, FACTORS} <= set(model.item_factors.columns)
    if spec.can(Ability.SAVE):
        model.save(str(tmp_path / spec.name))
        assert read_model_meta(spark, str(tmp_path / spec.name))["name"] == spec.name
        assert spec.load(spark, str(tmp_path / spec.name)).name == spec.name
    if spec.can(Ability.FOLD_IN):
        new = spark.createDataFrame([(999, 500, 4.0), (999, 507, 2.0)], [USER_ID, MOVIE_ID, RATING])
        folded = model.fold_in(new)
        if spec.can(Ability.PREDICT):
            assert folded.predict(pairs).where(f"{USER_ID} = 999").first()[PERSONALISED]
        else:  # a ranking-only model: the new user gets a list
            assert recommend(folded, new, n=2).where(f"{USER_ID} = 999").count() == 2
    if spec.can(Ability.HISTORY):
        assert model.history is None or ITERATION in model.history
    if spec.can(Ability.RANK_SWEEP):
        assert model.sweep_model is None or model.sweep_model.rank >= model.rank


def test_a_model_without_a_claimed_ability_fails_its_protocol(data):
    bias = data[2]  # BiasModel: predicts and saves, cannot rank, has no factors
    assert isinstance(bias, PROTOCOLS[Ability.PREDICT])
    for ability in (Ability.TOP_N, Ability.FACTORS, Ability.FOLD_IN):
        assert not isinstance(bias, PROTOCOLS[ability])
    with pytest.raises(TypeError, match="claims SAVE but its spec has no load"):
        ModelSpec("x", "", fit=lambda train: None, abilities=frozenset({Ability.SAVE}))


def test_every_registered_model_can_be_saved_and_rescored():
    """Issue 10: every model (later ones too) is saved with its run, so jobs/rescore.py can
    load it; a new model without SAVE fails here."""
    # Not saved yet: blend's weights (its members are saved models; open in issue 13).
    unsaved = {"blend"}
    assert registry.with_ability(Ability.SAVE) == [
        s.name for s in registry.specs() if s.name not in unsaved
    ]
