"""Small generated data sets shared by the synthetic generator's tests (built once each)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recspark.config import load_config
from recspark.synthetic import generate_movielens

#: A small shape: 300 users, 200 movies, 12,000 ratings, several chunks per partition.
SMALL = [
    "generate.users=300",
    "generate.movies=200",
    "generate.ratings=12000",
    "generate.tags=600",
    "generate.rank=4",
    "generate.partitions=2",
    "generate.chunk_ratings=3000",
]


def generate(spark, out: Path, *overrides: str):
    """Generate the SMALL shape (plus ``overrides``) into ``out``; (config, summary)."""
    cfg = load_config([], SMALL + list(overrides))
    return cfg, generate_movielens(spark, cfg=cfg, output=str(out))


def read_ratings(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "ratings.csv")


@pytest.fixture(scope="package")
def small(spark, tmp_path_factory):
    """(folder, config, summary) of the SMALL data set."""
    out = tmp_path_factory.mktemp("synthetic") / "ml-small"
    cfg, summary = generate(spark, out)
    return out, cfg, summary


@pytest.fixture(scope="package")
def segmented(spark, tmp_path_factory):
    """(folder, config) of the SMALL shape with 3 planted user segments."""
    out = tmp_path_factory.mktemp("synthetic") / "ml-segments"
    cfg, _ = generate(spark, out, "generate.segments=3")
    return out, cfg
