"""Raw text files as rows of (file, exact line number, line), read in Spark.

:func:`read_lines` is what every validation stage (:mod:`recspark.io.validate`) and the
re-scoring job's pairs input read: each row keeps its file and exact 1-based line number,
so a quarantined row can be found in the file.
"""

from __future__ import annotations

from typing import Sequence

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from recspark.errors import ConfigError
from recspark.io.layouts import ENCODINGS
from recspark.schema import LATIN1_FALLBACK, LINE_NUMBER, RAW_LINE, SOURCE_FILE

# Working columns that never leave this module's functions.
_VALUE, _BLOCK, _ROW_ID, _MIN_ID, _N, _OFFSET = (
    "_value",
    "_block",
    "_row_id",
    "_min_id",
    "_n",
    "_offset",
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
    if encoding not in ENCODINGS:
        raise ConfigError(f"read_lines: encoding must be one of {ENCODINGS}, got {encoding!r}")
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
    fallback = F.lit(False) if encoding == "latin-1" else ~F.is_valid_utf8(value)
    text = latin1 if encoding == "latin-1" else F.when(fallback, latin1).otherwise(value)
    return raw.join(F.broadcast(blocks), [SOURCE_FILE, _BLOCK]).select(
        F.col(SOURCE_FILE),
        (F.col(_OFFSET) + F.col(_ROW_ID) - F.col(_MIN_ID) + 1).alias(LINE_NUMBER),
        text.alias(RAW_LINE),
        fallback.alias(LATIN1_FALLBACK),
    )
