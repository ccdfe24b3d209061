"""MovieLens file layouts: one :class:`Layout` entry per family of releases.

Each entry says how to recognise a folder of that family (files that must be present, and
files that must be absent), how its files are spelled (name, separator, quoting, header,
encoding) and the rating scale of its data set. :func:`detect_layout` loops over
:data:`LAYOUTS` in order and picks the first entry whose rule matches the folder; the
validation stages (:mod:`recspark.io.validate`) read every detail from the entry. A new
layout is one more entry here.

Supported layouts:

- ``csv``: ml-latest-small, ml-25m, ml-32m. ratings.csv, movies.csv, tags.csv, links.csv;
  ``,``-separated, one header row, UTF-8, quoted titles and tags; half stars 0.5-5.
- ``ml-10m``: ratings.dat, movies.dat, tags.dat; ``::``-separated, no header; half stars.
- ``ml-1m``: ratings.dat, movies.dat (latin-1), users.dat; ``::``; whole stars 1-5.
- ``ml-100k``: u.data (tab-separated), u.item (``|``-separated, latin-1, genre flags);
  whole stars 1-5.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import SparkSession

from recspark.errors import ConfigError, DataNotFoundError, HeaderError
from recspark.io import storage
from recspark.schema import ML_LINKS_HEADER, ML_MOVIES_HEADER, ML_RATINGS_HEADER, ML_TAGS_HEADER

_logger = logging.getLogger(__name__)

#: Encodings a layout's file may declare (see :func:`recspark.io.validate.read_lines`).
ENCODINGS = ("utf-8", "latin-1")


@dataclass(frozen=True)
class RatingScale:
    """The ratings a data set allows: multiples of ``step`` in [``min``, ``max``].

    Half stars (ml-latest, ml-10m) are ``RatingScale(0.5, 5.0, 0.5)``; whole stars (ml-1m,
    ml-100k) ``RatingScale(1.0, 5.0, 1.0)``.
    """

    min: float
    max: float
    step: float

    @property
    def whole_stars(self) -> bool:
        """True when only whole numbers are on the grid (step 1)."""
        return self.step == 1.0


HALF_STARS = RatingScale(0.5, 5.0, 0.5)
WHOLE_STARS = RatingScale(1.0, 5.0, 1.0)


@dataclass(frozen=True)
class FileSpec:
    """How one file of a layout is spelled.

    ``separator`` is literal. ``quoted``: fields follow RFC 4180 (a field may be quoted,
    ``""`` escapes a quote), parsed by Spark's CSV parser; otherwise lines are split on the
    separator. ``header``: the column names of the expected first line (None: no header).
    ``encoding``: ``utf-8`` keeps valid UTF-8 lines and decodes any other line as latin-1;
    ``latin-1`` decodes every line so. ``genre_flags`` (movie files only): the genre names of
    the trailing 0/1 flag columns that replace a genres field (ml-100k's u.item).
    """

    name: str
    separator: str
    quoted: bool = False
    header: tuple[str, ...] | None = None
    encoding: str = "utf-8"
    genre_flags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"{self.name}: encoding must be one of {ENCODINGS}")

    @property
    def header_line(self) -> str | None:
        """The expected first line, or None when the file has no header."""
        return None if self.header is None else self.separator.join(self.header)


@dataclass(frozen=True)
class Layout:
    """One family of MovieLens releases: its detection rule, files and rating scale.

    A folder matches when it holds every name in ``requires`` and none in ``excludes``.
    ``movies``, ``tags`` and ``links`` set to None do not exist in the layout (their
    outputs are written empty).
    """

    name: str
    requires: tuple[str, ...]
    ratings: FileSpec
    scale: RatingScale
    movies: FileSpec | None = None
    tags: FileSpec | None = None
    links: FileSpec | None = None
    excludes: tuple[str, ...] = ()

    def matches(self, names: set[str]) -> bool:
        """True when a folder holding the files ``names`` is of this layout."""
        return set(self.requires) <= names and not names & set(self.excludes)


#: The 19 genre flags of ml-100k's u.item, in column order (from u.genre).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: Every layout, in detection order (the first whose rule matches wins).
LAYOUTS: dict[str, Layout] = {
    "csv": Layout(
        "csv",
        requires=("ratings.csv",),
        # Ratings are never quoted: a plain split is faster than the CSV parser.
        ratings=FileSpec("ratings.csv", ",", header=ML_RATINGS_HEADER),
        scale=HALF_STARS,
        movies=FileSpec("movies.csv", ",", quoted=True, header=ML_MOVIES_HEADER),
        tags=FileSpec("tags.csv", ",", quoted=True, header=ML_TAGS_HEADER),
        links=FileSpec("links.csv", ",", quoted=True, header=ML_LINKS_HEADER),
    ),
    # ml-1m ships users.dat, ml-10m does not.
    "ml-1m": Layout(
        "ml-1m",
        requires=("ratings.dat", "users.dat"),
        ratings=FileSpec("ratings.dat", "::"),
        scale=WHOLE_STARS,
        movies=FileSpec("movies.dat", "::", encoding="latin-1"),
    ),
    "ml-10m": Layout(
        "ml-10m",
        requires=("ratings.dat",),
        excludes=("users.dat",),
        ratings=FileSpec("ratings.dat", "::"),
        scale=HALF_STARS,
        movies=FileSpec("movies.dat", "::"),
        tags=FileSpec("tags.dat", "::"),
    ),
    "ml-100k": Layout(
        "ml-100k",
        requires=("u.data",),
        ratings=FileSpec("u.data", "\t"),
        scale=WHOLE_STARS,
        movies=FileSpec("u.item", "|", encoding="latin-1", genre_flags=ML100K_GENRES),
    ),
}


def ratings_files() -> tuple[str, ...]:
    """The ratings file names of every layout: one of them marks a MovieLens folder."""
    return tuple(dict.fromkeys(layout.ratings.name for layout in LAYOUTS.values()))


def detect_layout(spark: SparkSession, data_dir: str, layout: str = "auto") -> Layout:
    """The layout of ``data_dir``: the configured one, or (``auto``) the first that matches.

    Raises :class:`ConfigError` for an unknown layout name and :class:`DataNotFoundError`
    when no layout matches or the chosen layout's ratings file is missing.
    """
    names = set(storage.list_dir(spark, data_dir))
    found = ", ".join(sorted(names)) or "nothing"
    if layout != "auto":
        if layout not in LAYOUTS:
            raise ConfigError(
                f"data.layout = {layout!r} is unknown; choose auto or one of {', '.join(LAYOUTS)}"
            )
        chosen = LAYOUTS[layout]
    else:
        chosen = next((entry for entry in LAYOUTS.values() if entry.matches(names)), None)
        if chosen is None:
            raise DataNotFoundError(
                f"no MovieLens ratings file in {data_dir} (found: {found}); expected "
                f"{', '.join(ratings_files())}. Set data.dir to the folder that holds them, "
                f"or set data.layout explicitly."
            )
    if chosen.ratings.name not in names:
        raise DataNotFoundError(
            f"data.layout = {chosen.name} expects {chosen.ratings.name} in {data_dir}, which has "
            f"{', '.join(sorted(names)) or 'no files'}; use data.layout = auto or fix data.dir."
        )
    _logger.info("layout %s in %s", chosen.name, data_dir)
    return chosen


def match_header(spec: FileSpec, first_line: str | None, where: str) -> tuple[str, ...] | None:
    """The file's columns, by name, from its first line: the header in the file's order.

    A file without a header in its layout gives None. The first line (a UTF-8 byte-order
    mark and surrounding spaces and quotes stripped) must hold the layout's column names,
    in any order; the validation stages then take each column from where the file has it.
    Raises :class:`HeaderError` naming the file, the expected and the found line otherwise,
    with the likely cause (a missing header when line 1 looks like data, another separator).
    """
    if spec.header is None:
        return None
    expected = spec.header_line
    line = (first_line or "").lstrip("\ufeff").strip()
    found = tuple(name.strip().strip('"') for name in line.split(spec.separator))
    if sorted(found) == sorted(spec.header):
        if found != spec.header:
            _logger.info("%s: columns in another order (%s), mapped by name", where, line)
        return found
    if first_line is None:
        hint = "the file is empty"
    elif found[0].lstrip("+-").replace(".", "", 1).isdigit():
        hint = "line 1 looks like data: the header is missing (add it as the first line)"
    elif spec.separator not in line and any(sep in line for sep in (";", "\t", "|")):
        hint = f"the file seems to use another separator than {spec.separator!r}"
    else:
        hint = "a column is missing, renamed or extra"
    raise HeaderError(
        f"{where}: bad header: expected {expected!r} (columns in any order), found {line!r}: "
        f"{hint}. Fix the file's first line, or set data.layout if the layout is wrong."
    )
