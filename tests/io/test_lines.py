"""One-scan line numbering (scan_lines, line_bases, number_lines), checked against the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.io.lines import line_bases, number_lines, scan_lines, source_uri
from recspark.schema import LINE_NUMBER, RAW_LINE, ROW_ID, SOURCE_FILE, SPLIT_START


def test_line_bases_by_hand() -> None:
    # Split 0 lost its first line (row 0, a header): rows 1..9 are lines 2..10; the split at
    # byte 500 is partition 1, row ids from 2^33: its first row is line 11.
    two = line_bases([(500, 5, 2**33, 2**33 + 4), (0, 9, 1, 9)])
    assert two == {0: 1, 500: 11 - 2**33}
    # Split 0 held nothing but the dropped first line: the next split starts at line 2.
    assert line_bases([(700, 3, 100, 102)]) == {700: 2 - 100}
    assert line_bases([(0, 4, 0, 3)]) == {0: 1}  # nothing dropped


@pytest.mark.parametrize("splits", [[(0, 5, 0, 9)], [(0, 3, 2, 4)], [(64, 2, 10, 12)]])
def test_line_bases_refuse_rows_that_are_not_one_whole_split(splits) -> None:
    with pytest.raises(RuntimeError, match="a Spark partition held more than this split"):
        line_bases(splits, source="ratings.csv")


def test_scan_count_number_is_exact_across_many_splits(spark: SparkSession, tmp_path: Path) -> None:
    # A header, lines of varying length, blank lines; many input splits; the header dropped
    # before counting, as the ingest's validation drops it.
    lines = ["h1,h2", *[f"{i},{'x' * (i % 37)}" if i % 53 else "" for i in range(1, 701)]]
    path = tmp_path / "r.csv"
    path.write_text("\n".join(lines) + "\n")
    old = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2000")
    try:
        assert spark.read.text(str(path)).rdd.getNumPartitions() >= 5  # really split
        scanned = scan_lines(spark, str(path))
        assert scanned.where(F.col(LINE_NUMBER) == 1).select(RAW_LINE).first()[0] == "h1,h2"
        kept = scanned.where(F.col(LINE_NUMBER) != 1).drop(SOURCE_FILE, LINE_NUMBER)
        kept = kept.persist(StorageLevel.MEMORY_ONLY)
        counts = (
            kept.groupBy(SPLIT_START).agg(F.count(F.lit(1)), F.min(ROW_ID), F.max(ROW_ID)).collect()
        )
        bases = line_bases([tuple(r) for r in counts])
        rows = number_lines(kept, bases, source=source_uri(spark, str(path))).collect()
        kept.unpersist()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
    assert {r[LINE_NUMBER]: r[RAW_LINE] for r in rows} == {
        i + 1: line for i, line in enumerate(lines) if i > 0
    }
    assert {r[SOURCE_FILE] for r in rows} == {f"file://{path}"}
    assert set(rows[0].asDict()) == {SOURCE_FILE, LINE_NUMBER, RAW_LINE, "latin1_fallback"}


def test_source_uri_is_what_input_file_name_reports(spark: SparkSession, tmp_path: Path) -> None:
    # Spaces and percent signs are percent-encoded in both; no Spark job reads the file.
    path = tmp_path / "a folder" / "rat%ings 1.csv"
    path.parent.mkdir()
    path.write_text("userId,movieId\n1,2\n")
    reported = spark.read.text(str(path)).select(F.input_file_name()).first()[0]
    assert source_uri(spark, str(path)) == reported
    assert "%20" in reported and "%25" in reported
