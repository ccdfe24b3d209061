"""Layouts: detection rules, and each layout's files validated as its entry says."""

from __future__ import annotations

from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from recspark.errors import ConfigError, DataNotFoundError, HeaderError
from recspark.io.layouts import (
    match_header,
    HALF_STARS,
    LAYOUTS,
    WHOLE_STARS,
    FileSpec,
    detect_layout,
    ratings_files,
)
from recspark.io.validate import (
    NO_GENRES,
    Reason,
    accepted,
    read_lines,
    validate_movies,
    validate_ratings,
    validate_tags,
)
from recspark.schema import (
    GENRES,
    LINE_NUMBER,
    MOVIE_ID,
    RATING,
    RATINGS_SCHEMA,
    REASON,
    TITLE,
    USER_ID,
)

NOW = 1_700_000_000  # "now" for the timestamp range check


def _collect(df: DataFrame) -> list:
    return sorted(df.collect(), key=lambda r: r[LINE_NUMBER])


def test_detection_rules_pick_one_layout_per_release() -> None:
    def detected(*names: str) -> list[str]:
        return [n for n, layout in LAYOUTS.items() if layout.matches(set(names))]

    assert detected("ratings.csv", "movies.csv", "tags.csv", "links.csv") == ["csv"]
    assert detected("ratings.dat", "movies.dat", "users.dat", "README") == ["ml-1m"]
    assert detected("ratings.dat", "movies.dat", "tags.dat") == ["ml-10m"]
    assert detected("u.data", "u.item", "u.genre") == ["ml-100k"]
    assert detected("movies.csv") == []
    assert ratings_files() == ("ratings.csv", "ratings.dat", "u.data")


def test_scales_and_headers_are_recorded_on_the_entries() -> None:
    assert (HALF_STARS.min, HALF_STARS.max, HALF_STARS.step) == (0.5, 5.0, 0.5)
    assert WHOLE_STARS.whole_stars and not HALF_STARS.whole_stars
    assert {n: layout.scale for n, layout in LAYOUTS.items()} == {
        "csv": HALF_STARS,
        "ml-10m": HALF_STARS,
        "ml-1m": WHOLE_STARS,
        "ml-100k": WHOLE_STARS,
    }
    assert LAYOUTS["csv"].ratings.header_line == "userId,movieId,rating,timestamp"
    assert LAYOUTS["ml-1m"].ratings.header_line is None
    with pytest.raises(ValueError, match="encoding"):
        FileSpec("x.dat", "::", encoding="cp1252")


def test_ml1m_layout_dat_whole_stars_latin1(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::3.5::978302109\n2::3408::6::978300275\n"
    )
    (tmp_path / "movies.dat").write_bytes(
        "1193::Amélie (2001)::Comedy|Romance\n661::Bad\n".encode("latin-1")
    )
    (tmp_path / "users.dat").write_text("1::F::1::10::48067\n")
    layout = detect_layout(spark, str(tmp_path))
    assert layout.name == "ml-1m"
    ratings = _collect(
        validate_ratings(read_lines(spark, str(tmp_path / "ratings.dat")), layout=layout, now=NOW)
    )
    assert [r[REASON] for r in ratings] == [
        None,
        Reason.RATING_OFF_WHOLE_STARS,
        Reason.RATING_OUT_OF_SCALE,
    ]
    assert (ratings[0][USER_ID], ratings[0][MOVIE_ID], ratings[0][RATING]) == (1, 1193, 5.0)
    lines = read_lines(spark, str(tmp_path / "movies.dat"), encoding=layout.movies.encoding)
    movies = _collect(validate_movies(lines, layout=layout))
    assert [(r[MOVIE_ID], r[TITLE], r[GENRES], r[REASON]) for r in movies] == [
        (1193, "Amélie (2001)", "Comedy|Romance", None),
        (661, "Bad", None, Reason.FIELD_COUNT),
    ]


def test_ml10m_layout_dat_half_stars_and_tags(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::122::3.5::838985046\n1::185::5::838983525\n")
    (tmp_path / "tags.dat").write_text("15::4973::excellent!::1215184630\n15::4973::1215184630\n")
    layout = detect_layout(spark, str(tmp_path))
    assert layout.name == "ml-10m"
    ratings = validate_ratings(
        read_lines(spark, str(tmp_path / "ratings.dat")), layout=layout, now=NOW
    )
    expected = spark.createDataFrame(
        [(1, 122, 3.5, 838985046), (1, 185, 5.0, 838983525)], RATINGS_SCHEMA
    )
    actual = accepted(ratings, RATINGS_SCHEMA).select(*RATINGS_SCHEMA.fieldNames())
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)
    tags = _collect(
        validate_tags(read_lines(spark, str(tmp_path / "tags.dat")), layout=layout, now=NOW)
    )
    # Typed columns of a bad row hold whatever parsed; only the reason matters.
    assert [(r["tag"], r[REASON]) for r in tags] == [
        ("excellent!", None),
        ("1215184630", Reason.FIELD_COUNT),
    ]


def test_ml100k_layout_tab_and_pipe_genre_flags(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text(
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1.5\t878887116\n"
    )
    flags_toy = "0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0"
    flags_none = "|".join(["0"] * 19)
    u_item = (
        f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy|{flags_toy}\n"
        f"2|Café Society (1995)|01-Jan-1995||http://x|{flags_none}\n"
        f"3|Broken (1995)|01-Jan-1995||http://x|{flags_none[:-1]}2\n"
    )
    (tmp_path / "u.item").write_bytes(u_item.encode("latin-1"))
    layout = detect_layout(spark, str(tmp_path))
    assert layout.name == "ml-100k"
    ratings = _collect(
        validate_ratings(read_lines(spark, str(tmp_path / "u.data")), layout=layout, now=NOW)
    )
    assert [(r[USER_ID], r[MOVIE_ID], r[RATING], r[REASON]) for r in ratings] == [
        (196, 242, 3.0, None),
        (186, 302, 3.0, None),
        (22, 377, 1.5, Reason.RATING_OFF_WHOLE_STARS),
    ]
    lines = read_lines(spark, str(tmp_path / "u.item"), encoding=layout.movies.encoding)
    movies = _collect(validate_movies(lines, layout=layout))
    assert [(r[TITLE], r[GENRES], r[REASON]) for r in movies] == [
        ("Toy Story (1995)", "Animation|Children's|Comedy", None),
        ("Café Society (1995)", NO_GENRES, None),
        ("Broken (1995)", NO_GENRES, Reason.GENRE_FLAGS),
    ]


def test_detect_layout_errors(spark: SparkSession, tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataNotFoundError, match="no MovieLens ratings file"):
        detect_layout(spark, str(tmp_path))
    with pytest.raises(ConfigError, match="data.layout"):
        detect_layout(spark, str(tmp_path), "ml-7m")
    with pytest.raises(DataNotFoundError, match="expects ratings.csv"):
        detect_layout(spark, str(tmp_path), "csv")


def test_headers_are_matched_by_name() -> None:
    spec = LAYOUTS["csv"].ratings
    assert match_header(spec, "userId,movieId,rating,timestamp", "r.csv") == spec.header
    # another order, a byte-order mark, spaces and quotes: mapped by name
    assert match_header(spec, '\ufeff movieId, "userId",rating,timestamp\r', "r.csv") == (
        "movieId",
        "userId",
        "rating",
        "timestamp",
    )
    assert match_header(LAYOUTS["ml-1m"].ratings, "1::2::5::978300760", "ratings.dat") is None


@pytest.mark.parametrize(
    "line, hint",
    [
        ("1,10,4.0,1000", "the header is missing"),
        ("userId;movieId;rating;timestamp", "another separator"),
        ("user,movie,rating,timestamp", "a column is missing, renamed or extra"),
        ("userId,movieId,rating", "a column is missing, renamed or extra"),
        (None, "the file is empty"),
    ],
)
def test_a_bad_header_names_file_expected_found_and_cause(line, hint) -> None:
    with pytest.raises(HeaderError) as err:
        match_header(LAYOUTS["csv"].ratings, line, "/data/ratings.csv")
    message = str(err.value)
    assert "/data/ratings.csv" in message and hint in message
    assert "expected 'userId,movieId,rating,timestamp'" in message
    assert f"found {(line or '')!r}" in message
