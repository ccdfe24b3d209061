"""The ingest's ratings path in Arrow: a local ratings file read by byte range, indexed,
deduplicated and written as Parquet inside Python tasks, with Spark validating only the
lines that are not plain.

:func:`run_ingest` (:mod:`recspark.pipeline.ingest`) takes this path for the ratings file
when :func:`usable` says it can (``ingest.reader = "auto"``): the same tables come out,
row for row, as from the Spark path (validate, index, deduplicate, write), which reads the
other files, and the ratings file when it is not local or its separator is longer than one
character (ml-1m, ml-10m). Why: Spark turns every line into a row several times (the
validation's expressions, the cache, the shuffle's rows, the Parquet writer); here the
bytes become Arrow columns once. At the ml-32m shape on two cores the whole ingest took
51.1-54.9 s against 36.5-42.1 s for a bare Spark CSV → Parquet of the ratings file, each a
fresh process (1.31-1.40 ×; the Spark path: 3.2 ×; session 28, docs/measurements.md).

The passes:

1. **Scan** (:class:`ArrowRatings.scan`, one task per byte range of
   :data:`recspark.io.byteranges.RANGE_BYTES`): :func:`recspark.io.byteranges.scan_range`
   splits the range's lines and parses the plain ones; each task keeps its accepted rows
   (an Arrow IPC stream) and its other lines, persisted, and reports its line count and
   distinct user and movie ids.
2. **The other lines** get their exact line numbers (the lines of the earlier ranges) and
   go through :func:`recspark.io.validate.validate_ratings` as a DataFrame: their reasons,
   the quarantine, the latin-1 fallback list, and the few of them Spark accepts.
3. **Index tables** from the distinct ids (sorted on the driver: ids in increasing order,
   as :func:`recspark.index.dense_index` numbers them).
4. **Write** (:meth:`ArrowRatings.write`): every accepted row gets its indices and user
   block, one shuffle of Arrow IPC pieces by block, and each block is sorted by (user
   index, movie index), deduplicated (latest timestamp, ties to the later line, as
   :func:`recspark.io.validate.dedupe_ratings`) and written as one Parquet file,
   ``ratings/user_block=<b>/part-<b>.parquet``.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import stats as st
from recspark.arrow import record_batches
from recspark.index import index_table
from recspark.io import byteranges as br
from recspark.io import ingested
from recspark.io import ratings_tasks as rt
from recspark.io.layouts import FileSpec, Layout
from recspark.io.lines import source_uri
from recspark.io.validate import validate_ratings
from recspark.schema import (
    LATIN1_FALLBACK,
    LINE_NUMBER,
    MOVIE_ID,
    MOVIE_IDX,
    N_RATINGS,
    RATING,
    RAW_LINE,
    REASON,
    SOURCE_FILE,
    TIMESTAMP,
    USER_ID,
    USER_IDX,
)

_logger = logging.getLogger(__name__)

_LINES_SCHEMA = T.StructType(
    [
        T.StructField(SOURCE_FILE, T.StringType(), False),
        T.StructField(LINE_NUMBER, T.LongType(), False),
        T.StructField(RAW_LINE, T.StringType(), False),
        T.StructField(LATIN1_FALLBACK, T.BooleanType(), False),
    ]
)


def local_dir(path: str) -> str | None:
    """The local folder behind ``path`` (a plain path or a ``file:`` URI), or None for
    another file system."""
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    return path if parsed.scheme == "" else None


def usable(spec: FileSpec, path: str, out: str) -> str | None:
    """The local ratings file when this path can read ``path`` and write into ``out``:
    both local, a one-character ASCII separator other than a digit, ``.`` or a line end.
    None otherwise."""
    sep = spec.separator
    if len(sep) != 1 or not sep.isascii() or sep in "0123456789.\r\n":
        return None
    if local_dir(out) is None:
        return None
    return br.local_path(path)


class ArrowRatings:
    """One ratings file through the Arrow path (module docstring). Driver-side.

    ``path``: the local file (from :func:`usable`); ``columns``: its header in its own
    order (:func:`recspark.io.layouts.match_header`, None without a header); ``now``:
    epoch seconds, the latest valid timestamp; ``range_bytes``: bytes per scan task
    (default :data:`recspark.io.byteranges.RANGE_BYTES`). Call :meth:`scan`, then
    :meth:`write`, then :meth:`release`.
    """

    def __init__(
        self,
        spark: SparkSession,
        *,
        path: str,
        spec: FileSpec,
        columns: Sequence[str] | None,
        layout: Layout,
        now: int,
        range_bytes: int | None = None,
    ) -> None:
        self.spark = spark
        self.sc = spark.sparkContext
        self.path, self.spec, self.layout = path, spec, layout
        self.columns = None if columns is None else tuple(columns)
        self.now = int(now)
        self.range_bytes = br.RANGE_BYTES if range_bytes is None else range_bytes
        self._persisted: list[Any] = []

    # ------------------------------------------------------------------ pass 1

    def _format(self) -> br.RatingsFormat:
        names = self.spec.header or ("user", "movie", "rating", "timestamp")
        file_order = self.columns or names
        order = tuple(list(file_order).index(name) for name in names)
        s = self.layout.scale
        return br.RatingsFormat(
            self.spec.separator, order, self.spec.header is not None, s.min, s.max, s.step, self.now
        )

    def scan(self) -> DataFrame:
        """Pass 1 and the other lines' validation. Returns the other lines validated
        (``validate_ratings``' columns, exact line numbers, persisted); sets
        :attr:`plain_accepted` (rows accepted without Spark)."""
        size = os.path.getsize(self.path)
        ranges = br.byte_ranges(size, self.range_bytes)
        fmt, path = self._format(), self.path

        def task(item: tuple[int, int, int]) -> tuple:
            return rt.scan_task(item, path=path, size=size, fmt=fmt)

        self.scanned = self._persist(self.sc.parallelize(ranges, len(ranges)).map(task))
        # the first action: scans and caches, and brings back only the small fields
        meta = self.scanned.map(
            functools.partial(rt.summary, limit=rt.OTHERS_WITH_SUMMARY)
        ).collect()
        meta.sort(key=lambda r: r.rid)
        self.bases = dict(
            zip([r.rid for r in meta], np.cumsum([0] + [r.n_lines for r in meta])[:-1].tolist())
        )
        self.plain_accepted = sum(r.accepted for r in meta)
        self.plain_users = np.unique(
            np.concatenate([r.users for r in meta] or [np.zeros(0, np.int64)])
        )
        self.plain_movies = np.unique(
            np.concatenate([r.movies for r in meta] or [np.zeros(0, np.int64)])
        )
        # The file's URI as the quarantine spells it, looked up only now: the scan's tasks
        # start before the session's first (cold) Spark SQL plan.
        source, encoding = source_uri(self.spark, self.path), self.spec.encoding
        if all(r.other_lines is not None for r in meta):  # the usual case: no pass over the cache
            rows = [
                row
                for r in meta
                for row in rt.numbered_lines(r.rid, *r.other_lines, self.bases, source, encoding)
            ]
            lines = self.spark.createDataFrame(rows, _LINES_SCHEMA)
        else:
            bases = self.sc.broadcast(self.bases)
            numbered = self.scanned.flatMap(
                lambda r: rt.numbered_lines(r[0], r[2], r[3], bases.value, source, encoding)
            )
            lines = self.spark.createDataFrame(numbered, _LINES_SCHEMA)
        others = validate_ratings(lines, layout=self.layout, now=self.now, columns=self.columns)
        self.others = self._persist(others.persist(StorageLevel.MEMORY_AND_DISK))
        return self.others

    def _persist(self, data: Any) -> Any:
        if isinstance(data, RDD):
            data = data.persist(StorageLevel.MEMORY_AND_DISK)
        self._persisted.append(data)
        return data

    # ------------------------------------------------------------------ index tables, write

    def write(
        self, out: str, *, user_blocks: int, others_accepted: int
    ) -> tuple[int, int, st.Profile]:
        """Write the index tables and the deduplicated, indexed ratings into the ingest
        folder ``out`` (local); return (accepted rows, distinct pairs written, the written
        ratings' :class:`recspark.stats.Profile`). ``others_accepted``: how many of the
        other lines Spark accepted (none: no Spark job over them)."""
        accepted = self.others.where(F.col(REASON).isNull()).select(
            USER_ID, MOVIE_ID, RATING, TIMESTAMP, LINE_NUMBER
        )
        users, movies = self.plain_users, self.plain_movies
        if others_accepted:
            users, movies = (
                np.union1d(
                    plain, accepted.select(col).distinct().toPandas()[col].to_numpy(np.int64)
                )
                for plain, col in ((users, USER_ID), (movies, MOVIE_ID))
            )
        for ids, id_col, idx_col, sub in (
            (users, USER_ID, USER_IDX, ingested.USER_INDEX_DIR),
            (movies, MOVIE_ID, MOVIE_IDX, ingested.MOVIE_INDEX_DIR),
        ):
            table = index_table(self.spark, ids, id_col=id_col, idx_col=idx_col)
            ingested.write_table(table, out, sub, single_file=True)
        folder = ingested.path(local_dir(out) or out, ingested.RATINGS_DIR)
        os.makedirs(folder, exist_ok=True)
        shared = self.sc.broadcast((rt.IdIndex(users), rt.IdIndex(movies), self.bases))
        n = user_blocks

        def plain_pieces(r: tuple) -> Iterator[tuple[int, bytes]]:
            users, movies, bases = shared.value
            table = rt.read_ipc(r[1])
            lines = table.column("line").to_numpy().astype(np.int64) + (bases[r[0]] + 1)
            yield from rt.block_pieces(table, lines, users, movies, n)

        def other_pieces(batch: pa.RecordBatch) -> Iterator[tuple[int, bytes]]:
            users, movies, _ = shared.value
            table = pa.Table.from_batches([batch])
            yield from rt.block_pieces(
                table, table.column(LINE_NUMBER).to_numpy(), users, movies, n
            )

        def write_block(block: int, pieces: Iterator[tuple[int, bytes]]) -> Iterator[rt.Written]:
            users, movies, _ = shared.value
            yield rt.write_block(block, [p for _, p in pieces], users.ids, movies.ids, folder)

        pieces = self.scanned.flatMap(plain_pieces)
        if others_accepted:
            pieces = pieces.union(record_batches(accepted).flatMap(other_pieces))
        written = pieces.partitionBy(n, lambda b: b).mapPartitionsWithIndex(write_block).collect()
        open(os.path.join(folder, "_SUCCESS"), "wb").close()
        shared.unpersist()
        columns = (RATING, N_RATINGS, st.FIRST_TIMESTAMP, st.LAST_TIMESTAMP)
        profile = st.profile_from_counts(
            pd.concat(
                [pd.DataFrame(dict(zip(columns, w.by_value))) for w in written], ignore_index=True
            ),
            np.concatenate([w.user_counts for w in written]),
            np.sum([w.movie_counts for w in written], axis=0),
        )
        return sum(w.rows for w in written), sum(w.pairs for w in written), profile

    def release(self) -> None:
        """Unpersist the scan and the validated other lines."""
        for data in self._persisted:
            data.unpersist()
