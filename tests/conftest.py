"""One session-scoped local SparkSession shared by every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

#: The real ml-latest-small sample, beside the repo (CI) or where $RECSPARK_DATA points.
REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = Path(os.environ.get("RECSPARK_DATA", REPO.parent / "shared" / "data")) / "ml-latest-small"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> SparkSession:
    tmp = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("recspark-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "3g")
        .config("spark.sql.warehouse.dir", str(tmp / "warehouse"))
        .config("spark.local.dir", str(tmp / "local"))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(str(tmp / "checkpoints"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The ml-latest-small folder; tests that need it fail loudly if it is missing."""
    if not (SAMPLE_DIR / "ratings.csv").is_file():
        pytest.fail(
            f"ml-latest-small not found at {SAMPLE_DIR}; set RECSPARK_DATA to the folder holding it"
        )
    return SAMPLE_DIR
