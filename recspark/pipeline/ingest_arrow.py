"""The ingest's ratings path in Arrow: a local ratings file read by byte range, indexed,
deduplicated and written as Parquet inside Python tasks, with Spark validating only the
lines that are not plain.

:func:`run_ingest` (:mod:`recspark.pipeline.ingest`) takes this path for the ratings file
when :func:`usable` says it can (``ingest.reader = "auto"``): the same tables come out,
row for row, as from the Spark path (validate, index, deduplicate, write), which reads the
other files, and the ratings file when it is not local or its separator is longer than one
character (ml-1m, ml-10m). Why: Spark turns every line into a row several times (the
validation's expressions, the cache, the shuffle's rows, the Parquet writer); here the
bytes become Arrow columns once. At the ml-32m shape on two cores the ratings path took
37 s in one process against 34 s for a bare Spark CSV → Parquet of the same file
(session 28, docs/measurements.md).

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

import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urlparse

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import stats as st
from recspark.arrow import record_batches
from recspark.index import index_table
from recspark.io import byteranges as br
from recspark.io import ingested
from recspark.io.layouts import FileSpec, Layout
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

_BY_VALUE = (RATING, N_RATINGS, st.FIRST_TIMESTAMP, st.LAST_TIMESTAMP)
_LINES_SCHEMA = T.StructType(
    [
        T.StructField(SOURCE_FILE, T.StringType(), False),
        T.StructField(LINE_NUMBER, T.LongType(), False),
        T.StructField(RAW_LINE, T.StringType(), False),
        T.StructField(LATIN1_FALLBACK, T.BooleanType(), False),
    ]
)
#: The written ratings' columns (user_block is the folder), not null.
_PARQUET_SCHEMA = pa.schema(
    [
        pa.field(USER_ID, pa.int64(), False),
        pa.field(MOVIE_ID, pa.int64(), False),
        pa.field(RATING, pa.float64(), False),
        pa.field(TIMESTAMP, pa.int64(), False),
        pa.field(USER_IDX, pa.int32(), False),
        pa.field(MOVIE_IDX, pa.int32(), False),
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
    both local, a one-character separator other than a digit or ``.``. None otherwise."""
    if len(spec.separator) != 1 or spec.separator in "0123456789.\r\n":
        return None
    if local_dir(out) is None:
        return None
    return br.local_path(path)


@dataclass(frozen=True)
class _Range:
    """What the driver learns of one scanned range."""

    rid: int
    n_lines: int
    accepted: int
    others: int
    users: np.ndarray
    movies: np.ndarray


def _scan_task(item: tuple[int, int, int], *, path: str, size: int, fmt: br.RatingsFormat) -> tuple:
    """One range: (rid, accepted rows as an IPC stream, other line numbers, their bytes,
    line count, distinct users, distinct movies, accepted rows)."""
    rid, start, end = item
    scan = br.scan_range(path, rid, start, end, size, fmt)
    acc = scan.accepted
    return (
        rid,
        _ipc(acc, _LZ4),
        scan.other_lines,
        scan.other_bytes,
        scan.n_lines,
        distinct_ids(acc.column(USER_ID).to_numpy()),
        distinct_ids(acc.column(MOVIE_ID).to_numpy()),
        acc.num_rows,
    )


#: The cached scan is an LZ4-compressed Arrow stream: ratings columns shrink ~2.7 × (49.6 to
#: 18.3 MB per 32 MB range of ml-32m) for 0.08 s per range, and each of the two passes over
#: the cache moves a third of the bytes between the JVM and Python. The shuffled pieces are
#: not compressed here: Spark's shuffle compresses them (``spark.shuffle.compress``).
_LZ4 = pa.ipc.IpcWriteOptions(compression="lz4")


def distinct_ids(ids: np.ndarray) -> np.ndarray:
    """The distinct values of positive int64 ``ids``, increasing: a presence bitmap when the
    largest id is small next to the count (MovieLens ids: 0.01 s instead of 0.09 s for
    1.2M ids by hashing), else ``np.unique``."""
    if ids.size == 0:
        return ids.astype(np.int64)
    top = int(ids.max())
    if top > 8 * ids.size + (1 << 20):
        return np.unique(ids)
    seen = np.zeros(top + 1, dtype=bool)
    seen[ids] = True
    return np.flatnonzero(seen).astype(np.int64)


def _ipc(table: pa.Table, options: pa.ipc.IpcWriteOptions | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _read_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def _decode(raw: bytes, encoding: str) -> tuple[str, bool]:
    """A line's text and latin-1 fallback flag, as :func:`recspark.io.lines.scan_lines`
    decodes it: UTF-8, or latin-1 (flagged) when it is not valid UTF-8; latin-1 always
    (never flagged) for a latin-1 file."""
    if encoding == "latin-1":
        return raw.decode("latin-1"), False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


class ArrowRatings:
    """One ratings file through the Arrow path (module docstring). Driver-side.

    ``path``: the local file (from :func:`usable`); ``source``: its URI as the quarantine
    spells it (:func:`recspark.io.lines.source_uri`); ``columns``: its header in its own
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
        source: str,
        spec: FileSpec,
        columns: Sequence[str] | None,
        layout: Layout,
        now: int,
        range_bytes: int | None = None,
    ) -> None:
        self.spark = spark
        self.sc = spark.sparkContext
        self.path, self.source, self.spec, self.layout = path, source, spec, layout
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
            return _scan_task(item, path=path, size=size, fmt=fmt)

        self.scanned = self._persist(self.sc.parallelize(ranges, len(ranges)).map(task))
        # the first action: scans and caches, and brings back only the small fields
        meta = self.scanned.map(lambda r: _Range(r[0], r[4], r[7], len(r[3]), r[5], r[6])).collect()
        meta.sort(key=lambda r: r.rid)
        self.bases = dict(zip([r.rid for r in meta], np.cumsum([0] + [r.n_lines for r in meta])[:-1].tolist()))
        self.plain_accepted = sum(r.accepted for r in meta)
        self.plain_users = np.unique(np.concatenate([r.users for r in meta] or [np.zeros(0, np.int64)]))
        self.plain_movies = np.unique(np.concatenate([r.movies for r in meta] or [np.zeros(0, np.int64)]))
        bases = self.sc.broadcast(self.bases)
        source, encoding = self.source, self.spec.encoding

        def numbered(r: tuple) -> Iterator[tuple[str, int, str, bool]]:
            base = bases.value[r[0]]
            for local, raw in zip(r[2].tolist(), r[3]):
                text, fallback = _decode(raw, encoding)
                yield source, base + local + 1, text, fallback

        lines = self.spark.createDataFrame(self.scanned.flatMap(numbered), _LINES_SCHEMA)
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
                np.union1d(plain, accepted.select(col).distinct().toPandas()[col].to_numpy(np.int64))
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
        shared = self.sc.broadcast((IdIndex(users), IdIndex(movies), self.bases))
        n = user_blocks

        def plain_pieces(r: tuple) -> Iterator[tuple[int, bytes]]:
            users, movies, bases = shared.value
            table = _read_ipc(r[1])
            lines = table.column("line").to_numpy() + (bases[r[0]] + 1)
            yield from _block_pieces(table, lines, users, movies, n)

        def other_pieces(batch: pa.RecordBatch) -> Iterator[tuple[int, bytes]]:
            users, movies, _ = shared.value
            table = pa.Table.from_batches([batch])
            yield from _block_pieces(table, table.column(LINE_NUMBER).to_numpy(), users, movies, n)

        def write_block(block: int, pieces: Iterator[tuple[int, bytes]]) -> Iterator[_Written]:
            users, movies, _ = shared.value
            yield _write_block(block, [p for _, p in pieces], users.ids, movies.ids, folder)

        pieces = self.scanned.flatMap(plain_pieces)
        if others_accepted:
            pieces = pieces.union(record_batches(accepted).flatMap(other_pieces))
        written = pieces.partitionBy(n, lambda b: b).mapPartitionsWithIndex(write_block).collect()
        open(os.path.join(folder, "_SUCCESS"), "wb").close()
        shared.unpersist()
        profile = st.profile_from_counts(
            pd.concat([w.by_value for w in written], ignore_index=True),
            np.concatenate([w.user_counts for w in written]),
            np.sum([w.movie_counts for w in written], axis=0),
        )
        return sum(w.rows for w in written), sum(w.pairs for w in written), profile

    def release(self) -> None:
        """Unpersist the scan and the validated other lines."""
        for data in self._persisted:
            data.unpersist()


class IdIndex:
    """Id -> dense index (its position among the sorted distinct ``ids``): a lookup table
    when the largest id is small next to the count (MovieLens ids), else a binary search."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self.table: np.ndarray | None = None
        top = int(ids[-1]) if ids.size else 0
        if top <= 8 * ids.size + (1 << 20):
            self.table = np.full(top + 1, -1, dtype=np.int32)
            self.table[ids] = np.arange(ids.size, dtype=np.int32)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """The indices of ``values`` (every one among the ids), int32."""
        if self.table is not None:
            return self.table[values]
        return np.searchsorted(self.ids, values).astype(np.int32)


def _block_pieces(
    table: pa.Table, lines: np.ndarray, users: IdIndex, movies: IdIndex, n_blocks: int
) -> Iterator[tuple[int, bytes]]:
    """(block, IPC piece) of accepted rows: user and movie index, the rating, timestamp and
    file line number, by user block (user index mod ``n_blocks``)."""
    u = users(table.column(USER_ID).to_numpy())
    m = movies(table.column(MOVIE_ID).to_numpy())
    block = (u % n_blocks).astype(np.uint8 if n_blocks <= 256 else np.uint16 if n_blocks <= 1 << 16 else np.int64)
    order = np.argsort(block, kind="stable")  # a radix sort for 8- and 16-bit keys
    bounds = np.searchsorted(block[order], np.arange(n_blocks + 1))
    cols = {
        "u": u, "m": m, "r": table.column(RATING).to_numpy(),
        "t": table.column(TIMESTAMP).to_numpy(), "line": np.asarray(lines, dtype=np.int64),
    }
    for b in range(n_blocks):
        sel = order[bounds[b] : bounds[b + 1]]
        if sel.size:
            yield b, _ipc(pa.table({c: v[sel] for c, v in cols.items()}))


def dedupe_order(u: np.ndarray, m: np.ndarray, t: np.ndarray, line: np.ndarray) -> np.ndarray:
    """The positions of one row per (u, m) pair, in (u, m) order: the row with the largest
    timestamp ``t``, then the largest ``line`` (:func:`recspark.io.validate.dedupe_ratings`'
    rule). ``u``, ``m``: non-negative int32 indices. One stable sort of a packed pair key;
    a block with repeated pairs is sorted by (pair, t, line) instead."""
    pair = u.astype(np.int64) * (int(m.max(initial=0)) + 1) + m
    order = np.argsort(pair, kind="stable")
    last = _last_of_runs(pair[order])
    if not last.all():
        order = np.lexsort((line, t, pair))
        last = _last_of_runs(pair[order])
    return order[last]


def _last_of_runs(values: np.ndarray) -> np.ndarray:
    last = np.ones(values.shape[0], dtype=bool)
    last[:-1] = values[1:] != values[:-1]
    return last


@dataclass(frozen=True)
class _Written:
    """What one block's write task reports: rows in, pairs written, and the written rows'
    statistics (per rating value; ratings of each of the block's users; ratings of every
    movie in the block, a bincount over the movie index)."""

    rows: int
    pairs: int
    by_value: pd.DataFrame
    user_counts: np.ndarray
    movie_counts: np.ndarray


_DICTIONARY = [USER_ID, MOVIE_ID, RATING, USER_IDX, MOVIE_IDX]


@numba.njit(cache=True, nogil=True)
def _per_code(codes, t, k):  # pragma: no cover
    """(count, min t, max t) per code 0..k-1, in one pass."""
    count = np.zeros(k, dtype=np.int64)
    first = np.full(k, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(k, np.iinfo(np.int64).min, dtype=np.int64)
    for i in range(codes.shape[0]):
        c = codes[i]
        count[c] += 1
        first[c] = min(first[c], t[i])
        last[c] = max(last[c], t[i])
    return count, first, last


def _write_block(
    block: int, pieces: list[bytes], users: np.ndarray, movies: np.ndarray, folder: str
) -> _Written:
    """Sort, deduplicate and write one user block (module docstring)."""
    if not pieces:
        empty = pd.DataFrame({c: np.zeros(0, np.int64) for c in _BY_VALUE})
        return _Written(0, 0, empty, np.zeros(0, np.int64), np.zeros(movies.size, np.int64))
    table = pa.concat_tables([_read_ipc(p) for p in pieces])
    u, m = table.column("u").to_numpy(), table.column("m").to_numpy()
    t, line = table.column("t").to_numpy(), table.column("line").to_numpy()
    kept = dedupe_order(u, m, t, line)
    u, m, t, r = u[kept], m[kept], t[kept], table.column("r").to_numpy()[kept]
    out = pa.table([users[u], movies[m], r, t, u, m], schema=_PARQUET_SCHEMA)
    where = os.path.join(folder, f"user_block={block}")
    os.makedirs(where, exist_ok=True)
    final = os.path.join(where, f"part-{block:05d}.parquet")
    scratch = os.path.join(where, f".{uuid.uuid4().hex}.tmp")
    # dictionary pages where values repeat (not the timestamps: the dictionary would
    # overflow and be dropped after the work of building it)
    pq.write_table(out, scratch, compression="snappy", use_dictionary=_DICTIONARY)
    os.replace(scratch, final)  # a retried or speculative attempt writes the same file
    codes, values = pd.factorize(r)
    count, first, last = _per_code(codes, t, len(values))
    by_value = pd.DataFrame(
        {RATING: values, N_RATINGS: count, st.FIRST_TIMESTAMP: first, st.LAST_TIMESTAMP: last}
    )
    per_user = np.bincount(u)
    return _Written(
        int(table.num_rows), int(kept.size), by_value, per_user[per_user > 0],
        np.bincount(m, minlength=movies.size),
    )
