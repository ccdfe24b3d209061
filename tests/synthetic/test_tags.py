"""tags.csv: about the planned count, no duplicate triples, MovieLens quoting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recspark.config import load_config
from recspark.synthetic.plan import plan_synthetic
from recspark.synthetic.tags import plan_tags, tag_vocabulary, tags_chunk
from tests.synthetic.conftest import SMALL


def test_tags_file(small):
    out = small[0]
    movies = pd.read_csv(out / "movies.csv")
    tags = pd.read_csv(out / "tags.csv")
    assert 0.8 * 600 < len(tags) <= 600
    assert not tags.duplicated(["userId", "movieId", "tag"]).any()
    assert tags.userId.between(1, 300).all() and set(tags.movieId) <= set(movies.movieId)
    assert tags.tag.str.contains(",").any() or tags.tag.str.contains('"').any()
    assert set(tags.tag) <= set(tag_vocabulary())


def test_tag_plan_counts_and_taggers():
    gcfg = load_config([], SMALL).generate
    counts = np.arange(1, 301)
    plan = plan_tags(gcfg, counts, seed=1)
    assert plan.taggers.size == 24  # 8% of 300 users
    assert (np.diff(plan.taggers) > 0).all() and plan.taggers.max() < 300
    assert plan.tag_counts.sum() == 600 and plan.tag_counts.min() >= 1
    assert plan.tag_probs.sum() == pytest.approx(1.0)
    assert plan_tags(gcfg.replace(tags=0), counts, seed=1).taggers.size == 0


def test_tags_chunk_is_sorted_and_seeded():
    gcfg = load_config([], SMALL).generate
    plan = plan_synthetic(gcfg, seed=3)
    a = tags_chunk(plan, 0, seed=3).to_pandas()
    assert a.equals(tags_chunk(plan, 0, seed=3).to_pandas())
    assert not a.equals(tags_chunk(plan, 0, seed=4).to_pandas())
    assert a.user_id.is_monotonic_increasing
