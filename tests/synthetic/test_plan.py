"""The driver-side plan: movie ids, feasible shapes (checked when the config is built),
scaling, activity windows and planted segments."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from recspark.config import GenerateConfig, load_config
from recspark.errors import ConfigError
from recspark.schema import FACTORS, SEGMENT, USER_ID
from recspark.synthetic.plan import (
    FIRST_TIMESTAMP,
    LAST_TIMESTAMP,
    movie_ids,
    plan_synthetic,
    scaled_config,
)
from tests.synthetic.conftest import SMALL, read_ratings


def test_movie_ids_increase_with_gaps():
    ids = movie_ids(movies=20_000, span=3.34, rng=np.random.default_rng(0))
    gaps = np.diff(ids)
    assert (gaps >= 1).all()
    assert 3.0 * 20_000 < ids[-1] < 3.7 * 20_000
    assert np.mean(gaps[:1000] == 1) > 0.8 > np.mean(gaps[-1000:] == 1)  # dense early, sparse late


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # cap = ⌊0.38·100⌋ = 38 per user: 10 users hold at most 380 ratings.
        (["users=10", "movies=100", "ratings=390"], "generate.ratings = 390 is impossible.*200 and 380"),
        (["users=10", "movies=100", "ratings=100"], "generate.ratings = 100 is impossible"),  # < 10·20
        (["users=10", "movies=40", "ratings=300"], "max_user_share·movies = 15 is below"),  # 15 < 20
        (["users=10", "movies=100", "ratings=300", "segments=11"], "segments = 11 exceeds"),
    ],
)
def test_impossible_shapes_fail_when_the_config_is_built(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config([], [f"generate.{o}" for o in overrides])
    with pytest.raises(ValueError, match=message):  # built directly: pydantic's ValidationError
        GenerateConfig(**dict(o.split("=") for o in overrides))


def test_user_cap_rounds_down():
    assert GenerateConfig(users=10, movies=100, ratings=300, max_user_share=0.379).user_cap == 37


def test_scaled_config_keeps_the_shape():
    full = GenerateConfig()
    eighth = scaled_config(full, 1 / 8)
    assert (eighth.users, eighth.movies, eighth.ratings, eighth.tags) == (
        round(200_948 / 8), round(87_585 / 8), round(32_000_204 / 8), round(2_000_072 / 8))
    assert eighth.model_dump(exclude={"users", "movies", "ratings", "tags"}) == full.model_dump(
        exclude={"users", "movies", "ratings", "tags"})
    # 1e-6: 0 users, 32 ratings, 0 movies before the floors; 1 user's 32 ratings need 85
    # movies under a cap of ⌊0.38·85⌋ = 32.
    tiny = scaled_config(full, 1e-6)
    assert (tiny.users, tiny.ratings, tiny.movies, tiny.user_cap) == (1, 32, 85, 32)


def test_plan_sizes_and_activity_windows():
    gcfg = load_config([], SMALL).generate
    plan = plan_synthetic(gcfg, seed=5)
    assert (plan.users, plan.movies, plan.ratings) == (300, 200, 12_000)
    assert plan.user_factors.shape == (300, 4) and plan.movie_factors.shape == (200, 4)
    assert plan.movie_probs.sum() == pytest.approx(1.0)
    assert (plan.user_start >= FIRST_TIMESTAMP).all()
    assert (plan.user_start + plan.user_span <= LAST_TIMESTAMP).all()
    assert plan.chunk_bounds[0] == 0 and plan.chunk_bounds[-1] == 300
    assert len(plan.chunk_bounds) - 1 == 4  # 12,000 ratings in chunks of ~3,000
    u = np.repeat(np.arange(300), 50)
    t = plan.event_times(u, np.random.default_rng(0))
    assert ((t >= plan.user_start[u]) & (t <= plan.user_start[u] + plan.user_span[u])).all()


def test_activity_window_grows_with_the_users_ratings():
    # log10 d_u ~ N(2.9 + 1.5 log10(n_u / 20), 1.3), clipped below at 1.5 (which flattens
    # the fitted slope a little): over 5,000 users the fit is within about ±0.1.
    plan = plan_synthetic(GenerateConfig(users=5000, movies=2000, ratings=400_000, tags=0), seed=5)
    slope, intercept = np.polyfit(np.log10(plan.user_counts / 20), np.log10(plan.user_span), 1)
    assert 1.25 < slope < 1.6 and 2.8 < intercept < 3.2


def test_segments_are_planted_and_visible(segmented):
    out, cfg = segmented
    users = pd.read_parquet(out / "_truth" / "users")
    params = json.loads((out / "_truth" / "params.json").read_text())
    k = 3
    sizes = users[SEGMENT].value_counts()
    assert sorted(sizes.index) == [0, 1, 2]
    assert sizes.min() >= len(users) / (2 * k)

    centres = np.array(params["segment_centres"])
    assert centres.shape == (k, cfg.generate.rank)
    factors = np.stack(users[FACTORS].to_numpy())
    spread = np.linalg.norm(factors - centres[users[SEGMENT].to_numpy()], axis=1).max()
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(k) for j in range(i + 1, k)]
    assert min(gaps) > 2 * spread  # well separated: every user nearest its own centre

    # The segments show in the ratings: on the movies nearly everyone rated, users' centred
    # ratings cluster back into the planted segments.
    r = read_ratings(out)
    common = r.movieId.value_counts().index[:25]
    m = r[r.movieId.isin(common)].pivot(index="userId", columns="movieId", values="rating")
    m = m.sub(m.mean(axis=1), axis=0)
    m = m.fillna(0.0)
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(m.to_numpy())
    truth = users.set_index(USER_ID).loc[m.index, SEGMENT].to_numpy()
    assert adjusted_rand_score(truth, labels) > 0.6
