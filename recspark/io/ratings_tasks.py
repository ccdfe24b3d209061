"""The task side of the ingest's Arrow ratings path (:mod:`recspark.pipeline.ingest_arrow`).

Everything here runs inside Spark tasks, so it imports only NumPy, numba, pyarrow
and the column names (not the driver's modules: a Python worker's first task imports it,
~0.3 s against ~1.4 s for the driver-side module with its plotting and config imports).

=========================  ===============================================================
name                       what it does
=========================  ===============================================================
:func:`scan_task`          pass 1 on one byte range: accepted rows, other lines, ids
:func:`block_pieces`       accepted rows -> (user block, Arrow IPC piece) for the shuffle
:func:`write_block`        one user block: sort, deduplicate, Parquet, its statistics
:func:`dedupe_order`       the kept row of every (user, movie) pair
:class:`IdIndex`           id -> dense index (lookup table or binary search)
:func:`distinct_ids`       distinct ids (bitmap or hash)
:func:`summary`            what the driver learns of a scanned range
:func:`numbered_lines`     a range's other lines with their line numbers, decoded
:func:`decode`             a raw line as text, with the latin-1 fallback flag
=========================  ===============================================================
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Iterator

import numba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.io import byteranges as br
from recspark.schema import (
    INDEXED_RATINGS_SCHEMA,
    MOVIE_ID,
    MOVIE_IDX,
    RATING,
    TIMESTAMP,
    USER_ID,
    USER_IDX,
)

#: The written ratings' columns (user_block is the folder), not null: the Arrow form of
#: the one schema of indexed ratings.
PARQUET_SCHEMA = to_arrow_schema(INDEXED_RATINGS_SCHEMA)


#: The cached scan is an LZ4-compressed Arrow stream: ratings columns shrink ~2.7 × (49.6 to
#: 18.3 MB per 32 MB range of ml-32m) for 0.08 s per range, and each of the two passes over
#: the cache moves a third of the bytes between the JVM and Python. The shuffled pieces are
#: not compressed here: Spark's shuffle compresses them (``spark.shuffle.compress``).
_LZ4 = pa.ipc.IpcWriteOptions(compression="lz4")


def scan_task(item: tuple[int, int, int], *, path: str, size: int, fmt: br.RatingsFormat) -> tuple:
    """One range: (rid, accepted rows as an IPC stream (each column in its narrowest exact
    type, :func:`_narrow`), other line numbers, their bytes, line count, distinct users,
    distinct movies, accepted rows)."""
    rid, start, end = item
    scan = br.scan_range(path, rid, start, end, size, fmt)
    acc = scan.accepted
    narrow = pa.table({name: _narrow(acc.column(name).to_numpy()) for name in acc.column_names})
    return (
        rid,
        ipc(narrow, _LZ4),
        scan.other_lines,
        scan.other_bytes,
        scan.n_lines,
        distinct_ids(acc.column(USER_ID).to_numpy()),
        distinct_ids(acc.column(MOVIE_ID).to_numpy()),
        acc.num_rows,
    )


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


def ipc(table: pa.Table, options: pa.ipc.IpcWriteOptions | None = None) -> bytes:
    """``table`` as the bytes of one Arrow IPC stream (``options``: e.g. compression)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def read_ipc(data: bytes) -> pa.Table:
    """The table of an Arrow IPC stream's bytes (:func:`ipc`)."""
    return pa.ipc.open_stream(data).read_all()


def decode(raw: bytes, encoding: str) -> tuple[str, bool]:
    """A line's text and latin-1 fallback flag, as :func:`recspark.io.lines.scan_lines`
    decodes it: UTF-8, or latin-1 (flagged) when it is not valid UTF-8; latin-1 always
    (never flagged) for a latin-1 file."""
    if encoding == "latin-1":
        return raw.decode("latin-1"), False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("latin-1"), True


@dataclass(frozen=True)
class RangeSummary:
    """What the driver learns of one scanned range (:func:`summary`)."""

    rid: int
    n_lines: int
    accepted: int
    users: np.ndarray
    movies: np.ndarray
    #: the range's other lines (local numbers, bytes) when they are few, else None
    other_lines: tuple[np.ndarray, list[bytes]] | None


#: A range's other lines travel with its summary up to this many bytes (the header line, a
#: few bad rows); a range with more leaves them in the cache for a distributed pass.
OTHERS_WITH_SUMMARY = 1 << 20


def summary(r: tuple, *, limit: int) -> RangeSummary:
    """The :class:`RangeSummary` of a :func:`scan_task` tuple; its other lines included
    when they hold at most ``limit`` bytes."""
    few = sum(len(b) + 16 for b in r[3]) <= limit
    return RangeSummary(r[0], r[4], r[7], r[5], r[6], (r[2], r[3]) if few else None)


def numbered_lines(
    rid: int, local: np.ndarray, raw: list[bytes], bases: dict[int, int], source: str, encoding: str
) -> Iterator[tuple[str, int, str, bool]]:
    """(source file, line number, text, latin-1 fallback) of range ``rid``'s other lines
    (the columns of the lines :func:`recspark.io.validate.validate_ratings` reads);
    ``bases``: the lines before each range."""
    base = bases[rid]
    for number, line in zip(local.tolist(), raw):
        text, fallback = decode(line, encoding)
        yield source, base + number + 1, text, fallback


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


def block_pieces(
    table: pa.Table, lines: np.ndarray, users: IdIndex, movies: IdIndex, n_blocks: int
) -> Iterator[tuple[int, bytes]]:
    """(block, IPC piece) of accepted rows: user and movie index, the rating, timestamp and
    file line number, by user block (user index mod ``n_blocks``). Each column in its
    narrowest exact type (:func:`_narrow`); :func:`write_block` widens them again."""
    u = users(table.column(USER_ID).to_numpy())
    m = movies(table.column(MOVIE_ID).to_numpy())
    block = (u % n_blocks).astype(
        np.uint8 if n_blocks <= 256 else np.uint16 if n_blocks <= 1 << 16 else np.int64
    )
    order = np.argsort(block, kind="stable")  # a radix sort for 8- and 16-bit keys
    bounds = np.searchsorted(block[order], np.arange(n_blocks + 1))
    cols = {
        "u": u,
        "m": m,
        "r": _narrow(table.column(RATING).to_numpy()),
        "t": _narrow(table.column(TIMESTAMP).to_numpy()),
        "line": _narrow(np.asarray(lines, dtype=np.int64)),
    }
    for b in range(n_blocks):
        sel = order[bounds[b] : bounds[b + 1]]
        if sel.size:
            yield b, ipc(pa.table({c: v[sel] for c, v in cols.items()}))


def _narrow(values: np.ndarray) -> np.ndarray:
    """``values`` as float32 (doubles) or int32 (longs) when every value is exactly that,
    else as they are: in the cached scan and the shuffled pieces, MovieLens ids,
    timestamps, line numbers and half-star ratings take 4 bytes instead of 8."""
    if values.dtype == np.float64:
        narrow = values.astype(np.float32)
        return narrow if np.array_equal(narrow, values) else values
    low, high = -(2**31), 2**31
    if values.dtype == np.int64 and values.size and values.min() >= low and values.max() < high:
        return values.astype(np.int32)
    return values


def dedupe_order(u: np.ndarray, m: np.ndarray, t: np.ndarray, line: np.ndarray) -> np.ndarray:
    """The positions of one row per (u, m) pair, in (u, m) order: the row with the largest
    timestamp ``t``, then the largest ``line`` (:func:`recspark.io.validate.dedupe_ratings`'
    rule). ``u``, ``m``: non-negative int32 indices. Rows already in strictly increasing
    pair order (a file sorted by user, then movie, as MovieLens releases are, read in file
    order) need no sort; otherwise one stable sort of a packed pair key, or, in a block
    with repeated pairs, a sort by (pair, t, line)."""
    pair = u.astype(np.int64) * (int(m.max(initial=0)) + 1) + m
    if (pair[1:] > pair[:-1]).all():
        return np.arange(pair.shape[0])
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
class Written:
    """What one block's write task reports: rows in, pairs written, and the written rows'
    statistics (per rating value; ratings of each of the block's users; ratings of every
    movie in the block, a bincount over the movie index)."""

    rows: int
    pairs: int
    by_value: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # value, n, first, last t
    user_counts: np.ndarray
    movie_counts: np.ndarray


_DICTIONARY = [USER_ID, MOVIE_ID, RATING, USER_IDX, MOVIE_IDX]


#: Distinct rating values a block's one-pass statistics keep apart (MovieLens: 10 at most).
_MAX_VALUES = 64


@numba.njit(cache=True, nogil=True)
def _block_stats(u, m, r, t, n_users, n_movies):  # pragma: no cover
    """One pass over a block's written rows: ratings per user and per movie index, and per
    distinct rating value (found by a linear search among at most ``_MAX_VALUES``) its
    count and first and last timestamp. ``n_values`` is -1 when there are more values."""
    per_user = np.zeros(n_users, dtype=np.int64)
    per_movie = np.zeros(n_movies, dtype=np.int64)
    values = np.zeros(_MAX_VALUES)
    count = np.zeros(_MAX_VALUES, dtype=np.int64)
    first = np.full(_MAX_VALUES, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(_MAX_VALUES, np.iinfo(np.int64).min, dtype=np.int64)
    n_values = 0
    for i in range(u.shape[0]):
        per_user[u[i]] += 1
        per_movie[m[i]] += 1
        if n_values < 0:
            continue
        c = 0
        while c < n_values and values[c] != r[i]:
            c += 1
        if c == n_values:
            if n_values == _MAX_VALUES:
                n_values = -1
                continue
            values[c] = r[i]
            n_values += 1
        count[c] += 1
        first[c] = min(first[c], t[i])
        last[c] = max(last[c], t[i])
    return per_user, per_movie, n_values, values, count, first, last


def _by_value(r: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """(values, count, first t, last t) per distinct rating value, by sorting (for blocks
    with more than ``_MAX_VALUES`` values)."""
    values, codes = np.unique(r, return_inverse=True)
    order = np.lexsort((t, codes))
    starts = np.searchsorted(codes[order], np.arange(values.size))
    ends = np.append(starts[1:], order.size) - 1
    return values, np.diff(np.append(starts, order.size)), t[order][starts], t[order][ends]


def write_block(
    block: int, pieces: list[bytes], users: np.ndarray, movies: np.ndarray, folder: str
) -> Written:
    """Sort, deduplicate and write one user block (module docstring)."""
    if not pieces:
        none = np.zeros(0, np.int64)
        return Written(0, 0, (np.zeros(0), none, none, none), none, np.zeros(movies.size, np.int64))
    # in file order (each piece's rows are in file order: sort the pieces by first line)
    tables = sorted((read_ipc(p) for p in pieces), key=lambda tb: tb.column("line")[0].as_py())

    def column(name: str, dtype: type) -> np.ndarray:  # pieces may differ in width
        joined = np.concatenate([tb.column(name).to_numpy() for tb in tables])
        return joined.astype(dtype, copy=False)

    u, m = column("u", np.int32), column("m", np.int32)
    t, line = column("t", np.int64), column("line", np.int64)
    r = column("r", np.float64)
    n_rows = u.shape[0]
    kept = dedupe_order(u, m, t, line)
    if kept.shape[0] < n_rows or (kept[1:] < kept[:-1]).any():  # else every row, in order
        u, m, t, r = u[kept], m[kept], t[kept], r[kept]
    out = pa.table([users[u], movies[m], r, t, u, m], schema=PARQUET_SCHEMA)
    where = os.path.join(folder, f"user_block={block}")
    os.makedirs(where, exist_ok=True)
    final = os.path.join(where, f"part-{block:05d}.parquet")
    scratch = os.path.join(where, f".{uuid.uuid4().hex}.tmp")
    # dictionary pages where values repeat (not the timestamps: the dictionary would
    # overflow and be dropped after the work of building it)
    pq.write_table(out, scratch, compression="snappy", use_dictionary=_DICTIONARY)
    os.replace(scratch, final)  # a retried or speculative attempt writes the same file
    per_user, per_movie, k, *by_value = _block_stats(u, m, r, t, users.size, movies.size)
    by_value = [v[:k] for v in by_value] if k >= 0 else _by_value(r, t)
    return Written(n_rows, int(kept.size), tuple(by_value), per_user[per_user > 0], per_movie)
