"""Raw-file validation: exact line numbers, quarantine reasons, dedupe, the side tables."""

from __future__ import annotations

from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.io.layouts import LAYOUTS
from recspark.io.validate import (
    Reason,
    accepted,
    dedupe_ratings,
    quarantined,
    read_lines,
    validate_links,
    validate_movies,
    validate_ratings,
    validate_tags,
)
from recspark.schema import (
    COPIES,
    LINE_NUMBER,
    LINKS_SCHEMA,
    MOVIE_ID,
    MOVIES_SCHEMA,
    RATING,
    RATINGS_SCHEMA,
    RAW_LINE,
    REASON,
    SOURCE_FILE,
    TAGS_SCHEMA,
    TIMESTAMP,
    USER_ID,
)

NOW = 1_700_000_000  # "now" for the timestamp range check
CSV = LAYOUTS["csv"]
LINES_SCHEMA = T.StructType(
    [
        T.StructField(SOURCE_FILE, T.StringType()),
        T.StructField(LINE_NUMBER, T.LongType()),
        T.StructField(RAW_LINE, T.StringType()),
    ]
)


def _lines(spark: SparkSession, raw: list[str], source: str = "f") -> DataFrame:
    return spark.createDataFrame([(source, i + 1, r) for i, r in enumerate(raw)], LINES_SCHEMA)


def _by_line(df: DataFrame) -> dict[int, str | None]:
    return {r[LINE_NUMBER]: r[REASON] for r in df.select(LINE_NUMBER, REASON).collect()}


# --------------------------------------------------------------------------- line numbers


def test_read_lines_exact_across_many_splits(spark: SparkSession, tmp_path: Path) -> None:
    # Lines of varying length, blank lines and CRLF endings, split into many partitions.
    first = [f"{i},{i * 7919 % 100003},{'x' * (i % 23)}" if i % 41 else "" for i in range(1, 401)]
    second = [f"second {i}" for i in range(1, 301)]
    (tmp_path / "a.txt").write_text("\n".join(first) + "\n")
    (tmp_path / "b.txt").write_bytes(("\r\n".join(second) + "\r\n").encode())
    old = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2000")
    try:
        paths = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
        assert spark.read.text(paths).rdd.getNumPartitions() >= 5  # really split
        rows = read_lines(spark, paths).collect()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
    got: dict[str, dict[int, str]] = {}
    for r in rows:
        got.setdefault(Path(r[SOURCE_FILE]).name, {})[r[LINE_NUMBER]] = r[RAW_LINE]
    assert got["a.txt"] == {i + 1: line for i, line in enumerate(first)}
    assert got["b.txt"] == {i + 1: line for i, line in enumerate(second)}  # no stray \r


def test_read_lines_decodes_latin1(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "m.dat"
    path.write_bytes("1::Amélie (2001)::Comedy\n2::Café::Drama\n".encode("latin-1"))
    utf8 = tmp_path / "u.dat"
    utf8.write_bytes(
        "1::Amélie (2001)::Comedy\n".encode("utf-8") + "2::Café::Drama\n".encode("latin-1")
    )
    as_latin1 = [
        r[RAW_LINE]
        for r in read_lines(spark, str(path), encoding="latin-1").orderBy(LINE_NUMBER).collect()
    ]
    # utf-8 keeps valid UTF-8 lines and falls back to latin-1 line by line.
    mixed = [r[RAW_LINE] for r in read_lines(spark, str(utf8)).orderBy(LINE_NUMBER).collect()]
    assert as_latin1 == ["1::Amélie (2001)::Comedy", "2::Café::Drama"]
    assert mixed == ["1::Amélie (2001)::Comedy", "2::Café::Drama"]


# --------------------------------------------------------------------------- ratings validation


def test_validate_ratings_inline(spark: SparkSession) -> None:
    lines = _lines(
        spark,
        ["userId,movieId,rating,timestamp", "1,2,3.5,100", "1,2,3.25,100", " 7 , 8 ,5, 9 ", ""],
    )
    actual = validate_ratings(lines, layout=CSV, now=NOW).drop(SOURCE_FILE)
    expected = spark.createDataFrame(
        [
            (2, "1,2,3.5,100", 1, 2, 3.5, 100, None),
            (3, "1,2,3.25,100", 1, 2, 3.25, 100, Reason.RATING_OFF_HALF_STARS),
            (4, " 7 , 8 ,5, 9 ", 7, 8, 5.0, 9, None),  # fields are trimmed
            (5, "", None, None, None, None, Reason.BLANK_LINE),
        ],
        "line_number long, raw_line string, user_id long, movie_id long, rating double, "
        "timestamp long, reason string",
    )
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)


MALFORMED = {  # line number -> (raw line, expected reason); line 1 is the header
    4: ("", Reason.BLANK_LINE),
    5: ("1,30,4.0", Reason.FIELD_COUNT),
    6: ("1,,4.0,1000000002", Reason.EMPTY_FIELD),
    7: ("abc,30,4.0,1000000003", Reason.USER_NOT_NUMERIC),
    8: ("0,30,4.0,1000000004", Reason.USER_NOT_POSITIVE),
    9: ("2,x7,4.0,1000000005", Reason.MOVIE_NOT_NUMERIC),
    10: ("2,-3,4.0,1000000006", Reason.MOVIE_NOT_POSITIVE),
    11: ("2,30,good,1000000007", Reason.RATING_NOT_NUMERIC),
    12: ("2,30,5.5,1000000008", Reason.RATING_OUT_OF_SCALE),
    13: ("2,30,3.7,1000000009", Reason.RATING_OFF_HALF_STARS),
    14: ("2,30,4.0,1e9", Reason.TIMESTAMP_NOT_INTEGER),
    15: ("2,30,4.0,-5", Reason.TIMESTAMP_OUT_OF_RANGE),
    16: ("2,30,4.0,99999999999", Reason.TIMESTAMP_OUT_OF_RANGE),  # in the future
    17: ("userId,movieId,rating,timestamp", Reason.REPEATED_HEADER),
    23: ("2,30,NaN,1000000001", Reason.RATING_NOT_NUMERIC),
    24: ("2,30,4.0,1000000001,extra", Reason.FIELD_COUNT),
    25: ("2,30,0,1000000001", Reason.RATING_OUT_OF_SCALE),
}
GOOD = {
    2: "1,10,4.0,1000000000",
    3: "1,20,3.5,1000000001",
    18: "3,10,2.0,1000000010",
    19: "3,10,4.5,1000000020",  # latest of the (3, 10) duplicates
    20: "3,10,1.0,1000000015",
    21: "4,10,2.0,1000000030",
    22: "4,10,3.0,1000000030",  # same timestamp as line 21: the later line wins
}


def _write_ratings(path: Path) -> None:
    lines = {
        1: "userId,movieId,rating,timestamp",
        **GOOD,
        **{k: v for k, (v, _) in MALFORMED.items()},
    }
    assert sorted(lines) == list(range(1, len(lines) + 1))
    path.write_text("\n".join(lines[i] for i in sorted(lines)) + "\n")


def test_malformed_ratings_file_quarantine_dedupe_and_counts(
    spark: SparkSession, tmp_path: Path
) -> None:
    path = tmp_path / "ratings.csv"
    _write_ratings(path)
    validated = validate_ratings(read_lines(spark, str(path)), layout=CSV, now=NOW).cache()
    bad = quarantined(validated).collect()
    assert {r[LINE_NUMBER]: (r[RAW_LINE], r[REASON]) for r in bad} == MALFORMED
    assert {Path(r[SOURCE_FILE]).name for r in bad} == {"ratings.csv"}
    assert len({reason for _, reason in MALFORMED.values()}) >= 8

    kept = dedupe_ratings(accepted(validated, RATINGS_SCHEMA))
    rows = {(r[USER_ID], r[MOVIE_ID]): (r[RATING], r[TIMESTAMP], r[COPIES]) for r in kept.collect()}
    assert rows == {
        (1, 10): (4.0, 1000000000, 1),
        (1, 20): (3.5, 1000000001, 1),
        (3, 10): (4.5, 1000000020, 3),
        (4, 10): (3.0, 1000000030, 2),
    }
    read = validated.count()  # header excluded
    duplicates = sum(c - 1 for *_, c in rows.values())
    assert read == len(GOOD) + len(MALFORMED) == 24
    assert read == len(rows) + len(bad) + duplicates
    validated.unpersist()


def test_bad_header_is_quarantined_at_line_1(spark: SparkSession) -> None:
    lines = _lines(spark, ["user,movie,rating,ts", "1,2,4.0,10"])
    assert _by_line(validate_ratings(lines, layout=CSV, now=NOW)) == {1: Reason.BAD_HEADER, 2: None}
    # A byte-order mark before a correct header is tolerated.
    bom = _lines(spark, ["\ufeffuserId,movieId,rating,timestamp", "1,2,4.0,10"])
    assert _by_line(validate_ratings(bom, layout=CSV, now=NOW)) == {2: None}


def test_dedupe_inline(spark: SparkSession) -> None:
    ratings = spark.createDataFrame(
        [
            (1, 5, 2.0, 10, "f", 2),
            (1, 5, 4.0, 30, "f", 3),
            (1, 5, 3.0, 30, "f", 4),
            (2, 5, 1.0, 1, "f", 5),
        ],
        "user_id long, movie_id long, rating double, timestamp long, "
        "source_file string, line_number long",
    )
    expected = spark.createDataFrame(
        [(1, 5, 3.0, 30, 3), (2, 5, 1.0, 1, 1)],
        "user_id long, movie_id long, rating double, timestamp long, copies long",
    )
    assert_df_equality(
        dedupe_ratings(ratings), expected, ignore_nullable=True, ignore_row_order=True
    )


# --------------------------------------------------------------------------- movies, tags, links


def test_movies_csv_quotes_and_malformed_rows(spark: SparkSession) -> None:
    lines = _lines(
        spark,
        [
            "movieId,title,genres",
            '11,"American President, The (1995)",Comedy|Drama|Romance',
            '7789,"11\'09""01 - September 11 (2002)",Drama',
            "12,Plain (1990),(no genres listed)",
            '13,"Unterminated, (1990),Drama',
            "14,Too,Many,Fields",
            "x,Bad id (1990),Drama",
            "15,,Drama",
        ],
    )
    validated = validate_movies(lines, layout=CSV)
    assert _by_line(validated.filter(F.col(REASON).isNotNull())) == {
        5: Reason.UNBALANCED_QUOTES,
        6: Reason.FIELD_COUNT,
        7: Reason.MOVIE_NOT_NUMERIC,
        8: Reason.EMPTY_FIELD,
    }
    expected = spark.createDataFrame(
        [
            (11, "American President, The (1995)", "Comedy|Drama|Romance"),
            (7789, "11'09\"01 - September 11 (2002)", "Drama"),
            (12, "Plain (1990)", "(no genres listed)"),
        ],
        MOVIES_SCHEMA,
    )
    actual = accepted(validated, MOVIES_SCHEMA).select(*MOVIES_SCHEMA.fieldNames())
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)


def test_tags_and_links_csv(spark: SparkSession) -> None:
    tags = _lines(
        spark,
        [
            "userId,movieId,tag,timestamp",
            '2,60756,"funny, very",1445714994',
            '567,4552,"""artsy""",1525285878',
            "2,60756,,1",
        ],
    )
    vt = validate_tags(tags, layout=CSV, now=NOW)
    assert _by_line(vt) == {2: None, 3: None, 4: Reason.EMPTY_FIELD}
    assert sorted(r["tag"] for r in accepted(vt, TAGS_SCHEMA).collect()) == [
        '"artsy"',
        "funny, very",
    ]

    links = _lines(
        spark, ["movieId,imdbId,tmdbId", "1,0114709,862", "791,0113610,", "5,tt1,3", "6,0000001,x"]
    )
    vl = validate_links(links, layout=CSV)
    assert _by_line(vl) == {
        2: None,
        3: None,
        4: Reason.IMDB_NOT_NUMERIC,
        5: Reason.TMDB_NOT_NUMERIC,
    }
    expected = spark.createDataFrame([(1, "0114709", 862), (791, "0113610", None)], LINKS_SCHEMA)
    actual = accepted(vl, LINKS_SCHEMA).select(*LINKS_SCHEMA.fieldNames())
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)


# ------------------------------------------------------------- issue 11: one reason per kind


def test_each_kind_of_bad_ratings_line_has_its_own_reason(spark: SparkSession) -> None:
    ms = 1_112_486_027_000  # 2005-04-03 in epoch milliseconds
    lines = _lines(
        spark,
        [
            "userId,movieId,rating,timestamp",
            '1,"2,3.5,1112486027',  # a quote opened and never closed
            "1.5,2,3.5,1112486027",  # numeric, but not an integer
            "u1,2,3.5,1112486027",
            "1,2.0,3.5,1112486027",
            "1;2;3.5;1112486027",  # a spreadsheet export
            f"1,2,3.5,{ms}",
            "1,2,3.5,2005-04-03",
            "1,2,3.5,1112486027.5",
            "1,2,3.5,1112486027",
        ],
    )
    assert _by_line(validate_ratings(lines, layout=CSV, now=NOW)) == {
        2: Reason.UNBALANCED_QUOTES,
        3: Reason.USER_NOT_INTEGER,
        4: Reason.USER_NOT_NUMERIC,
        5: Reason.MOVIE_NOT_INTEGER,
        6: Reason.WRONG_SEPARATOR,
        7: Reason.TIMESTAMP_MILLISECONDS,
        8: Reason.TIMESTAMP_NOT_NUMERIC,
        9: Reason.TIMESTAMP_NOT_INTEGER,
        10: None,
    }


def test_well_formed_lines_skip_the_field_regexes_without_changing_a_result(
    spark: SparkSession, monkeypatch
) -> None:
    """The one-regex fast path of well-formed lines gives every line the values and reason
    the full checks give (every line through the full checks: _well_formed forced false)."""
    import recspark.io.validate as validate

    raw = [
        "userId,movieId,rating,timestamp",
        "1,2,3.5,1112486027",
        " 1 , 2 , 3.5 , 1112486027 ",  # spaces around fields are trimmed
        "+1,2,.5,0",
        "1,-2,5.,1112486027",
        "0,2,3.5,1112486027",
        "1,2,7,1112486027",
        "1,2,3.25,1112486027",
        "1,2,3.5,1112486027000",
        "1,2,3.5,99999999999",
        "99999999999999999999,2,3.5,1",  # overflows a long
        "1,2,NaN,1",
        "1,2,1e0,1",
        "1,2,3.5d,1",
        "1\t,2,3.5,1",
        "1,2,3.5",
        "1,2,3.5,1,9",
        "1,,3.5,1",
        "",
        "userId,movieId,rating,timestamp",
        "1::2::3.5::1",
    ]
    columns = ("userId", "movieId", "rating", "timestamp")
    fast = validate_ratings(_lines(spark, raw), layout=CSV, now=NOW, columns=columns)
    monkeypatch.setattr(validate, "_well_formed", lambda *args: F.lit(False))
    full = validate_ratings(_lines(spark, raw), layout=CSV, now=NOW, columns=columns)
    assert_df_equality(fast, full, ignore_row_order=True, allow_nan_equality=True)
    reasons = _by_line(fast)
    assert reasons[2] is None and reasons[3] is None and reasons[4] is None
    assert reasons[6] == Reason.USER_NOT_POSITIVE and reasons[12] == Reason.RATING_NOT_NUMERIC


def test_a_header_in_another_order_maps_columns_by_name(spark: SparkSession) -> None:
    lines = _lines(spark, ["movieId,userId,rating,timestamp", "10,1,4.0,100", "20,2,3.5,101"])
    columns = ("movieId", "userId", "rating", "timestamp")
    validated = validate_ratings(lines, layout=CSV, now=NOW, columns=columns)
    rows = sorted((r[USER_ID], r[MOVIE_ID], r[RATING], r[REASON]) for r in validated.collect())
    assert rows == [(1, 10, 4.0, None), (2, 20, 3.5, None)]  # header dropped, ids not swapped


def test_quoted_files_report_quotes_and_separators(spark: SparkSession) -> None:
    lines = _lines(
        spark,
        ["title,genres,movieId", "Heat (1995),Action,6", "Fargo (1996);Drama;7", '"Open,Drama,8'],
    )
    validated = validate_movies(lines, layout=CSV, columns=("title", "genres", "movieId"))
    assert _by_line(validated) == {2: None, 3: Reason.WRONG_SEPARATOR, 4: Reason.UNBALANCED_QUOTES}
    assert [(r[MOVIE_ID], r["title"]) for r in accepted(validated, MOVIES_SCHEMA).collect()] == [
        (6, "Heat (1995)")
    ]


def test_latin1_fallback_is_flagged_on_its_lines(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "movies.csv"
    path.write_bytes(
        b"movieId,title,genres\n1,Am\xc3\xa9lie (2001),Comedy\n2,Caf\xe9 (1990),Drama\n"
    )
    rows = read_lines(spark, str(path)).orderBy(LINE_NUMBER).collect()
    assert [(r[RAW_LINE], r["latin1_fallback"]) for r in rows] == [
        ("movieId,title,genres", False),
        ("1,Amélie (2001),Comedy", False),
        ("2,Café (1990),Drama", True),
    ]
    validated = validate_movies(read_lines(spark, str(path)), layout=CSV)
    assert {r[LINE_NUMBER]: r["latin1_fallback"] for r in validated.collect()} == {
        2: False,
        3: True,
    }
