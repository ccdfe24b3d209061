"""Line-numbered reading and validation of raw MovieLens files, with a quarantine.

Raw files are read as text lines (``spark.read.text``) so every malformed row keeps its raw
line and exact 1-based line number (:func:`recspark.io.lines.read_lines`). The
``validate_*`` stages parse the lines with Spark SQL expressions (no Python per row), following the file's
:class:`~recspark.io.layouts.FileSpec` (separator, quoting, header), and add a ``reason``
column that is null for good rows and names the first problem otherwise (a :class:`Reason`);
:func:`accepted` and :func:`quarantined` split the result. :func:`dedupe_ratings` collapses
repeated (user, movie) pairs.
"""

from __future__ import annotations

import re
import time
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.errors import ConfigError
from recspark.io.layouts import FileSpec, Layout
from recspark.io.lines import read_lines  # noqa: F401  (re-exported: readers import it from here)
from recspark.io.reasons import Reason
from recspark.schema import (
    COPIES,
    GENRES,
    IMDB_ID,
    LATIN1_FALLBACK,
    LINE_NUMBER,
    MOVIE_ID,
    QUARANTINE_SCHEMA,
    RATING,
    RAW_LINE,
    REASON,
    ROW_ID,
    SOURCE_FILE,
    SPLIT_START,
    TAG,
    TIMESTAMP,
    TITLE,
    TMDB_ID,
    USER_ID,
    require_columns,
)

_PARSED, _CORRUPT = "_parsed", "_corrupt"

NO_GENRES = "(no genres listed)"


# --------------------------------------------------------------------------- validation helpers

_INT = r"[+-]?[0-9]+"
_DECIMAL = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
_INT_RE, _DECIMAL_RE = f"^{_INT}$", f"^{_DECIMAL}$"
# Any number, exponent allowed: tells "not an integer" from "not a number" on failing rows.
_NUMBER_RE = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"

# Working columns of the validate_* stages: raw fields, then parsed values. Each is computed
# once per row in its own projection and referenced by name afterwards; inlining the same
# regex / cast into every branch of the reason's CASE WHEN made validation ~4x slower.
_N_FIELDS, _WELL_FORMED = "_n_fields", "_well_formed"


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


def _as_long(field: Column, well_formed: Column | None = None) -> Column:
    """The field as a long, null unless it is a plain (optionally signed) integer. On a
    ``well_formed`` line (:func:`_well_formed`) the field's own regex is skipped."""
    matches = field.rlike(_INT_RE)
    return F.when(
        matches if well_formed is None else well_formed | matches, field.try_cast(T.LongType())
    )


def _as_double(field: Column, well_formed: Column | None = None) -> Column:
    """The field as a double, null unless it is a plain decimal number (no NaN, no exponent).
    On a ``well_formed`` line (:func:`_well_formed`) the field's own regex is skipped."""
    matches = field.rlike(_DECIMAL_RE)
    return F.when(
        matches if well_formed is None else well_formed | matches, field.try_cast(T.DoubleType())
    )


def _well_formed(spec: FileSpec, order: Sequence[int], patterns: Sequence[str]) -> Column:
    """True on a line, other than line 1, of an unquoted file whose fields are all numbers of
    their kind: exactly ``len(patterns)`` fields, field i (the layout's order) at file
    position ``order[i]`` matching ``patterns[i]``, spaces around a field allowed (fields are
    trimmed). One regex per line instead of one per field: on such a line every structural
    check (blank, header, quotes, separator, field count, empty field) is false and every
    field passes its own regex, so only the value checks remain (:func:`_value_or_full`).
    Always false for a quoted file."""
    if spec.quoted:
        return F.lit(False)
    at_position = dict(zip(order, patterns))
    fields = [f" *{at_position[p]} *" for p in range(len(patterns))]
    line = "^" + re.escape(spec.separator).join(fields) + "$"
    return (F.col(LINE_NUMBER) != 1) & F.col(RAW_LINE).rlike(line)


def _value_or_full(
    checks: Sequence[tuple[Column, str]], value_checks: Sequence[tuple[Column, str]]
) -> Column:
    """The first failing check's reason: of ``value_checks`` alone on a well-formed line
    (column ``_well_formed``: all the other ``checks`` are false there), of ``checks`` then
    ``value_checks`` otherwise."""
    full = _first_reason([*checks, *value_checks])
    return F.when(F.col(_WELL_FORMED), _first_reason(value_checks)).otherwise(full)


def _number_checks(
    field: Column, value: Column, not_integer: str, not_numeric: str
) -> list[tuple[Column, str]]:
    """Checks of an integer field whose parsed ``value`` is null: a decimal number that is
    not an integer (``1.5``), or not a number at all. The regex runs on failing rows only."""
    missing = value.isNull()
    return [(missing & field.rlike(_NUMBER_RE), not_integer), (missing, not_numeric)]


def _id_checks(field: Column, value: Column, who: str) -> list[tuple[Column, str]]:
    """Checks of a parsed user or movie id (``who``: ``USER`` or ``MOVIE``): an integer > 0."""
    reasons = {kind: getattr(Reason, f"{who}_NOT_{kind}") for kind in ("INTEGER", "NUMERIC")}
    return [
        *_number_checks(field, value, reasons["INTEGER"], reasons["NUMERIC"]),
        (value <= 0, getattr(Reason, f"{who}_NOT_POSITIVE")),
    ]


def _timestamp_checks(field: Column, value: Column, now: int) -> list[tuple[Column, str]]:
    """Checks of a parsed timestamp: an integer of epoch seconds in [0, now]. A value in the
    future as seconds but within [1e11, now·1000] as milliseconds (1e11 s is the year 5138)
    is reported as milliseconds."""
    checks = _number_checks(
        field, value, Reason.TIMESTAMP_NOT_INTEGER, Reason.TIMESTAMP_NOT_NUMERIC
    )
    millis = (value >= F.lit(10**11)) & (value <= F.lit(now * 1000))
    return [
        *checks,
        (millis, Reason.TIMESTAMP_MILLISECONDS),
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


def _split_stage(
    lines: DataFrame, separator: str, order: Sequence[int]
) -> tuple[DataFrame, list[Column]]:
    """Add the separator-split fields at positions ``order`` (trimmed; null when absent) and
    the count of fields.

    Returns the frame and the field columns; the count is column ``_n_fields``.
    """
    parts = F.split(F.col(RAW_LINE), re.escape(separator), -1)
    columns = {_field(i): F.trim(F.get(parts, at)) for i, at in enumerate(order)}
    df = _stage(lines, {**columns, _N_FIELDS: F.size(parts)})
    return df, [F.col(_field(i)) for i in range(len(order))]


def _csv_stage(
    lines: DataFrame, separator: str, order: Sequence[int]
) -> tuple[DataFrame, list[Column], list[tuple[Column, str]]]:
    """Add the RFC-4180 fields (``""`` escapes a quote; empty fields are null) at positions
    ``order`` via ``from_csv``.

    Returns the frame, the field columns and the checks for a malformed record: an odd
    number of quote characters is reported as unbalanced quotes, any other malformed record
    (too few or too many fields) as a wrong field count.
    """
    raw = F.col(RAW_LINE)
    ddl = ", ".join(f"`c{i}` STRING" for i in range(len(order))) + f", `{_CORRUPT}` STRING"
    options = {
        "mode": "PERMISSIVE",
        "columnNameOfCorruptRecord": _CORRUPT,
        "escape": '"',
        "sep": separator,
    }
    df = _stage(lines, {_PARSED: F.from_csv(raw, ddl, options)})
    df = _stage(df, {_field(i): F.col(_PARSED).getField(f"c{at}") for i, at in enumerate(order)})
    corrupt = F.col(_PARSED).getField(_CORRUPT).isNotNull()
    checks = [(corrupt & _odd_quotes(raw), Reason.UNBALANCED_QUOTES), (corrupt, Reason.FIELD_COUNT)]
    return df, [F.col(_field(i)) for i in range(len(order))], checks


def _odd_quotes(raw: Column) -> Column:
    """An odd number of ``"`` in the line (only lines holding one pay for the count)."""
    return raw.contains('"') & ((F.length(raw) - F.length(F.regexp_replace(raw, '"', ""))) % 2 == 1)


def _wrong_separator(raw: Column, separator: str) -> Column:
    """A line of a single field that holds another common separator (``;``, tab, ``|``)."""
    others = "".join(c for c in ";\t|" if c not in separator)
    return ~raw.contains(separator) & raw.rlike(f"[{re.escape(others)}]")


def _finish(
    df: DataFrame, header_ok: Column, reason: Column, typed: dict[str, Column]
) -> DataFrame:
    """Drop the valid header line; keep quarantine columns, typed columns and the reason
    (and the latin-1 fallback flag and the lines' split and row id when they carry them)."""
    flag = [c for c in (LATIN1_FALLBACK, SPLIT_START, ROW_ID) if c in df.columns]
    return df.filter(~header_ok).select(
        SOURCE_FILE,
        LINE_NUMBER,
        RAW_LINE,
        *flag,
        *[col.alias(name) for name, col in typed.items()],
        reason.alias(REASON),
    )


def _now(now: int | None) -> int:
    # A driver-side literal, not current_timestamp(): the same value in every re-evaluation.
    return int(time.time()) if now is None else int(now)


def _require_lines(lines: DataFrame, stage: str) -> None:
    require_columns(lines, [SOURCE_FILE, LINE_NUMBER, RAW_LINE], stage=stage)


def _parse(
    lines: DataFrame,
    spec: FileSpec,
    n: int,
    columns: Sequence[str] | None = None,
    numbers: Sequence[str] | None = None,
) -> tuple[DataFrame, list[Column], Column, list[tuple[Column, str]]]:
    """Split lines into ``n`` fields as ``spec`` says; the checks every file shares.

    ``columns``: the file's header in its own order (from
    :func:`~recspark.io.layouts.match_header`; default the layout's), so the fields come
    back in the layout's order whatever the file's. ``numbers``: for a file of numbers
    only, each field's regex (layout order); the frame then has the column
    ``_well_formed`` (:func:`_well_formed`). Returns the frame, the field columns, the "is
    the valid header line" condition and the checks in order: blank line, bad or repeated
    header, malformed record (quotes, another separator, field count).
    """
    raw = F.col(RAW_LINE)
    order = list(range(n))
    header_line = spec.header_line
    if columns is not None and spec.header is not None:
        order = [list(columns).index(name) for name in spec.header] + order[len(spec.header) :]
        header_line = spec.separator.join(columns)
    if numbers is not None:
        lines = _stage(lines, {_WELL_FORMED: _well_formed(spec, order, numbers)})
    header_ok, header_checks = _header_checks(raw, header_line)
    checks: list[tuple[Column, str]] = [(F.trim(raw) == "", Reason.BLANK_LINE), *header_checks]
    if spec.quoted:
        df, fields, (quotes, count) = _csv_stage(lines, spec.separator, order)
        malformed, one_field = count[0], F.col(_PARSED).getField("c1").isNull()
    else:
        df, fields = _split_stage(lines, spec.separator, order)
        quotes = (_odd_quotes(raw), Reason.UNBALANCED_QUOTES)
        malformed, one_field = F.col(_N_FIELDS) != n, F.col(_N_FIELDS) == 1
    checks += [
        quotes,
        (malformed & one_field & _wrong_separator(raw, spec.separator), Reason.WRONG_SEPARATOR),
        (malformed, Reason.FIELD_COUNT),
    ]
    return df, fields, header_ok, checks


def _spec(layout: Layout, kind: str) -> FileSpec:
    spec = getattr(layout, kind)
    if spec is None:
        raise ConfigError(f"layout {layout.name} has no {kind} file")
    return spec


# --------------------------------------------------------------------------- ratings


def validate_ratings(
    lines: DataFrame,
    *,
    layout: Layout,
    now: int | None = None,
    columns: Sequence[str] | None = None,
) -> DataFrame:
    """Parse and check ratings lines.

    Input: ``source_file``, ``line_number``, ``raw_line`` (see :func:`read_lines`).
    Output: the same plus ``user_id``, ``movie_id`` (long), ``rating`` (double),
    ``timestamp`` (long; null where unparsable) and ``reason`` (null for a good row, else the
    first problem, a :class:`Reason` string). The valid header line is dropped, so every
    output row is a data row: rows read = accepted + quarantined.

    Checks, in order (:data:`recspark.io.reasons.CAUSES`): blank line; bad header (line 1
    of a file with a header) or a repeated header line; unbalanced quotes; another
    separator; field count (4); empty field; user id and movie id are integers (else
    non-integer or non-numeric) > 0; rating is a decimal number within [scale.min,
    scale.max] on a multiple of scale.step (|r/step - round(r/step)| <= 1e-9); timestamp is
    an integer in [0, now] (``now``: epoch seconds, default the current time), reported as
    milliseconds when it is one. ``columns``: the file's header in its own order
    (:func:`~recspark.io.layouts.match_header`), default the layout's; the output columns
    are the same whatever the order. Input lines may carry ``latin1_fallback``: kept.
    """
    _require_lines(lines, "validate_ratings")
    scale, spec = layout.scale, layout.ratings
    numbers = (_INT, _INT, _DECIMAL, _INT)
    df, (user, movie, rating, ts), header_ok, checks = _parse(lines, spec, 4, columns, numbers)
    fast = F.col(_WELL_FORMED)
    df = _stage(
        df,
        {
            _value(USER_ID): _as_long(user, fast),
            _value(MOVIE_ID): _as_long(movie, fast),
            _value(RATING): _as_double(rating, fast),
            _value(TIMESTAMP): _as_long(ts, fast),
        },
    )
    user_v, movie_v = F.col(_value(USER_ID)), F.col(_value(MOVIE_ID))
    rating_v, ts_v = F.col(_value(RATING)), F.col(_value(TIMESTAMP))
    steps = rating_v / F.lit(scale.step)
    off_grid = Reason.RATING_OFF_WHOLE_STARS if scale.whole_stars else Reason.RATING_OFF_HALF_STARS
    checks.append((_empty(user) | _empty(movie) | _empty(rating) | _empty(ts), Reason.EMPTY_FIELD))
    value_checks = [
        *_id_checks(user, user_v, "USER"),
        *_id_checks(movie, movie_v, "MOVIE"),
        (rating_v.isNull(), Reason.RATING_NOT_NUMERIC),
        ((rating_v < scale.min) | (rating_v > scale.max), Reason.RATING_OUT_OF_SCALE),
        # rint (Math.rint), not round: Spark's round of a double goes through a BigDecimal
        # per row (2.5 s against 0.3 s per 64M values on two cores); the distance to the
        # nearest whole number of steps is the same either way, ties (x.5) included.
        (F.abs(steps - F.rint(steps)) > 1e-9, off_grid),
        *_timestamp_checks(ts, ts_v, _now(now)),
    ]
    typed = {USER_ID: user_v, MOVIE_ID: movie_v, RATING: rating_v, TIMESTAMP: ts_v}
    return _finish(df, header_ok, _value_or_full(checks, value_checks), typed)


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


def dedupe_ratings(ratings: DataFrame, *, keys: Sequence[str] = ()) -> DataFrame:
    """One rating per (user, movie): the latest one.

    Input: ``user_id``, ``movie_id``, ``rating``, ``timestamp``, ``line_number`` (as from
    :func:`accepted`), plus ``keys``. Output: ``user_id``, ``movie_id``, the ``keys``,
    ``rating``, ``timestamp``, ``copies`` (how many input rows the pair had; duplicates
    collapsed = sum(copies - 1)). ``keys`` are columns determined by the pair (e.g. the
    dense indices and user block): grouping by them too changes nothing in the result but
    lets an input already hash-partitioned by one of them skip the aggregation's shuffle.
    The grouping keys are ``keys`` then ``user_id``, ``movie_id``, in that order: with
    :data:`SORTED_AGGREGATION` set, an input sorted within its partitions by exactly those
    columns is aggregated by streaming through the sorted rows, without a hash map of all
    pairs, and comes out in that order.

    The kept row has the largest timestamp; ties go to the later line. Both are folded into
    one long, key = timestamp * 2^31 + line_number (exact for validated timestamps, which are
    in [0, now] < 2^32, and files under 2^31 lines), so the aggregation is ``max_by`` with
    fixed-width buffers: a hash aggregation (a struct max would fall back to a sort-based
    one). Line numbers are per file: layouts have a single ratings file.
    """
    required = [USER_ID, MOVIE_ID, *keys, RATING, TIMESTAMP, LINE_NUMBER]
    require_columns(ratings, required, stage="dedupe")
    key = F.col(TIMESTAMP) * F.lit(1 << 31) + F.col(LINE_NUMBER)
    grouped = ratings.groupBy(*keys, USER_ID, MOVIE_ID).agg(
        F.max_by(RATING, key).alias(RATING),
        F.max(TIMESTAMP).alias(TIMESTAMP),
        F.count(F.lit(1)).alias(COPIES),
    )
    return grouped.select(USER_ID, MOVIE_ID, *keys, RATING, TIMESTAMP, COPIES)


#: Spark settings under which :func:`dedupe_ratings` of an input sorted by its grouping keys
#: streams through the sorted rows (a sort aggregate) instead of building a hash map.
SORTED_AGGREGATION = {"spark.sql.execution.replaceHashWithSortAgg": "true"}


# --------------------------------------------------------------------------- movies, tags, links


def _genre_flags(fields: list[Column], names: tuple[str, ...]) -> tuple[Column, Column]:
    """(``|``-joined genres of the set flags, any flag not 0/1) of trailing flag fields."""
    flags = fields[-len(names) :]
    genre_list = F.concat_ws(
        "|", *[F.when(flag == "1", F.lit(name)) for flag, name in zip(flags, names)]
    )
    bad_flag = F.lit(False)
    for flag in flags:
        bad_flag = bad_flag | ~flag.isin("0", "1")
    return F.when(genre_list == "", F.lit(NO_GENRES)).otherwise(genre_list), bad_flag


def validate_movies(
    lines: DataFrame, *, layout: Layout, columns: Sequence[str] | None = None
) -> DataFrame:
    """Parse and check movie lines into ``movie_id``, ``title``, ``genres`` plus ``reason``.

    csv: ``movieId,title,genres`` with RFC-4180 quoting (titles may hold commas and ``""``).
    ml-1m / ml-10m: ``movieId::title::genres``. A file with ``genre_flags`` (ml-100k's
    u.item: 24 ``|`` fields, title in the second, 19 genre flags 0/1 last) gets a
    ``|``-joined genre list (``(no genres listed)`` when no flag is set). Checks: blank line,
    header, field count, quotes, genre flags 0/1, empty id, title or genres, id an
    integer > 0.
    """
    _require_lines(lines, "validate_movies")
    spec = _spec(layout, "movies")
    if spec.genre_flags:
        n = 5 + len(spec.genre_flags)
        df, fields, header_ok, checks = _parse(lines, spec, n, columns)
        movie, title = fields[0], fields[1]
        genres, bad_flag = _genre_flags(fields, spec.genre_flags)
        checks.append((bad_flag, Reason.GENRE_FLAGS))
    else:
        df, (movie, title, genres), header_ok, checks = _parse(lines, spec, 3, columns)
    df = _stage(df, {_value(MOVIE_ID): _as_long(movie)})
    movie_v = F.col(_value(MOVIE_ID))
    checks.append((_empty(movie) | _empty(title) | _empty(genres), Reason.EMPTY_FIELD))
    checks += _id_checks(movie, movie_v, "MOVIE")
    typed = {MOVIE_ID: movie_v, TITLE: title, GENRES: genres}
    return _finish(df, header_ok, _first_reason(checks), typed)


def validate_tags(
    lines: DataFrame,
    *,
    layout: Layout,
    now: int | None = None,
    columns: Sequence[str] | None = None,
) -> DataFrame:
    """Parse and check tag lines into ``user_id``, ``movie_id``, ``tag``, ``timestamp``, ``reason``.

    csv: ``userId,movieId,tag,timestamp`` (tags may be quoted); ml-10m:
    ``userId::movieId::tag::timestamp``. Checks: blank line, header, field count, quotes,
    empty field, ids integers > 0, timestamp an integer in [0, now].
    """
    _require_lines(lines, "validate_tags")
    df, (user, movie, tag, ts), header_ok, checks = _parse(lines, _spec(layout, "tags"), 4, columns)
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
        *_id_checks(user, user_v, "USER"),
        *_id_checks(movie, movie_v, "MOVIE"),
        *_timestamp_checks(ts, ts_v, _now(now)),
    ]
    typed = {USER_ID: user_v, MOVIE_ID: movie_v, TAG: tag, TIMESTAMP: ts_v}
    return _finish(df, header_ok, _first_reason(checks), typed)


def validate_links(
    lines: DataFrame, *, layout: Layout, columns: Sequence[str] | None = None
) -> DataFrame:
    """Parse and check ``links.csv`` lines into ``movie_id``, ``imdb_id``, ``tmdb_id`` + ``reason``.

    ``imdb_id`` stays a string of digits (leading zeros kept: IMDb ids are ``tt`` + 7
    digits); ``tmdb_id`` may be empty (null: some movies have no TMDB entry). Checks: blank
    line, header, field count, quotes, empty movie or imdb id, ids numeric.
    """
    _require_lines(lines, "validate_links")
    df, (movie, imdb, tmdb), header_ok, checks = _parse(lines, _spec(layout, "links"), 3, columns)
    df = _stage(df, {_value(MOVIE_ID): _as_long(movie), _value(TMDB_ID): _as_long(tmdb)})
    movie_v, tmdb_v = F.col(_value(MOVIE_ID)), F.col(_value(TMDB_ID))
    checks += [
        (_empty(movie) | _empty(imdb), Reason.EMPTY_FIELD),
        *_id_checks(movie, movie_v, "MOVIE"),
        (~imdb.rlike("^[0-9]+$"), Reason.IMDB_NOT_NUMERIC),
        (tmdb.isNotNull() & (tmdb_v.isNull() | (tmdb_v <= 0)), Reason.TMDB_NOT_NUMERIC),
    ]
    typed = {MOVIE_ID: movie_v, IMDB_ID: imdb, TMDB_ID: tmdb_v}
    return _finish(df, header_ok, _first_reason(checks), typed)
