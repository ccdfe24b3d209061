"""The planted parameters: tables as planned, segments null when off."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recspark.config import load_config
from recspark.schema import BIAS, FACTORS, MOVIE_ID, N_RATINGS, POPULARITY, SEGMENT, USER_ID
from recspark.synthetic.plan import plan_synthetic
from recspark.synthetic.truth import truth_params, truth_tables
from tests.synthetic.conftest import SMALL


def test_truth_tables_hold_the_plan():
    gcfg = load_config([], SMALL + ["generate.segments=2"]).generate
    plan = plan_synthetic(gcfg, seed=9)
    users, movies = (t.to_pandas() for t in truth_tables(plan))
    assert users[USER_ID].tolist() == list(range(1, 301))
    assert users[N_RATINGS].tolist() == plan.user_counts.tolist()
    assert np.array_equal(np.stack(users[FACTORS].to_numpy()), plan.user_factors)
    assert users[SEGMENT].tolist() == plan.user_segment.tolist()
    assert movies[MOVIE_ID].tolist() == plan.movie_ids.tolist()
    assert np.array_equal(movies[POPULARITY], plan.movie_probs)
    assert np.array_equal(movies[BIAS], plan.movie_bias)
    assert np.array_equal(np.stack(movies[FACTORS].to_numpy()), plan.movie_factors)
    params = truth_params(plan, gcfg, seed=9)
    assert np.array_equal(np.array(params["segment_centres"]), plan.centres)
    assert params["tags_planned"] == 600


def test_segments_are_null_when_off(small):
    users = pd.read_parquet(small[0] / "_truth" / "users")
    assert users[SEGMENT].isna().all() and len(users) == 300
