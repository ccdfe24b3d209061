"""The ingest pipeline end to end: outputs, report, atomic replacement, quarantine threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from recspark.config import Config, load_config
from recspark.errors import DataQualityError
from recspark.io import layouts
from recspark.io.ingested import (
    failed_dir,
    read_links,
    read_movie_index,
    read_movies,
    read_quarantine,
    read_ratings,
    read_report,
    read_tags,
    read_user_index,
)
from recspark.io.layouts import FileSpec, Layout, RatingScale
from recspark.pipeline.ingest import run_ingest
from recspark.schema import (
    INGESTED_RATINGS_SCHEMA,
    LINE_NUMBER,
    MOVIE_ID,
    MOVIE_IDX,
    RATING,
    REASON,
    SOURCE_FILE,
    USER_BLOCK,
    USER_ID,
    USER_IDX,
)

NOW = 1_700_000_000
HEADER = "userId,movieId,rating,timestamp"


def _dataset(folder: Path, ratings: list[str], *, links: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_text("\n".join([HEADER, *ratings]) + "\n")
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        '10,"Movie, The (1999)",Drama\n20,Other (2001),Comedy\n30,Third,Drama\n'
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,10,good,1000\n")
    if links:
        (folder / "links.csv").write_text("movieId,imdbId,tmdbId\n10,0114709,862\n20,0113497,\n")
    return folder


def _table(target: str, sub: str) -> list[dict]:
    return pq.read_table(Path(target, sub)).to_pylist()


def _config(data_dir: Path, out: Path, *extra: str) -> Config:
    return load_config(
        overrides=[
            "data.dataset=tiny",
            f"data.dir={data_dir}",
            f"ingest.output_dir={out}/{{dataset}}",
            "ingest.user_blocks=2",
            *extra,
        ]
    )


def test_ingest_tiny_end_to_end(spark: SparkSession, tmp_path: Path) -> None:
    data = _dataset(
        tmp_path / "raw",
        [
            "1,10,4.0,1000",
            "1,20,3.0,1001",
            "2,10,5.0,1002",
            "2,10,2.0,1003",  # duplicate of the previous pair, later: kept
            "7,30,4.5,1004",
            "3,10,9.0,1005",  # outside the scale: quarantined (line 7)
        ],
        links=False,  # a missing side file gives an empty table
    )
    cfg = _config(data, tmp_path / "out", "ingest.max_quarantine_share=0.5")
    report = run_ingest(spark, cfg, now=NOW)
    target = cfg.ingest_dir()

    entry = report["files"]["ratings.csv"]
    assert (entry["rows_read"], entry["accepted"], entry["quarantined"], entry["duplicates"]) == (
        6,
        4,
        1,
        1,
    )
    assert entry["reasons"] == {"rating outside the scale": 1}
    assert read_report(spark, target) == report
    assert report["index"] == {"users": 3, "movies": 3, "user_blocks": 2}

    ratings = read_ratings(spark, target)
    assert ratings.schema.fieldNames() == INGESTED_RATINGS_SCHEMA.fieldNames()
    got = {
        (r[USER_ID], r[MOVIE_ID]): (r[RATING], r[USER_IDX], r[MOVIE_IDX], r[USER_BLOCK])
        for r in ratings.collect()
    }
    assert got == {
        (1, 10): (4.0, 0, 0, 0),
        (1, 20): (3.0, 0, 1, 0),
        (2, 10): (2.0, 1, 0, 1),
        (7, 30): (4.5, 2, 2, 0),
    }
    assert sorted(p.name for p in Path(target, "ratings").glob("user_block=*")) == [
        "user_block=0",
        "user_block=1",
    ]
    assert [(r[LINE_NUMBER], r[REASON]) for r in read_quarantine(spark, target).collect()] == [
        (7, "rating outside the scale")
    ]
    # Side tables and statistics, read with pyarrow (no Spark job needed for these checks).
    assert sorted((u["user_id"], u["user_idx"]) for u in _table(target, "user_index")) == [
        (1, 0),
        (2, 1),
        (7, 2),
    ]
    assert sorted(m["title"] for m in _table(target, "movies")) == [
        "Movie, The (1999)",
        "Other (2001)",
        "Third",
    ]
    assert [t["tag"] for t in _table(target, "tags")] == ["good"]
    summary = {r["metric"]: r["value"] for r in _table(target, "stats/summary")}
    assert (summary["ratings"], summary["users"], summary["movies"]) == (4, 3, 3)
    for name in ("plots/rating_histogram.png", "plots/rank_frequency.png", "config.toml"):
        assert Path(target, name).is_file()

    assert set(report["files"]) == {"ratings.csv", "movies.csv", "tags.csv"}
    assert _table(target, "links") == []
    assert sorted(p.name for p in Path(target).parent.iterdir()) == ["tiny"]  # no staging left


def test_quarantine_holds_a_side_files_bad_rows_when_the_ratings_are_clean(
    spark: SparkSession, tmp_path: Path
) -> None:
    # the quarantine is written from the files that have quarantined rows: tags.csv alone
    data = _dataset(tmp_path / "raw", ["1,10,4.0,1000", "2,20,3.0,1001"])
    (data / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,10,good,1000\n1,x,bad,1001\n")
    cfg = _config(data, tmp_path / "out")
    report = run_ingest(spark, cfg, now=NOW)
    assert [report["files"][f]["quarantined"] for f in ("ratings.csv", "tags.csv")] == [0, 1]
    rows = read_quarantine(spark, cfg.ingest_dir()).collect()
    assert [(r[SOURCE_FILE].rsplit("/", 1)[-1], r[LINE_NUMBER], r[REASON]) for r in rows] == [
        ("tags.csv", 3, "non-numeric movie id")
    ]


def test_quarantine_threshold_fails_and_keeps_quarantine(
    spark: SparkSession, tmp_path: Path
) -> None:
    data = _dataset(
        tmp_path / "raw", ["1,10,4.0,1000", "1,20,x,1001", "2,10,7,1002", "3,10,4.0,1003"]
    )
    cfg = _config(data, tmp_path / "out", "ingest.max_quarantine_share=0.25")
    target = Path(cfg.ingest_dir())
    target.mkdir(parents=True)
    (target / "previous-output").write_text("an earlier, complete ingest")

    with pytest.raises(DataQualityError) as err:
        run_ingest(spark, cfg, now=NOW)
    message = str(err.value)
    assert "2 of 4 ratings rows" in message and "50.00%" in message
    assert "ingest.max_quarantine_share = 0.25" in message
    assert failed_dir(str(target)) in message and "--set ingest.max_quarantine_share=" in message

    # The previous output is untouched; the quarantine is kept for inspection.
    assert sorted(p.name for p in target.iterdir()) == ["previous-output"]
    quarantine = spark.read.parquet(f"{failed_dir(str(target))}/quarantine")
    assert sorted((r[LINE_NUMBER], r[REASON]) for r in quarantine.collect()) == [
        (3, "non-numeric rating"),
        (4, "rating outside the scale"),
    ]
    rejected = json.loads(Path(failed_dir(str(target)), "report.json").read_text())
    assert rejected["status"] == "rejected"
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny", "tiny.failed"]


def test_a_new_layout_is_one_entry(spark: SparkSession, tmp_path: Path, monkeypatch) -> None:
    # A made-up release: pipe-separated ratings on a 1-10 whole-star scale with its own
    # header, tab-separated movies, no tags or links.
    fake = Layout(
        "fake-10",
        requires=("scores.psv",),
        ratings=FileSpec("scores.psv", "|", header=("uid", "mid", "stars", "when")),
        scale=RatingScale(1.0, 10.0, 1.0),
        movies=FileSpec("films.tsv", "\t"),
    )
    monkeypatch.setitem(layouts.LAYOUTS, fake.name, fake)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "scores.psv").write_text(
        "uid|mid|stars|when\n5|1|7|1000\n5|2|10|1001\n6|1|2.5|1002\n6|2|11|1003\n8|2|1|1004\n"
    )
    (raw / "films.tsv").write_text("1\tFirst (1990)\tDrama\n2\tSecond (1991)\tComedy|Drama\n")
    cfg = _config(raw, tmp_path / "out", "ingest.max_quarantine_share=0.5")
    report = run_ingest(spark, cfg, now=NOW)
    target = cfg.ingest_dir()

    assert report["layout"] == "fake-10"
    assert set(report["files"]) == {"scores.psv", "films.tsv"}
    assert report["files"]["scores.psv"]["reasons"] == {
        "rating off the integer grid": 1,
        "rating outside the scale": 1,
    }
    got = sorted(
        (r[USER_ID], r[MOVIE_ID], r[RATING]) for r in read_ratings(spark, target).collect()
    )
    assert got == [(5, 1, 7.0), (5, 2, 10.0), (8, 2, 1.0)]
    assert sorted((m["movie_id"], m["genres"]) for m in _table(target, "movies")) == [
        (1, "Drama"),
        (2, "Comedy|Drama"),
    ]
    assert _table(target, "tags") == [] and _table(target, "links") == []
    assert report["stats"]["rating_histogram"] == {"1": 1, "7": 1, "10": 1}


@pytest.mark.slow
def test_ingest_ml_latest_small_replaces_previous_output(
    spark: SparkSession, sample_dir: Path, tmp_path: Path
) -> None:
    cfg = load_config(
        overrides=[f"data.dir={sample_dir}", f"ingest.output_dir={tmp_path}/{{dataset}}"]
    )
    target = Path(cfg.ingest_dir())
    (target / "ratings").mkdir(parents=True)  # an earlier output: replaced as a whole
    (target / "ratings" / "stale.parquet").write_text("from an earlier run")
    (target / "stale-report.json").write_text("{}")

    report = run_ingest(spark, cfg)
    files = report["files"]
    assert files["ratings.csv"]["accepted"] == 100_836
    assert sum(f["quarantined"] for f in files.values()) == 0
    assert files["ratings.csv"]["duplicates"] == 0
    assert report["index"]["users"] == 610 and report["index"]["movies"] == 9_724
    assert files["movies.csv"]["accepted"] == 9_742
    assert files["tags.csv"]["accepted"] == 3_683
    assert files["links.csv"]["accepted"] == 9_742
    assert (report["stats"]["first_date"], report["stats"]["last_date"]) == (
        "1996-03-29",
        "2018-09-24",
    )

    assert not (target / "stale-report.json").exists()
    assert not (target / "ratings" / "stale.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ml-latest-small"
    ]  # no staging or old copy
    ratings = read_ratings(spark, str(target))
    assert ratings.count() == 100_836
    assert ratings.select(USER_IDX).distinct().count() == 610
    assert ratings.agg({MOVIE_IDX: "max"}).first()[0] == 9_723
    assert read_user_index(spark, str(target)).count() == 610
    assert read_movie_index(spark, str(target)).count() == 9_724
    assert read_movies(spark, str(target)).count() == 9_742
    assert read_tags(spark, str(target)).count() == 3_683
    assert read_links(spark, str(target)).count() == 9_742
    assert read_quarantine(spark, str(target)).count() == 0


# --------------------------------------------------------------------------- issue 11


def test_header_order_and_decoding_fallback(spark: SparkSession, tmp_path: Path) -> None:
    # The columns of ratings.csv in another order: mapped by name, never transposed
    # (20 users rating some of 6 movies stay 20 users, 6 movies). A movies.csv title whose
    # bytes are not UTF-8: decoded as latin-1, counted per file and listed, never silent.
    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [
        f"{m},{u},{1 + (u + m) % 5}.0,{1000 + u}"
        for u in range(1, 21)
        for m in (10, 20, 30, 40, 50, 60)
        if (u + m // 10) % 3
    ]
    (raw / "ratings.csv").write_text("\n".join(["movieId,userId,rating,timestamp", *rows]) + "\n")
    (raw / "movies.csv").write_bytes(
        b"movieId,title,genres\n10,Am\xc3\xa9lie (2001),Comedy\n20,Caf\xe9 (1990),Drama\n"
    )
    cfg = _config(raw, tmp_path / "out")
    report = run_ingest(spark, cfg, now=NOW)
    target = cfg.ingest_dir()
    assert (report["index"]["users"], report["index"]["movies"]) == (20, 6)
    assert report["files"]["ratings.csv"]["quarantined"] == 0
    assert report["files"]["ratings.csv"]["accepted"] == len(rows)
    got = {(r[USER_ID], r[MOVIE_ID]) for r in read_ratings(spark, target).collect()}
    assert (1, 10) in got and max(u for u, _ in got) == 20
    movies = report["files"]["movies.csv"]
    assert (movies["latin1_fallback"], movies["latin1_fallback_lines"]) == (1, [3])
    assert report["files"]["ratings.csv"]["latin1_fallback"] == 0
    assert [(r["line_number"], r["raw_line"]) for r in _table(target, "latin1_fallback")] == [
        (3, "20,Café (1990),Drama")
    ]
    assert report["scale"] == {"min": 0.5, "max": 5.0, "step": 0.5}


def test_a_bad_header_exits_2_naming_file_and_headers(
    tmp_path: Path, run_job_script, caplog
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "ratings.csv").write_text("user,movie,rating,ts\n1,10,4.0,1000\n")
    argv = ["--set", f"data.dir={raw}", "--set", f"ingest.output_dir={tmp_path}/out"]
    assert run_job_script("ingest", argv) == 2
    assert "ratings.csv: bad header: expected 'userId,movieId,rating,timestamp'" in caplog.text
    assert "found 'user,movie,rating,ts'" in caplog.text
    assert not (tmp_path / "out").exists()
