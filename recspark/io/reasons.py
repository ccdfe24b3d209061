"""Quarantine reasons: one fixed string per kind of malformed row, with its likely cause.

:class:`Reason` holds the strings the validation stages (:mod:`recspark.io.validate`) and
the re-scoring job's pairs input write into the ``reason`` column; :data:`CAUSES` says, for
each, what is wrong and what usually causes it. README.md's table of reasons is
:func:`markdown_table` (a test checks that the two agree), so the documentation cannot
drift from what the code emits.
"""

from __future__ import annotations


class Reason:
    """Quarantine reasons: one fixed string per kind of problem (the first one found wins)."""

    BLANK_LINE = "blank line"
    BAD_HEADER = "bad header"
    REPEATED_HEADER = "repeated header line"
    UNBALANCED_QUOTES = "unbalanced quotes"
    WRONG_SEPARATOR = "wrong separator"
    FIELD_COUNT = "wrong field count"
    EMPTY_FIELD = "empty field"
    USER_NOT_NUMERIC = "non-numeric user id"
    USER_NOT_INTEGER = "non-integer user id"
    USER_NOT_POSITIVE = "non-positive user id"
    MOVIE_NOT_NUMERIC = "non-numeric movie id"
    MOVIE_NOT_INTEGER = "non-integer movie id"
    MOVIE_NOT_POSITIVE = "non-positive movie id"
    RATING_NOT_NUMERIC = "non-numeric rating"
    RATING_OUT_OF_SCALE = "rating outside the scale"
    RATING_OFF_HALF_STARS = "rating off the half-star grid"
    RATING_OFF_WHOLE_STARS = "rating off the integer grid"
    TIMESTAMP_NOT_NUMERIC = "non-numeric timestamp"
    TIMESTAMP_NOT_INTEGER = "non-integer timestamp"
    TIMESTAMP_MILLISECONDS = "timestamp in milliseconds"
    TIMESTAMP_OUT_OF_RANGE = "timestamp out of range"
    IMDB_NOT_NUMERIC = "non-numeric imdb id"
    TMDB_NOT_NUMERIC = "non-numeric tmdb id"
    GENRE_FLAGS = "malformed genre flags"


#: Reason -> what the row looks like and its likely cause, in the order the checks run.
CAUSES: dict[str, str] = {
    Reason.BLANK_LINE: "the line is empty or only spaces (often a trailing blank line)",
    Reason.BAD_HEADER: (
        "line 1 is not the layout's header (only when validating without ingest's header "
        "check, which stops on a bad header; the header may be missing)"
    ),
    Reason.REPEATED_HEADER: "the header appears again below line 1 (files concatenated)",
    Reason.UNBALANCED_QUOTES: (
        'an odd number of `"` characters: a quote opened and never closed (a truncated or '
        "hand-edited line)"
    ),
    Reason.WRONG_SEPARATOR: (
        "a single field that holds `;`, a tab or `|`: the file uses another separator "
        "(a spreadsheet export with `;` separators)"
    ),
    Reason.FIELD_COUNT: "too few or too many fields (a field lost, or a separator inside one)",
    Reason.EMPTY_FIELD: "a required field is empty",
    Reason.USER_NOT_NUMERIC: "the user id is not a number",
    Reason.USER_NOT_INTEGER: "the user id is a number but not an integer (e.g. `1.5`)",
    Reason.USER_NOT_POSITIVE: "the user id is 0 or negative",
    Reason.MOVIE_NOT_NUMERIC: "the movie id is not a number",
    Reason.MOVIE_NOT_INTEGER: "the movie id is a number but not an integer (e.g. `2.0`)",
    Reason.MOVIE_NOT_POSITIVE: "the movie id is 0 or negative",
    Reason.RATING_NOT_NUMERIC: "the rating is not a plain decimal number",
    Reason.RATING_OUT_OF_SCALE: (
        "the rating is outside the layout's scale (e.g. 0-10 ratings, or 0 for "
        "'not rated'; set data.layout if the layout was guessed wrong)"
    ),
    Reason.RATING_OFF_HALF_STARS: "the rating is not a multiple of 0.5 (half-star layouts)",
    Reason.RATING_OFF_WHOLE_STARS: "the rating is not a whole number (whole-star layouts)",
    Reason.TIMESTAMP_NOT_NUMERIC: "the timestamp is not a number (a date such as 2020-01-31?)",
    Reason.TIMESTAMP_NOT_INTEGER: "the timestamp is a number but not an integer of seconds",
    Reason.TIMESTAMP_MILLISECONDS: (
        "the timestamp is in the future as seconds but a valid date as milliseconds: "
        "the file stores epoch milliseconds; divide by 1000"
    ),
    Reason.TIMESTAMP_OUT_OF_RANGE: "the timestamp is negative or after the ingest time",
    Reason.IMDB_NOT_NUMERIC: "the imdb id is not digits (links.csv keeps them without `tt`)",
    Reason.TMDB_NOT_NUMERIC: "the tmdb id is not a positive integer",
    Reason.GENRE_FLAGS: "a genre flag of ml-100k's u.item is not 0 or 1",
}


def all_reasons() -> list[str]:
    """Every reason string :class:`Reason` defines, in definition order."""
    return [v for k, v in vars(Reason).items() if k.isupper()]


def markdown_table() -> str:
    """README.md's table of quarantine reasons (``| reason | meaning and likely cause |``)."""
    rows = [f"| `{reason}` | {cause} |" for reason, cause in CAUSES.items()]
    return "\n".join(["| reason | meaning and likely cause |", "| --- | --- |", *rows])
