"""A tiny ingested data set shared by the pipeline tests that run whole jobs."""

from __future__ import annotations

import pytest

from recspark.config import load_config
from recspark.pipeline.ingest import run_ingest

USERS, MOVIES = 30, 20


@pytest.fixture(scope="session")
def tiny(spark, tmp_path_factory):
    """(root folder, the ``--set`` arguments every job of a tiny run shares): 30 users × 20
    movies, about 70 % rated on the half-star grid, ingested into ``<root>/ingest``; train
    runs go to ``<root>/runs``. Cheap settings: no extra split, 2 blocks and partitions."""
    root = tmp_path_factory.mktemp("tiny")
    raw = root / "raw"
    raw.mkdir()
    lines = ["userId,movieId,rating,timestamp"] + [
        f"{u},{10 * m},{((u * 7 + m * 3) % 9 + 1) / 2},{1_000_000 + 100 * u + m}"
        for u in range(1, USERS + 1) for m in range(1, MOVIES + 1) if (u * 3 + m) % 10 > 2
    ]
    (raw / "ratings.csv").write_text("\n".join(lines) + "\n")
    (raw / "movies.csv").write_text(
        "movieId,title,genres\n"
        + "".join(f"{10 * m},Movie {m},{'Drama' if m % 2 else 'Comedy'}\n" for m in range(1, MOVIES + 1))
    )
    common = ["--set", f"data.dir={raw}", "--set", "data.dataset=tiny",
              "--set", f"ingest.output_dir={root}/ingest", "--set", f"train.output_dir={root}/runs",
              "--set", "recommend.extra_splits=", "--set", "mllib_als.num_blocks=2",
              "--set", "ingest.user_blocks=2", "--set", "spark.shuffle_partitions=2"]
    run_ingest(spark, load_config(overrides=common[1::2]))
    return root, common
