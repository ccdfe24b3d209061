"""The Arrow ratings path of the ingest gives the Spark path's tables, row for row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from recspark.config import load_config
from recspark.io import byteranges, ratings_tasks
from recspark.io.ingested import read_quarantine, read_ratings
from recspark.pipeline.ingest import run_ingest

NOW = 1_700_000_000

# Every kind of line the validation knows, with \n, \r\n and lone \r ends, no final newline.
MESSY = (
    b"userId,movieId,rating,timestamp\r\n"
    b"1,10,4.0,1000\n"
    b"1,20,3.5,1001\r\n"
    b"2,10,5,1002\r"  # lone CR end
    b"2,10,2.0,1003\n"  # the same pair later: kept
    b"2,10,1.0,1003\n"  # same timestamp, later line: kept instead
    b"\n"  # blank
    b" 3 , 10 , 4.5 , 1004 \n"  # spaces: Spark's, accepted
    b"+4,10,4.5,1005\n"  # signed: Spark's, accepted
    b"4,10,4.,1006\n"  # '4.': Spark's, accepted
    b"5,10,4.25,1007\n"  # off the half-star grid
    b"6,0,4.0,1008\n"  # movie id 0
    b"7,10,4.0,1700000000000\n"  # milliseconds
    b"8,10,4.0,1e3\n"  # exponent
    b"9,10,4.0\n"  # three fields
    b'"10",10,4.0,1009\n'  # quoted
    b"userId,movieId,rating,timestamp\n"  # repeated header
    b"11,10,\xe94.0,1010\n"  # not UTF-8: latin-1 fallback, then not numeric
    b"99999999999999999999,10,4.0,1011\n"  # beyond a long
    b"12;10;4.0;1012\n"  # another separator
    b"13,30,0.5,1013\n"
    b"13,10,5.0,1014"  # no final newline
)


def _dataset(folder: Path, ratings: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_bytes(ratings)
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n10,A (1999),Drama\n30,B (2001),Comedy\n"
    )
    return folder


def _ingest(spark: SparkSession, data: Path, out: Path, reader: str) -> tuple[dict, str]:
    cfg = load_config(
        overrides=[
            "data.dataset=messy",
            f"data.dir={data}",
            f"ingest.output_dir={out}/{{dataset}}",
            "ingest.user_blocks=3",
            "ingest.max_quarantine_share=0.9",
            f"ingest.reader={reader}",
        ]
    )
    return run_ingest(spark, cfg, now=NOW), cfg.ingest_dir()


def _frame(target: str, sub: str) -> pd.DataFrame:
    table = pq.read_table(Path(target, sub)).to_pandas()
    return table.sort_values(list(table.columns)).reset_index(drop=True)


def test_the_arrow_path_writes_what_the_spark_path_writes(
    spark: SparkSession, tmp_path: Path, monkeypatch
) -> None:
    data = _dataset(tmp_path / "raw", MESSY)
    want, want_dir = _ingest(spark, data, tmp_path / "spark", "spark")
    # 16-byte ranges (the ranges are planned on the driver): lines cut anywhere, some
    # ranges holding no line start, a \r\n split between two ranges.
    monkeypatch.setattr(byteranges, "RANGE_BYTES", 16)
    got, got_dir = _ingest(spark, data, tmp_path / "arrow", "auto")

    for report in (want, got):
        for key in ("started", "finished", "output_dir"):
            report.pop(key)
    assert got == want
    entry = got["files"]["ratings.csv"]
    assert (entry["rows_read"], entry["accepted"], entry["duplicates"]) == (
        21,
        7,
        3,
    )  # accepted = pairs written
    assert entry["latin1_fallback"] == 1
    for sub in ("user_index", "movie_index", "latin1_fallback", "movies"):
        pd.testing.assert_frame_equal(_frame(got_dir, sub), _frame(want_dir, sub))

    def ratings(target: str) -> pd.DataFrame:
        frame = read_ratings(spark, target).toPandas()
        return frame.sort_values(["user_idx", "movie_idx"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(ratings(got_dir), ratings(want_dir))
    kept = ratings(got_dir).set_index(["user_id", "movie_id"])["rating"]
    assert kept[(2, 10)] == 1.0  # the later line of two with the latest timestamp
    assert set(kept.index) == {(1, 10), (1, 20), (2, 10), (3, 10), (4, 10), (13, 30), (13, 10)}

    def quarantine(target: str) -> list[tuple]:
        rows = read_quarantine(spark, target).collect()
        return sorted((r.line_number, r.raw_line, r.reason) for r in rows)

    assert quarantine(got_dir) == quarantine(want_dir)
    assert [q[0] for q in quarantine(got_dir)] == [7, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]

    # Other lines too many to travel with the ranges' summaries: one pass over the cache.
    monkeypatch.setattr(ratings_tasks, "OTHERS_WITH_SUMMARY", 0)
    again, again_dir = _ingest(spark, data, tmp_path / "arrow_rdd", "auto")
    for key in ("started", "finished", "output_dir"):
        again.pop(key)
    assert again == want
    assert quarantine(again_dir) == quarantine(want_dir)
    pd.testing.assert_frame_equal(ratings(again_dir), ratings(want_dir))
