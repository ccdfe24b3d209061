"""Raw text files as rows of (file, exact line number, line), read in Spark.

:func:`read_lines` is what the validation stages (:mod:`recspark.io.validate`) and the
re-scoring job's pairs input read: each row keeps its file and exact 1-based line number,
so a quarantined row can be found in the file. It scans the files twice (once to count).

The ingest reads a large file once instead: :func:`scan_lines` keeps where each line sits
(its input split and a row id), the validation and the first pass over the cached result
count rows per split (:func:`line_bases` turns the counts into exact line numbers, checking
that every split's rows are all there) and :func:`number_lines` adds the numbers later.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.errors import ConfigError
from recspark.io.layouts import ENCODINGS
from recspark.schema import (
    LATIN1_FALLBACK,
    LINE_NUMBER,
    RAW_LINE,
    ROW_ID,
    SOURCE_FILE,
    SPLIT_START,
)

# Working columns that never leave this module's functions.
_VALUE, _BLOCK, _ROW_ID, _MIN_ID, _N, _OFFSET, _BASE = (
    "_value",
    "_block",
    "_row_id",
    "_min_id",
    "_n",
    "_offset",
    "_base",
)


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
    that are not valid UTF-8 are decoded as latin-1 and flagged in the boolean column
    ``latin1_fallback``, so the fallback is never silent) or ``latin-1`` (never flagged).
    """
    _check_encoding(encoding)
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
    text, fallback = _decoded(F.col(_VALUE), encoding)
    return raw.join(F.broadcast(blocks), [SOURCE_FILE, _BLOCK]).select(
        F.col(SOURCE_FILE),
        (F.col(_OFFSET) + F.col(_ROW_ID) - F.col(_MIN_ID) + 1).alias(LINE_NUMBER),
        text.alias(RAW_LINE),
        fallback.alias(LATIN1_FALLBACK),
    )


def _check_encoding(encoding: str) -> None:
    """Raise ConfigError unless ``encoding`` is one a layout may declare."""
    if encoding not in ENCODINGS:
        raise ConfigError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


def _decoded(value, encoding: str):
    """(the line as text, the latin-1 fallback flag) of a raw ``value`` column; raises
    ConfigError for an unknown ``encoding``."""
    _check_encoding(encoding)
    latin1 = F.decode(value.cast("binary"), "ISO-8859-1")
    if encoding == "latin-1":
        return latin1, F.lit(False)
    fallback = ~F.is_valid_utf8(value)
    return F.when(fallback, latin1).otherwise(value), fallback


def source_uri(spark: SparkSession, path: str) -> str:
    """The URI Spark reports for the file at ``path`` (``input_file_name``), e.g.
    ``file:///data/ratings.csv`` (special characters percent-encoded). No Spark job: the
    file index's own listing (``DataFrame.inputFiles``), which spells it the same way."""
    files = spark.read.text(path).inputFiles()
    return files[0] if files else path


def scan_lines(
    spark: SparkSession, path: str, *, encoding: str = "utf-8", source: str | None = None
) -> DataFrame:
    """One text file's lines in a single scan, numbered later by :func:`number_lines`.

    Columns: ``source_file`` (the file's URI as Spark reports it, the same for every row),
    ``line_number`` (1 on the file's first line, 0 on the others until they are numbered:
    enough for the validation's header checks), ``raw_line`` and ``latin1_fallback`` as in
    :func:`read_lines`, ``_split_start`` (byte offset of the line's input split) and
    ``_row_id`` (``monotonically_increasing_id``: consecutive within a Spark partition).
    The first line is the first row of partition 0 (row id 0, split start 0): Spark puts
    the first split of a single file first; :func:`line_bases` checks it. ``source``: the
    file's :func:`source_uri` when the caller knows it.
    Raises ConfigError for an unknown encoding.
    """
    text, fallback = _decoded(F.col("value"), encoding)  # spark.read.text's column
    source = source_uri(spark, path) if source is None else source
    raw = spark.read.text(path)
    start, row = F.input_file_block_start(), F.monotonically_increasing_id()
    return raw.select(
        F.lit(source).alias(SOURCE_FILE),
        F.when((start == 0) & (row == 0), F.lit(1))
        .otherwise(F.lit(0))
        .cast("long")
        .alias(LINE_NUMBER),
        text.alias(RAW_LINE),
        fallback.alias(LATIN1_FALLBACK),
        start.alias(SPLIT_START),
        row.alias(ROW_ID),
    )


def line_bases(
    splits: Iterable[tuple[int, int, int, int]], *, source: str = "the file"
) -> dict[int, int]:
    """Split start -> base, so that ``line_number = base + _row_id`` for every row of a
    :func:`scan_lines` frame.

    ``splits``: per input split, (split start, rows, smallest row id, largest row id) of the
    rows still there after the scan's own first line may have been dropped (a valid header:
    the validation drops it), e.g. counted while the validated rows are cached. A split holds
    lines ``first .. largest`` of its row ids, where ``first`` is 0 for the split at offset 0
    and its smallest row id otherwise; a split at offset 0 missing from ``splits`` held just
    the dropped first line. Splits are numbered in file order:

        base(split) = (lines in the earlier splits) - first + 1.

    Raises RuntimeError when a split's rows are not consecutive row ids (then its partition
    held more than this split: line numbers would be wrong), naming ``source``.
    """
    bases: dict[int, int] = {}
    before = 0
    rows = sorted(splits)
    if rows and rows[0][0] != 0:
        before = 1  # the split at offset 0 held only the dropped first line
    for start, n, low, high in rows:
        first = 0 if start == 0 else low
        lines = high - first + 1
        dropped = 1 if start == 0 and low == 1 else 0
        if n + dropped != lines or (start == 0 and low > 1):
            raise RuntimeError(
                f"line numbers of {source}: the split at byte {start} has {n} row(s) but row "
                f"ids {low}..{high}; a Spark partition held more than this split (a bug)"
            )
        bases[int(start)] = before - first + 1
        before += lines
    return bases


_WHERE = (SPLIT_START, ROW_ID)


def number_lines(frame: DataFrame, bases: dict[int, int], *, source: str) -> DataFrame:
    """``frame`` (from :func:`scan_lines`, any columns derived from it kept, ``source_file``
    and ``line_number`` possibly dropped) with ``source_file`` = ``source`` and the exact
    ``line_number`` of every row first, without ``_split_start`` and ``_row_id``; ``bases``
    from :func:`line_bases`. A broadcast join on the split start (a few rows)."""
    spark = frame.sparkSession
    table = spark.createDataFrame(
        pd.DataFrame({SPLIT_START: list(bases), _BASE: list(bases.values())}, dtype="int64"),
        T.StructType(
            [T.StructField(SPLIT_START, T.LongType()), T.StructField(_BASE, T.LongType())]
        ),
    )
    line = (F.col(_BASE) + F.col(ROW_ID)).alias(LINE_NUMBER)
    rest = [c for c in frame.columns if c not in (SOURCE_FILE, LINE_NUMBER, *_WHERE)]
    return frame.join(F.broadcast(table), SPLIT_START).select(
        F.lit(source).alias(SOURCE_FILE), line, *rest
    )
