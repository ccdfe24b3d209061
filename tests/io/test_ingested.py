"""The ingested folder: writers and readers round-trip, missing tables say what to run."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark.errors import DataNotFoundError
from recspark.io import ingested
from recspark.schema import GENOME_SCORES_SCHEMA, GENOME_TAGS_SCHEMA, INGESTED_RATINGS_SCHEMA, USER_BLOCK


def test_write_ratings_partitions_by_user_block_and_reads_back(
    spark: SparkSession, tmp_path: Path
) -> None:
    rows = [  # user_id, movie_id, rating, timestamp, user_idx, movie_idx, user_block
        (10, 5, 3.0, 100, 0, 0, 0),
        (20, 7, 2.5, 101, 1, 1, 1),
        (30, 5, 4.0, 102, 2, 0, 0),
        (30, 7, 1.0, 103, 2, 1, 0),
    ]
    folder = str(tmp_path / "ingest")
    ingested.write_ratings(
        spark.createDataFrame(rows, INGESTED_RATINGS_SCHEMA), folder, user_blocks=2
    )
    assert sorted(p.name for p in Path(folder, "ratings").iterdir() if p.is_dir()) == [
        "user_block=0",
        "user_block=1",
    ]
    back = ingested.read_ratings(spark, folder)
    assert back.schema.fieldNames() == INGESTED_RATINGS_SCHEMA.fieldNames()
    assert sorted(tuple(r) for r in back.collect()) == rows
    assert back.filter(f"{USER_BLOCK} = 1").count() == 1


def test_report_round_trip_and_missing_table_message(spark: SparkSession, tmp_path: Path) -> None:
    folder = str(tmp_path / "ingest")
    ingested.write_report(spark, folder, {"status": "ok", "files": {"ratings.csv": {"n": 3}}})
    assert ingested.read_report(spark, folder) == {
        "status": "ok",
        "files": {"ratings.csv": {"n": 3}},
    }
    with pytest.raises(DataNotFoundError, match="Run the ingest job first") as err:
        ingested.read_movies(spark, folder)
    assert f"{folder}/movies" in str(err.value)
    assert ingested.failed_dir(folder + "/") == folder + ".failed"


def test_read_ratings_csv_renames_and_types_the_ml_latest_columns(
    spark: SparkSession, tmp_path: Path
) -> None:
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n7,1029,3.0,964982703\n"
    )
    ratings = ingested.read_ratings_csv(spark, str(tmp_path))
    assert [tuple(r) for r in ratings.collect()] == [
        (1, 31, 2.5, 1260759144),
        (7, 1029, 3.0, 964982703),
    ]
    assert ratings.columns == ["user_id", "movie_id", "rating", "timestamp"]


def test_read_genome_types_and_renames_the_ml25m_columns(spark: SparkSession, tmp_path: Path) -> None:
    assert ingested.read_genome(spark, str(tmp_path)) is None  # no genome: None, not an error
    (tmp_path / "genome-scores.csv").write_text("movieId,tagId,relevance\n1,1,0.02875\n1,2,0.9\n7,1,1.0\n")
    (tmp_path / "genome-tags.csv").write_text('tagId,tag\n1,007\n2,"funny, but sad"\n')
    scores, tags = ingested.read_genome(spark, str(tmp_path))
    def typed(schema):  # the CSV reader makes every column nullable
        return [(f.name, f.dataType) for f in schema.fields]

    assert typed(scores.schema) == typed(GENOME_SCORES_SCHEMA) and typed(tags.schema) == typed(GENOME_TAGS_SCHEMA)
    assert [tuple(r) for r in scores.orderBy("movie_id", "tag_id").collect()] == [
        (1, 1, 0.02875), (1, 2, 0.9), (7, 1, 1.0)]
    assert [tuple(r) for r in tags.orderBy("tag_id").collect()] == [(1, "007"), (2, "funny, but sad")]
