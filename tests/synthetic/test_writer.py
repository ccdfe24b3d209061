"""The generator job: MovieLens CSV layout, atomic publishing, same seed same bytes."""

from __future__ import annotations

import json

import pandas as pd

from recspark import cli
from recspark.synthetic import writer
from tests.synthetic.conftest import SMALL, read_ratings

CSV_FILES = ("ratings.csv", "movies.csv", "tags.csv", "links.csv", "genome-scores.csv", "genome-tags.csv")


def test_files_have_the_movielens_layout(small):
    out, cfg, summary = small
    assert summary.single_files
    heads = {name: (out / name).read_text(encoding="utf-8").split("\n", 1)[0] for name in CSV_FILES}
    assert heads == {
        "ratings.csv": "userId,movieId,rating,timestamp",
        "movies.csv": "movieId,title,genres",
        "tags.csv": "userId,movieId,tag,timestamp",
        "links.csv": "movieId,imdbId,tmdbId",
        "genome-scores.csv": "movieId,tagId,relevance",
        "genome-tags.csv": "tagId,tag",
    }
    for name in CSV_FILES:  # header once, nothing else left in the folder
        assert (out / name).read_text(encoding="utf-8").count(heads[name]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["_truth", *sorted(CSV_FILES)]
    assert sorted(p.name for p in (out / "_truth").iterdir() if not p.name.startswith(".")) == [
        "config.toml", "movies", "params.json", "users"]
    assert not list(out.parent.glob("*_staging-*"))
    params = json.loads((out / "_truth" / "params.json").read_text())
    assert (params["users"], params["movies"], params["ratings"], params["seed"]) == (300, 200, 12_000, 42)


def test_write_csv_off_the_local_file_system_keeps_part_folders(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "_local_path", lambda _spark, _path: None)
    df = spark.createDataFrame([(1, 'a, "b"'), (2, "c")], "movie_id long, title string").repartition(2)
    writer.write_csv(spark, df, folder=str(tmp_path), name="movies.csv", header=["movieId", "title"])
    assert (tmp_path / "movies.csv").is_dir()
    back = spark.read.csv(str(tmp_path / "movies.csv"), header=True, escape='"')
    assert back.columns == ["movieId", "title"]
    assert sorted(tuple(row) for row in back.collect()) == [("1", 'a, "b"'), ("2", "c")]


def test_concat_parts_writes_the_header_once_then_parts_in_order(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "part-00001.csv").write_text("3,c\n")
    (parts / "part-00000.csv").write_text("1,a\n2,b\n")
    (parts / "_SUCCESS").write_text("")
    size = writer.concat_parts(parts, tmp_path / "x.csv", ["id", "name"])
    assert (tmp_path / "x.csv").read_text() == "id,name\n1,a\n2,b\n3,c\n"
    assert size == len("id,name\n1,a\n2,b\n3,c\n")


def test_script_same_seed_identical_other_seed_differs(small, tmp_path, run_job_script):
    out, cfg, _ = small
    args = [a for s in SMALL for a in ("--set", s)]
    again = tmp_path / "again"
    assert run_job_script("generate_synthetic", args + ["--set", f"generate.output_dir={again}"],
                          folder="scripts") == 0
    for name in CSV_FILES:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(again / "_truth" / "users"),
                                  pd.read_parquet(out / "_truth" / "users"))

    other = tmp_path / "other"
    assert run_job_script("generate_synthetic",
                          args + ["--set", "seed=7", "--set", f"generate.output_dir={other}"],
                          folder="scripts") == 0
    a, b = read_ratings(out), read_ratings(other)
    assert len(b) == len(a) == 12_000
    assert not a.equals(b)
    assert (other / "movies.csv").read_bytes() != (out / "movies.csv").read_bytes()


def test_script_rejects_an_impossible_shape_before_spark_starts(tmp_path, run_job_script, monkeypatch):
    sessions = []
    monkeypatch.setattr(cli, "build_session", lambda cfg: sessions.append(cfg))
    args = [a for s in SMALL for a in ("--set", s)]
    bad = tmp_path / "bad"
    assert run_job_script("generate_synthetic",
                          args + ["--set", "generate.ratings=10", "--set", f"generate.output_dir={bad}"],
                          folder="scripts") == 2
    assert sessions == [] and not bad.exists()
