"""MovieLens readers: layouts, line-numbered text, validation with a quarantine, read-back.

Raw files are read as text lines (``spark.read.text``) so every malformed row keeps its raw
line and exact 1-based line number (:func:`read_lines`). The ``validate_*`` stages parse the
lines with Spark SQL expressions (no Python per row) and add a ``reason`` column that is
null for good rows and names the first problem otherwise; :func:`accepted` and
:func:`quarantined` split the result. :func:`dedupe_ratings` collapses repeated
(user, movie) pairs. The ``read_*`` functions read the outputs of the ingest job back.

Supported layouts (:data:`LAYOUTS`, detected by :func:`detect_layout`):

- ``csv``: ml-latest-small, ml-25m, ml-32m. ratings.csv, movies.csv, tags.csv, links.csv;
  ``,``-separated, one header row, UTF-8, quoted titles; half stars 0.5-5.
- ``ml-10m``: ratings.dat, movies.dat, tags.dat; ``::``-separated, no header; half stars.
- ``ml-1m``: ratings.dat, movies.dat (latin-1), users.dat; ``::``; whole stars 1-5.
- ``ml-100k``: u.data (tab-separated), u.item (``|``-separated, latin-1, genre flags);
  whole stars 1-5.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Sequence

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.errors import ConfigError, DataNotFoundError
from recspark.io import storage
from recspark.schema import (
    COPIES,
    GENRES,
    IMDB_ID,
    INGESTED_RATINGS_SCHEMA,
    LINE_NUMBER,
    LINKS_SCHEMA,
    ML_LINKS_HEADER,
    ML_MOVIES_HEADER,
    ML_RATINGS_HEADER,
    ML_TAGS_HEADER,
    MOVIE_ID,
    MOVIE_INDEX_SCHEMA,
    MOVIES_SCHEMA,
    QUARANTINE_SCHEMA,
    RATING,
    RAW_LINE,
    REASON,
    SOURCE_FILE,
    TAG,
    TAGS_SCHEMA,
    TIMESTAMP,
    TITLE,
    TMDB_ID,
    USER_ID,
    USER_INDEX_SCHEMA,
    require_columns,
)

_logger = logging.getLogger(__name__)

# Working columns that never leave this module's functions.
_VALUE, _BLOCK, _ROW_ID, _MIN_ID, _N, _OFFSET = (
    "_value",
    "_block",
    "_row_id",
    "_min_id",
    "_n",
    "_offset",
)
_PARSED, _CORRUPT = "_parsed", "_corrupt"

# Sub-folders of the ingest output folder (written by recspark.pipeline.ingest).
RATINGS_DIR = "ratings"
MOVIES_DIR = "movies"
TAGS_DIR = "tags"
LINKS_DIR = "links"
USER_INDEX_DIR = "user_index"
MOVIE_INDEX_DIR = "movie_index"
QUARANTINE_DIR = "quarantine"
STATS_DIR = "stats"
PLOTS_DIR = "plots"
REPORT_FILE = "report.json"


class Reason:
    """Quarantine reasons: one fixed string per kind of problem (the first one found wins)."""

    BLANK_LINE = "blank line"
    BAD_HEADER = "bad header"
    REPEATED_HEADER = "repeated header line"
    FIELD_COUNT = "wrong field count"
    UNBALANCED_QUOTES = "unbalanced quotes"
    EMPTY_FIELD = "empty field"
    USER_NOT_NUMERIC = "non-numeric user id"
    USER_NOT_POSITIVE = "non-positive user id"
    MOVIE_NOT_NUMERIC = "non-numeric movie id"
    MOVIE_NOT_POSITIVE = "non-positive movie id"
    RATING_NOT_NUMERIC = "non-numeric rating"
    RATING_OUT_OF_SCALE = "rating outside the scale"
    RATING_OFF_HALF_STARS = "rating off the half-star grid"
    RATING_OFF_WHOLE_STARS = "rating off the integer grid"
    TIMESTAMP_NOT_INTEGER = "non-integer timestamp"
    TIMESTAMP_OUT_OF_RANGE = "timestamp out of range"
    IMDB_NOT_NUMERIC = "non-numeric imdb id"
    TMDB_NOT_NUMERIC = "non-numeric tmdb id"
    GENRE_FLAGS = "malformed genre flags"


@dataclass(frozen=True)
class Layout:
    """How one family of MovieLens releases spells its files.

    ``separator`` is literal; ``header`` the expected first line of the ratings file (None:
    no header). Ratings must lie in [``rating_min``, ``rating_max``] on multiples of
    ``rating_step``. ``encoding`` applies to the movie and tag files: ``utf-8`` keeps valid
    UTF-8 lines and decodes any other line as latin-1; ``latin-1`` decodes every line so.
    Files set to None do not exist in the layout (their outputs are written empty).
    """

    name: str
    ratings_file: str
    separator: str
    header: str | None
    rating_min: float
    rating_max: float
    rating_step: float
    movies_file: str | None
    tags_file: str | None
    links_file: str | None
    encoding: str = "utf-8"


LAYOUTS: dict[str, Layout] = {
    "csv": Layout(
        "csv",
        "ratings.csv",
        ",",
        ",".join(ML_RATINGS_HEADER),
        0.5,
        5.0,
        0.5,
        "movies.csv",
        "tags.csv",
        "links.csv",
    ),
    "ml-10m": Layout(
        "ml-10m",
        "ratings.dat",
        "::",
        None,
        0.5,
        5.0,
        0.5,
        "movies.dat",
        "tags.dat",
        None,
    ),
    "ml-1m": Layout(
        "ml-1m",
        "ratings.dat",
        "::",
        None,
        1.0,
        5.0,
        1.0,
        "movies.dat",
        None,
        None,
        "latin-1",
    ),
    "ml-100k": Layout(
        "ml-100k",
        "u.data",
        "\t",
        None,
        1.0,
        5.0,
        1.0,
        "u.item",
        None,
        None,
        "latin-1",
    ),
}

#: The 19 genre flags of ml-100k's u.item, in column order (from u.genre).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
NO_GENRES = "(no genres listed)"


def detect_layout(spark: SparkSession, data_dir: str, layout: str = "auto") -> Layout:
    """The layout of ``data_dir``: the configured one, or (``auto``) the one its files match.

    ``auto`` picks ``csv`` for ratings.csv, ``ml-100k`` for u.data, and for ratings.dat
    ``ml-1m`` when users.dat is present (ml-1m ships it, ml-10m does not), else ``ml-10m``.
    Raises :class:`ConfigError` for an unknown layout name and :class:`DataNotFoundError`
    when the layout's ratings file is missing.
    """
    names = set(storage.list_dir(spark, data_dir))
    if layout != "auto":
        if layout not in LAYOUTS:
            raise ConfigError(
                f"data.layout = {layout!r} is unknown; choose auto or one of {', '.join(LAYOUTS)}"
            )
        chosen = LAYOUTS[layout]
    elif "ratings.csv" in names:
        chosen = LAYOUTS["csv"]
    elif "u.data" in names:
        chosen = LAYOUTS["ml-100k"]
    elif "ratings.dat" in names:
        chosen = LAYOUTS["ml-1m" if "users.dat" in names else "ml-10m"]
    else:
        raise DataNotFoundError(
            f"no MovieLens ratings file in {data_dir} "
            f"(found: {', '.join(sorted(names)) or 'nothing'}); "
            f"expected ratings.csv, ratings.dat or u.data. Set data.dir to the folder that holds "
            f"them, or set data.layout explicitly."
        )
    if chosen.ratings_file not in names:
        raise DataNotFoundError(
            f"data.layout = {chosen.name} expects {chosen.ratings_file} in {data_dir}, which has "
            f"{', '.join(sorted(names)) or 'no files'}; use data.layout = auto or fix data.dir."
        )
    _logger.info("layout %s in %s", chosen.name, data_dir)
    return chosen


# --------------------------------------------------------------------------- reading lines


def read_lines(
    spark: SparkSession, paths: str | Sequence[str], *, encoding: str = "utf-8"
) -> DataFrame:
    """One row per physical line of the text files: ``source_file``, ``line_number``, ``raw_line``.

    ``line_number`` is the exact 1-based line in its file (a header is line 1), computed
    without collecting: every row gets its file, the start offset of its input split and a
    ``monotonically_increasing_id`` (consecutive within a split). A small table per
    (file, split) holds the row count n and the smallest id; the number of lines in the
    file's earlier splits (a running sum of n ordered by split start) is the offset, and

        line_number = offset + (id - min_id) + 1.

    The table is broadcast back, so the files are scanned twice (once only counting).
    ``source_file`` is the file's URI as Spark reports it. ``encoding`` is ``utf-8`` (lines
    that are not valid UTF-8 are decoded as latin-1) or ``latin-1``.
    """
    if encoding not in ("utf-8", "latin-1"):
        raise ConfigError(f"read_lines: encoding must be utf-8 or latin-1, got {encoding!r}")
    paths = [paths] if isinstance(paths, str) else list(paths)
    raw = spark.read.text(paths).select(
        F.col("value").alias(_VALUE),
        F.input_file_name().alias(SOURCE_FILE),
        F.input_file_block_start().alias(_BLOCK),
        F.monotonically_increasing_id().alias(_ROW_ID),
    )
    earlier = (
        Window.partitionBy(SOURCE_FILE).orderBy(_BLOCK).rowsBetween(Window.unboundedPreceding, -1)
    )
    blocks = (
        raw.groupBy(SOURCE_FILE, _BLOCK)
        .agg(F.count(F.lit(1)).alias(_N), F.min(_ROW_ID).alias(_MIN_ID))
        .select(
            SOURCE_FILE,
            _BLOCK,
            _MIN_ID,
            F.coalesce(F.sum(_N).over(earlier), F.lit(0)).alias(_OFFSET),
        )
    )
    value = F.col(_VALUE)
    latin1 = F.decode(value.cast("binary"), "ISO-8859-1")
    text = (
        latin1 if encoding == "latin-1" else F.when(F.is_valid_utf8(value), value).otherwise(latin1)
    )
    return raw.join(F.broadcast(blocks), [SOURCE_FILE, _BLOCK]).select(
        F.col(SOURCE_FILE),
        (F.col(_OFFSET) + F.col(_ROW_ID) - F.col(_MIN_ID) + 1).alias(LINE_NUMBER),
        text.alias(RAW_LINE),
    )


# --------------------------------------------------------------------------- validation helpers

_INT_RE = r"^[+-]?[0-9]+$"
_DECIMAL_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"

# Working columns of the validate_* stages: raw fields, then parsed values. Each is computed
# once per row in its own projection and referenced by name afterwards; inlining the same
# regex / cast into every branch of the reason's CASE WHEN made validation ~4x slower.
_N_FIELDS = "_n_fields"


def _field(i: int) -> str:
    return f"_f{i}"


def _value(name: str) -> str:
    return f"_v_{name}"


def _stage(df: DataFrame, columns: dict[str, Column]) -> DataFrame:
    """Add ``columns`` to ``df`` in one projection (later expressions refer to them by name)."""
    return df.select("*", *[col.alias(name) for name, col in columns.items()])


def _first_reason(checks: Sequence[tuple[Column, str]]) -> Column:
    """The reason of the first check whose condition is true; null when none is."""
    expr = None
    for cond, reason in checks:
        expr = F.when(cond, F.lit(reason)) if expr is None else expr.when(cond, F.lit(reason))
    assert expr is not None
    return expr


def _as_long(field: Column) -> Column:
    """The field as a long, null unless it is a plain (optionally signed) integer."""
    return F.when(field.rlike(_INT_RE), field.try_cast(T.LongType()))


def _as_double(field: Column) -> Column:
    """The field as a double, null unless it is a plain decimal number (no NaN, no exponent)."""
    return F.when(field.rlike(_DECIMAL_RE), field.try_cast(T.DoubleType()))


def _id_checks(value: Column, not_numeric: str, not_positive: str) -> list[tuple[Column, str]]:
    """Checks of a parsed id (null when the field was not an integer)."""
    return [(value.isNull(), not_numeric), (value <= 0, not_positive)]


def _timestamp_checks(value: Column, now: int) -> list[tuple[Column, str]]:
    """Checks of a parsed timestamp (null when the field was not an integer)."""
    return [
        (value.isNull(), Reason.TIMESTAMP_NOT_INTEGER),
        ((value < 0) | (value > F.lit(now)), Reason.TIMESTAMP_OUT_OF_RANGE),
    ]


def _empty(field: Column) -> Column:
    return field.isNull() | (field == "")


def _header_checks(raw: Column, header: str | None) -> tuple[Column, list[tuple[Column, str]]]:
    """(is the valid header line, checks for a bad or repeated header).

    Only line 1 pays for stripping a UTF-8 byte-order mark (``And`` short-circuits); a
    repeated header further down is matched exactly.
    """
    if header is None:
        return F.lit(False), []
    first = F.col(LINE_NUMBER) == 1
    text = F.trim(F.regexp_replace(raw, "^\ufeff", ""))
    return first & (text == header), [
        (first & (text != header), Reason.BAD_HEADER),
        (~first & (F.trim(raw) == header), Reason.REPEATED_HEADER),
    ]


def _split_stage(lines: DataFrame, separator: str, n: int) -> tuple[DataFrame, list[Column]]:
    """Add the first ``n`` separator-split fields (trimmed; null when absent) and the count.

    Returns the frame and the field columns; the count is column ``_n_fields``.
    """
    parts = F.split(F.col(RAW_LINE), re.escape(separator), -1)
    columns = {_field(i): F.trim(F.get(parts, i)) for i in range(n)}
    df = _stage(lines, {**columns, _N_FIELDS: F.size(parts)})
    return df, [F.col(_field(i)) for i in range(n)]


def _csv_stage(
    lines: DataFrame, n: int
) -> tuple[DataFrame, list[Column], list[tuple[Column, str]]]:
    """Add ``n`` RFC-4180 fields (``""`` escapes a quote; empty fields are null) via ``from_csv``.

    Returns the frame, the field columns and the checks for a malformed record: an odd
    number of quote characters is reported as unbalanced quotes, any other malformed record
    (too few or too many fields) as a wrong field count.
    """
    raw = F.col(RAW_LINE)
    ddl = ", ".join(f"`c{i}` STRING" for i in range(n)) + f", `{_CORRUPT}` STRING"
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT, "escape": '"'}
    df = _stage(lines, {_PARSED: F.from_csv(raw, ddl, options)})
    df = _stage(df, {_field(i): F.col(_PARSED).getField(f"c{i}") for i in range(n)})
    corrupt = F.col(_PARSED).getField(_CORRUPT).isNotNull()
    odd_quotes = (F.length(raw) - F.length(F.regexp_replace(raw, '"', ""))) % 2 == 1
    checks = [(corrupt & odd_quotes, Reason.UNBALANCED_QUOTES), (corrupt, Reason.FIELD_COUNT)]
    return df, [F.col(_field(i)) for i in range(n)], checks


def _finish(
    df: DataFrame, header_ok: Column, reason: Column, typed: dict[str, Column]
) -> DataFrame:
    """Drop the valid header line; keep quarantine columns, typed columns and the reason."""
    return df.filter(~header_ok).select(
        SOURCE_FILE,
        LINE_NUMBER,
        RAW_LINE,
        *[col.alias(name) for name, col in typed.items()],
        reason.alias(REASON),
    )


def _now(now: int | None) -> int:
    # A driver-side literal, not current_timestamp(): the same value in every re-evaluation.
    return int(time.time()) if now is None else int(now)


def _require_lines(lines: DataFrame, stage: str) -> None:
    require_columns(lines, [SOURCE_FILE, LINE_NUMBER, RAW_LINE], stage=stage)


# --------------------------------------------------------------------------- ratings


def validate_ratings(lines: DataFrame, *, layout: Layout, now: int | None = None) -> DataFrame:
    """Parse and check ratings lines.

    Input: ``source_file``, ``line_number``, ``raw_line`` (see :func:`read_lines`).
    Output: the same plus ``user_id``, ``movie_id`` (long), ``rating`` (double),
    ``timestamp`` (long; null where unparsable) and ``reason`` (null for a good row, else the
    first problem, a :class:`Reason` string). The valid header line is dropped, so every
    output row is a data row: rows read = accepted + quarantined.

    Checks, in order: blank line; bad header (line 1 of a layout with a header) or a repeated
    header line; field count (4); empty field; user id and movie id are integers > 0; rating
    is a decimal number within [rating_min, rating_max] on a multiple of rating_step
    (|r/step - round(r/step)| <= 1e-9); timestamp is an integer in [0, now] (``now``: epoch
    seconds, default the current time).
    """
    _require_lines(lines, "validate_ratings")
    raw = F.col(RAW_LINE)
    header_ok, header_checks = _header_checks(raw, layout.header)
    df, (user, movie, rating, ts) = _split_stage(lines, layout.separator, 4)
    df = _stage(
        df,
        {
            _value(USER_ID): _as_long(user),
            _value(MOVIE_ID): _as_long(movie),
            _value(RATING): _as_double(rating),
            _value(TIMESTAMP): _as_long(ts),
        },
    )
    user_v, movie_v = F.col(_value(USER_ID)), F.col(_value(MOVIE_ID))
    rating_v, ts_v = F.col(_value(RATING)), F.col(_value(TIMESTAMP))
    steps = rating_v / F.lit(layout.rating_step)
    off_grid = (
        Reason.RATING_OFF_WHOLE_STARS if layout.rating_step == 1.0 else Reason.RATING_OFF_HALF_STARS
    )
    reason = _first_reason(
        [
            (F.trim(raw) == "", Reason.BLANK_LINE),
            *header_checks,
            (F.col(_N_FIELDS) != 4, Reason.FIELD_COUNT),
            (_empty(user) | _empty(movie) | _empty(rating) | _empty(ts), Reason.EMPTY_FIELD),
            *_id_checks(user_v, Reason.USER_NOT_NUMERIC, Reason.USER_NOT_POSITIVE),
            *_id_checks(movie_v, Reason.MOVIE_NOT_NUMERIC, Reason.MOVIE_NOT_POSITIVE),
            (rating_v.isNull(), Reason.RATING_NOT_NUMERIC),
            (
                (rating_v < layout.rating_min) | (rating_v > layout.rating_max),
                Reason.RATING_OUT_OF_SCALE,
            ),
            (F.abs(steps - F.round(steps)) > 1e-9, off_grid),
            *_timestamp_checks(ts_v, _now(now)),
        ]
    )
    typed = {USER_ID: user_v, MOVIE_ID: movie_v, RATING: rating_v, TIMESTAMP: ts_v}
    return _finish(df, header_ok, reason, typed)


def accepted(validated: DataFrame, schema: T.StructType) -> DataFrame:
    """The good rows of a ``validate_*`` output, with the columns of ``schema`` (in order)
    plus ``source_file`` and ``line_number``."""
    require_columns(validated, [REASON, *schema.fieldNames()], stage="accepted")
    return validated.filter(F.col(REASON).isNull()).select(
        *[F.col(f.name).cast(f.dataType) for f in schema.fields], SOURCE_FILE, LINE_NUMBER
    )


def quarantined(validated: DataFrame) -> DataFrame:
    """The bad rows of a ``validate_*`` output: ``source_file``, ``line_number``, ``raw_line``,
    ``reason`` (schema.QUARANTINE_SCHEMA)."""
    require_columns(validated, QUARANTINE_SCHEMA.fieldNames(), stage="quarantined")
    return validated.filter(F.col(REASON).isNotNull()).select(*QUARANTINE_SCHEMA.fieldNames())


def dedupe_ratings(ratings: DataFrame) -> DataFrame:
    """One rating per (user, movie): the latest one.

    Input: ``user_id``, ``movie_id``, ``rating``, ``timestamp``, ``line_number`` (as from
    :func:`accepted`). Output: ``user_id``, ``movie_id``, ``rating``, ``timestamp``,
    ``copies`` (how many input rows the pair had; duplicates collapsed = sum(copies - 1)).

    The kept row has the largest timestamp; ties go to the later line. Both are folded into
    one long, key = timestamp * 2^31 + line_number (exact for validated timestamps, which are
    in [0, now] < 2^32, and files under 2^31 lines), so the aggregation is ``max_by`` with
    fixed-width buffers: a hash aggregation (a struct max would fall back to a sort-based
    one). Line numbers are per file: layouts have a single ratings file.
    """
    require_columns(ratings, [USER_ID, MOVIE_ID, RATING, TIMESTAMP, LINE_NUMBER], stage="dedupe")
    key = F.col(TIMESTAMP) * F.lit(1 << 31) + F.col(LINE_NUMBER)
    return ratings.groupBy(USER_ID, MOVIE_ID).agg(
        F.max_by(RATING, key).alias(RATING),
        F.max(TIMESTAMP).alias(TIMESTAMP),
        F.count(F.lit(1)).alias(COPIES),
    )


# --------------------------------------------------------------------------- movies, tags, links


def validate_movies(lines: DataFrame, *, layout: Layout) -> DataFrame:
    """Parse and check movie lines into ``movie_id``, ``title``, ``genres`` plus ``reason``.

    csv: ``movieId,title,genres`` with RFC-4180 quoting (titles may hold commas and ``""``).
    ml-1m / ml-10m: ``movieId::title::genres``. ml-100k (u.item): 24 ``|`` fields, title in
    the second, 19 genre flags (0/1) last, turned into a ``|``-joined genre list
    (``(no genres listed)`` when no flag is set). Checks: blank line, header, field count,
    quotes, genre flags 0/1, empty id, title or genres, id an integer > 0.
    """
    _require_lines(lines, "validate_movies")
    raw = F.col(RAW_LINE)
    header = ",".join(ML_MOVIES_HEADER) if layout.name == "csv" else None
    header_ok, header_checks = _header_checks(raw, header)
    checks: list[tuple[Column, str]] = [(F.trim(raw) == "", Reason.BLANK_LINE), *header_checks]
    if layout.name == "csv":
        df, (movie, title, genres), malformed = _csv_stage(lines, 3)
        checks += malformed
    elif layout.name == "ml-100k":
        n = 5 + len(ML100K_GENRES)
        df, fields = _split_stage(lines, "|", n)
        movie, title, flags = fields[0], fields[1], fields[5:]
        genre_list = F.concat_ws(
            "|", *[F.when(flag == "1", F.lit(name)) for flag, name in zip(flags, ML100K_GENRES)]
        )
        genres = F.when(genre_list == "", F.lit(NO_GENRES)).otherwise(genre_list)
        bad_flag = F.lit(False)
        for flag in flags:
            bad_flag = bad_flag | ~flag.isin("0", "1")
        checks += [(F.col(_N_FIELDS) != n, Reason.FIELD_COUNT), (bad_flag, Reason.GENRE_FLAGS)]
    else:
        df, (movie, title, genres) = _split_stage(lines, layout.separator, 3)
        checks.append((F.col(_N_FIELDS) != 3, Reason.FIELD_COUNT))
    df = _stage(df, {_value(MOVIE_ID): _as_long(movie)})
    movie_v = F.col(_value(MOVIE_ID))
    checks.append((_empty(movie) | _empty(title) | _empty(genres), Reason.EMPTY_FIELD))
    checks += _id_checks(movie_v, Reason.MOVIE_NOT_NUMERIC, Reason.MOVIE_NOT_POSITIVE)
    typed = {MOVIE_ID: movie_v, TITLE: title, GENRES: genres}
    return _finish(df, header_ok, _first_reason(checks), typed)


def validate_tags(lines: DataFrame, *, layout: Layout, now: int | None = None) -> DataFrame:
    """Parse and check tag lines into ``user_id``, ``movie_id``, ``tag``, ``timestamp``, ``reason``.

    csv: ``userId,movieId,tag,timestamp`` (tags may be quoted); ml-10m:
    ``userId::movieId::tag::timestamp``. Checks: blank line, header, field count, quotes,
    empty field, ids integers > 0, timestamp an integer in [0, now].
    """
    _require_lines(lines, "validate_tags")
    raw = F.col(RAW_LINE)
    header = ",".join(ML_TAGS_HEADER) if layout.name == "csv" else None
    header_ok, header_checks = _header_checks(raw, header)
    checks: list[tuple[Column, str]] = [(F.trim(raw) == "", Reason.BLANK_LINE), *header_checks]
    if layout.name == "csv":
        df, (user, movie, tag, ts), malformed = _csv_stage(lines, 4)
        checks += malformed
    else:
        df, (user, movie, tag, ts) = _split_stage(lines, layout.separator, 4)
        checks.append((F.col(_N_FIELDS) != 4, Reason.FIELD_COUNT))
    df = _stage(
        df,
        {
            _value(USER_ID): _as_long(user),
            _value(MOVIE_ID): _as_long(movie),
            _value(TIMESTAMP): _as_long(ts),
        },
    )
    user_v, movie_v = F.col(_value(USER_ID)), F.col(_value(MOVIE_ID))
    ts_v = F.col(_value(TIMESTAMP))
    checks += [
        (_empty(user) | _empty(movie) | _empty(tag) | _empty(ts), Reason.EMPTY_FIELD),
        *_id_checks(user_v, Reason.USER_NOT_NUMERIC, Reason.USER_NOT_POSITIVE),
        *_id_checks(movie_v, Reason.MOVIE_NOT_NUMERIC, Reason.MOVIE_NOT_POSITIVE),
        *_timestamp_checks(ts_v, _now(now)),
    ]
    typed = {USER_ID: user_v, MOVIE_ID: movie_v, TAG: tag, TIMESTAMP: ts_v}
    return _finish(df, header_ok, _first_reason(checks), typed)


def validate_links(lines: DataFrame, *, layout: Layout) -> DataFrame:
    """Parse and check ``links.csv`` lines into ``movie_id``, ``imdb_id``, ``tmdb_id`` + ``reason``.

    ``imdb_id`` stays a string of digits (leading zeros kept: IMDb ids are ``tt`` + 7
    digits); ``tmdb_id`` may be empty (null: some movies have no TMDB entry). Checks: blank
    line, header, field count, quotes, empty movie or imdb id, ids numeric.
    """
    _require_lines(lines, "validate_links")
    raw = F.col(RAW_LINE)
    header_ok, header_checks = _header_checks(raw, ",".join(ML_LINKS_HEADER))
    df, (movie, imdb, tmdb), malformed = _csv_stage(lines, 3)
    df = _stage(df, {_value(MOVIE_ID): _as_long(movie), _value(TMDB_ID): _as_long(tmdb)})
    movie_v, tmdb_v = F.col(_value(MOVIE_ID)), F.col(_value(TMDB_ID))
    checks = [
        (F.trim(raw) == "", Reason.BLANK_LINE),
        *header_checks,
        *malformed,
        (_empty(movie) | _empty(imdb), Reason.EMPTY_FIELD),
        *_id_checks(movie_v, Reason.MOVIE_NOT_NUMERIC, Reason.MOVIE_NOT_POSITIVE),
        (~imdb.rlike("^[0-9]+$"), Reason.IMDB_NOT_NUMERIC),
        (tmdb.isNotNull() & (tmdb_v.isNull() | (tmdb_v <= 0)), Reason.TMDB_NOT_NUMERIC),
    ]
    typed = {MOVIE_ID: movie_v, IMDB_ID: imdb, TMDB_ID: tmdb_v}
    return _finish(df, header_ok, _first_reason(checks), typed)


# --------------------------------------------------------------------------- reading outputs back


def _require(spark: SparkSession, ingest_dir: str, sub: str) -> str:
    path = f"{ingest_dir.rstrip('/')}/{sub}"
    if not storage.exists(spark, path):
        raise DataNotFoundError(
            f"no ingested {sub} at {path}. Run the ingest job first (python jobs/ingest.py, with "
            f"the same data.dataset and ingest.output_dir), or point to the right ingest folder."
        )
    return path


def read_ratings(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """The ingested ratings: ``user_id``, ``movie_id``, ``rating``, ``timestamp``, ``user_idx``,
    ``movie_idx``, ``user_block`` (schema.INGESTED_RATINGS_SCHEMA; Parquet partitioned by
    ``user_block``, so filtering on it reads only those blocks)."""
    path = _require(spark, ingest_dir, RATINGS_DIR)
    return spark.read.schema(INGESTED_RATINGS_SCHEMA).parquet(path)


def read_ratings_csv(spark: SparkSession, data_dir: str) -> DataFrame:
    """``user_id``, ``movie_id``, ``rating``, ``timestamp`` straight from a trusted
    ml-latest-layout ``<data_dir>/ratings.csv`` (explicit schema, no validation or
    quarantine: for benchmarks and tests on known-good files; jobs go through ingest)."""
    types = (T.LongType(), T.LongType(), T.DoubleType(), T.LongType())
    schema = T.StructType([T.StructField(n, t, False) for n, t in zip(ML_RATINGS_HEADER, types)])
    raw = spark.read.csv(f"{data_dir.rstrip('/')}/ratings.csv", header=True, schema=schema)
    return raw.select(
        *(F.col(src).alias(dst) for src, dst in zip(ML_RATINGS_HEADER, (USER_ID, MOVIE_ID, RATING, TIMESTAMP)))
    )


def read_movies(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """The ingested movies: ``movie_id``, ``title``, ``genres`` (empty for layouts without one)."""
    return spark.read.schema(MOVIES_SCHEMA).parquet(_require(spark, ingest_dir, MOVIES_DIR))


def read_tags(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """The ingested tags: ``user_id``, ``movie_id``, ``tag``, ``timestamp``."""
    return spark.read.schema(TAGS_SCHEMA).parquet(_require(spark, ingest_dir, TAGS_DIR))


def read_links(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """The ingested links: ``movie_id``, ``imdb_id``, ``tmdb_id``."""
    return spark.read.schema(LINKS_SCHEMA).parquet(_require(spark, ingest_dir, LINKS_DIR))


def read_user_index(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """``user_id`` -> dense 0-based ``user_idx`` (ordered by id)."""
    return spark.read.schema(USER_INDEX_SCHEMA).parquet(_require(spark, ingest_dir, USER_INDEX_DIR))


def read_movie_index(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """``movie_id`` -> dense 0-based ``movie_idx`` (ordered by id; rated movies only)."""
    return spark.read.schema(MOVIE_INDEX_SCHEMA).parquet(
        _require(spark, ingest_dir, MOVIE_INDEX_DIR)
    )


def read_quarantine(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """Every malformed input row: ``source_file``, ``line_number``, ``raw_line``, ``reason``."""
    return spark.read.schema(QUARANTINE_SCHEMA).parquet(_require(spark, ingest_dir, QUARANTINE_DIR))


def read_report(spark: SparkSession, ingest_dir: str) -> dict:
    """The ingest report (counts per file, statistics summary) as a dict."""
    return json.loads(storage.read_text(spark, _require(spark, ingest_dir, REPORT_FILE)))
