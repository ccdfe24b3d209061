"""A local ratings file read by byte range inside Spark tasks, with NumPy and pyarrow.

The ingest's fast reader of the ratings file (:mod:`recspark.pipeline.ingest_arrow` runs
it): each task reads one byte range of the file, splits it into lines exactly as Spark's
text reader does, and parses the *plain* lines (digits and one decimal point only, in the
layout's field pattern) with pyarrow's CSV reader, checking their values as
:func:`recspark.io.validate.validate_ratings` does. Any other line (blank, quoted,
non-ASCII, signed, too long a number, a value out of range, the header) is returned as raw
bytes for Spark's validation, which gives it its reason or accepts it: the two readers
accept and reject the same lines for the same reasons.

=========================  ===============================================================
name                       what it does
=========================  ===============================================================
:func:`local_path`         the local file behind a path or ``file:`` URI, or None
:func:`byte_ranges`        the (range id, start, end) byte ranges of a file
:func:`read_range`         the bytes of the lines starting in a range, and where they start
:func:`line_spans`         line starts and ends in a buffer (``\\n``, ``\\r\\n``, ``\\r``)
:func:`plain_pattern`      the RE2 pattern of a plain ratings line
:class:`RatingsFormat`     what a task needs: separator, field order, scale, now
:func:`scan_range`         one range: accepted rows (Arrow), other lines, line count
=========================  ===============================================================

Lines and ranges
    A line belongs to the range its first byte is in; it ends at its terminator (``\\n``,
    ``\\r\\n`` or a lone ``\\r``: Hadoop's ``LineReader``, which ``spark.read.text`` uses),
    which is not part of it; a last line without a terminator is a line; nothing follows
    a final terminator. Within a range lines are numbered 0, 1, ... (the *local* line); a
    file's line number is 1 + the lines of the earlier ranges + the local line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

__all__ = [
    "RANGE_BYTES",
    "RatingsFormat",
    "RangeScan",
    "byte_ranges",
    "line_spans",
    "local_path",
    "plain_pattern",
    "read_range",
    "scan_range",
]

#: Bytes per range: ~1.3M ratings lines of ml-32m, a few MB of Arrow per task.
RANGE_BYTES = 32 << 20

_NL, _CR = 10, 13
#: Plain fields: at most 18 digits (every such integer fits a long), a rating of at most 9
#: digits on each side of an optional decimal point. Anything else goes to Spark.
_INTEGER, _DECIMAL = "[0-9]{1,18}", r"[0-9]{1,9}(\.[0-9]{1,9})?"


def local_path(path: str) -> str | None:
    """The local file behind ``path`` (a plain path or a ``file:`` URI), or None for
    another file system (``hdfs:``, ``s3a:``, ...) or a path that is not a file here."""
    parsed = urlparse(path)
    if parsed.scheme not in ("", "file"):
        return None
    local = unquote(parsed.path) if parsed.scheme == "file" else path
    return local if os.path.isfile(local) else None


def byte_ranges(size: int, range_bytes: int = RANGE_BYTES) -> list[tuple[int, int, int]]:
    """``(range id, start, end)`` covering ``[0, size)`` in ranges of ``range_bytes``
    (at least one range, possibly empty). Raises ValueError for range_bytes < 1."""
    if range_bytes < 1:
        raise ValueError(f"range_bytes must be at least 1, got {range_bytes}")
    starts = list(range(0, size, range_bytes)) or [0]
    return [(i, s, min(s + range_bytes, size)) for i, s in enumerate(starts)]


def read_range(path: str, start: int, end: int) -> tuple[bytes, int, int]:
    """``(buffer, lead, stop)``: the bytes from ``start - lead`` on (``lead`` = 1 when
    ``start`` > 0: the byte before the range tells whether a line starts at ``start``),
    read on past ``end`` until the last line starting before ``end`` is terminated (and
    one byte more, to tell ``\\r\\n`` from a lone ``\\r``) or the file ends; ``stop`` is
    ``end``'s position in the buffer. Lines starting in ``[lead, stop)`` are the range's."""
    lead = 1 if start > 0 else 0
    with open(path, "rb") as f:
        f.seek(start - lead)
        parts = [f.read(end - start + lead)]
        stop = len(parts[0])
        # the bytes from stop - 1 on must hold a terminator followed by one more byte
        tail = parts[0][max(stop - 1, 0):]
        while not _terminated(tail):
            chunk = f.read(1 << 16)
            if not chunk:
                break
            parts.append(chunk)
            tail += chunk
    return b"".join(parts), lead, stop


def _terminated(tail: bytes) -> bool:
    """True when ``tail`` (the buffer from the range's last byte on) holds a terminator
    with at least one byte after it."""
    head = tail[:-1]
    return b"\n" in head or b"\r" in head


def line_spans(buf: np.ndarray, lead: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, nexts)`` of the lines starting in ``buf[lead:stop]`` (uint8 array):
    line i is ``buf[starts[i]:ends[i]]``, its terminator excluded; ``nexts[i]`` is where
    the following line starts (after the terminator). A position p >= ``lead`` starts a
    line when p is the file's first byte (``lead`` = 0 and p = 0) or follows ``\\n``, or
    follows a ``\\r`` that is not followed by ``\\n``. A line without a terminator ends
    where ``buf`` ends (:func:`read_range` reads on to the terminator unless the file ends)."""
    n = buf.shape[0]
    # Work on the terminator bytes only (one per line, not one per byte): each line ends at
    # its first terminator byte; the \n of a \r\n pair ends nothing.
    terms = np.flatnonzero((buf == _NL) | (buf == _CR))
    kinds = buf[terms]
    pair_second = np.zeros(terms.shape[0], dtype=bool)
    pair_second[1:] = (kinds[1:] == _NL) & (kinds[:-1] == _CR) & (np.diff(terms) == 1)
    line_ends = terms[~pair_second]
    crlf = np.zeros(line_ends.shape[0], dtype=bool)
    inside = line_ends + 1 < n
    crlf[inside] = (buf[line_ends[inside]] == _CR) & (buf[line_ends[inside] + 1] == _NL)
    after = line_ends + 1 + crlf
    candidates = after if lead else np.concatenate([[0], after])
    starts = candidates[(candidates >= lead) & (candidates < min(stop, n))].astype(np.int64)
    at = np.searchsorted(line_ends, starts)
    found = at < line_ends.shape[0]
    ends = np.full(starts.shape[0], n, dtype=np.int64)
    nexts = np.full(starts.shape[0], n, dtype=np.int64)
    ends[found] = line_ends[at[found]]
    nexts[found] = after[at[found]]
    return starts, ends, nexts


def plain_pattern(separator: str, kinds: tuple[str, ...]) -> str:
    """The RE2 pattern of a plain line: fields of ``kinds`` (``"int"`` or ``"decimal"``,
    in the file's order) joined by ``separator``, then the line's terminator if any."""
    fields = [_INTEGER if k == "int" else _DECIMAL for k in kinds]
    return "^" + _escape(separator).join(fields) + r"(\r\n|\n|\r)?$"


def _escape(text: str) -> str:
    return "".join("\\" + c if not c.isalnum() else c for c in text)


@dataclass(frozen=True)
class RatingsFormat:
    """What a task needs to read ratings lines: the one-character ``separator``, the file
    position of the user, movie, rating and timestamp fields (``order``), whether line 1
    is a header (always handed to Spark), the rating scale and ``now`` (epoch seconds)."""

    separator: str
    order: tuple[int, int, int, int]
    header: bool
    scale_min: float
    scale_max: float
    scale_step: float
    now: int

    @property
    def pattern(self) -> str:
        kinds = ["int"] * 4
        kinds[self.order[2]] = "decimal"
        return plain_pattern(self.separator, tuple(kinds))


@dataclass(frozen=True)
class RangeScan:
    """One range's result: the accepted rows (``user_id``, ``movie_id``, ``rating``,
    ``timestamp``, ``line``: the local line, int64 each but rating double), the other
    lines (local line numbers and raw bytes, terminator excluded) and the range's lines."""

    accepted: pa.Table
    other_lines: np.ndarray
    other_bytes: list[bytes]
    n_lines: int


ACCEPTED_SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("movie_id", pa.int64()), ("rating", pa.float64()),
     ("timestamp", pa.int64()), ("line", pa.int64())]
)


def scan_range(path: str, rid: int, start: int, end: int, size: int, fmt: RatingsFormat) -> RangeScan:
    """Read range ``rid`` (``[start, end)`` of a file of ``size`` bytes) and split its
    lines into accepted rows and other lines (module docstring). Pure, one task."""
    raw, lead, stop = read_range(path, start, end)
    buf = np.frombuffer(raw, dtype=np.uint8)
    starts, ends, nexts = line_spans(buf, lead, stop)
    n_lines = int(starts.shape[0])
    if n_lines == 0:
        return RangeScan(ACCEPTED_SCHEMA.empty_table(), np.zeros(0, np.int64), [], 0)
    offsets = np.append(starts, nexts[-1]).astype(np.int64)
    lines = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n_lines, [None, pa.py_buffer(offsets), pa.py_buffer(raw)]
    )
    plain = pc.match_substring_regex(lines, fmt.pattern).to_numpy(zero_copy_only=False)
    if fmt.header and rid == 0:
        plain[0] = False  # line 1: the header, Spark's to drop or report
    accepted, good = _parse_plain(lines, plain, fmt)
    plain[np.flatnonzero(plain)[~good]] = False  # a plain line with a bad value: Spark's
    other = np.flatnonzero(~plain)
    other_bytes = [raw[starts[i]:ends[i]] for i in other]
    return RangeScan(accepted, other.astype(np.int64), other_bytes, n_lines)


def _parse_plain(lines: pa.Array, plain: np.ndarray, fmt: RatingsFormat) -> tuple[pa.Table, np.ndarray]:
    """(accepted rows, per plain line: its values pass every check) of the plain lines."""
    idx = np.flatnonzero(plain)
    if idx.size == 0:
        return ACCEPTED_SCHEMA.empty_table(), np.zeros(0, dtype=bool)
    chosen = lines.take(pa.array(idx)) if idx.size < len(lines) else lines
    offsets = np.frombuffer(chosen.buffers()[1], np.int64)[chosen.offset : chosen.offset + len(chosen) + 1]
    body = chosen.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    names = [f"c{i}" for i in range(4)]
    types = {names[p]: (pa.float64() if k == 2 else pa.int64()) for k, p in enumerate(fmt.order)}
    table = pcsv.read_csv(
        pa.BufferReader(body),
        read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 26),
        parse_options=pcsv.ParseOptions(delimiter=fmt.separator, quote_char=False),
        convert_options=pcsv.ConvertOptions(column_types=types),
    )
    if table.num_rows != idx.size:  # every plain line is one CSV record
        raise RuntimeError(f"{table.num_rows} CSV records from {idx.size} plain lines (a bug)")
    u, m, r, t = (table.column(names[p]).to_numpy() for p in fmt.order)
    steps = r / fmt.scale_step
    good = (
        (u > 0) & (m > 0) & (r >= fmt.scale_min) & (r <= fmt.scale_max)
        & (np.abs(steps - np.rint(steps)) <= 1e-9) & (t >= 0) & (t <= fmt.now)
    )
    accepted = pa.table(
        [u[good], m[good], r[good], t[good], idx[good].astype(np.int64)], schema=ACCEPTED_SCHEMA
    )
    return accepted, good
