"""Byte-range reading: lines split as Spark's text reader splits them, plain lines parsed."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from recspark.io import byteranges as br

FMT = br.RatingsFormat(",", (0, 1, 2, 3), True, 0.5, 5.0, 0.5, 1_700_000_000)


def _reference_lines(data: bytes) -> list[bytes]:
    """Hadoop LineReader's lines: split on \\r\\n, \\n or \\r; nothing after a final end."""
    lines = re.split(rb"\r\n|\n|\r", data)
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _lines_by_range(path: Path, range_bytes: int) -> list[list[bytes]]:
    out = []
    for _, start, end in br.byte_ranges(path.stat().st_size, range_bytes):
        raw, lead, stop = br.read_range(str(path), start, end)
        starts, ends, nexts = br.line_spans(np.frombuffer(raw, np.uint8), lead, stop)
        assert (nexts[:-1] == starts[1:]).all()  # lines follow each other
        out.append([raw[s:e] for s, e in zip(starts, ends)])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_every_line_is_read_once_whatever_the_ranges(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    alphabet = np.frombuffer(b"ab,1\n\r\r\n", np.uint8)
    data = rng.choice(alphabet, size=int(rng.integers(0, 300))).tobytes()
    path = tmp_path / "f.txt"
    path.write_bytes(data)
    want = _reference_lines(data)
    for range_bytes in (1, 2, 3, 5, 16, 1000):
        got = _lines_by_range(path, range_bytes)
        assert [line for lines in got for line in lines] == want, range_bytes


def test_byte_ranges_cover_the_file() -> None:
    assert br.byte_ranges(10, 4) == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    assert br.byte_ranges(0, 4) == [(0, 0, 0)]
    with pytest.raises(ValueError, match="range_bytes"):
        br.byte_ranges(10, 0)


def _parse(lines: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(plain, ints, decimals) of lines of fields in the order user, movie, rating, time."""
    raw = "\n".join(lines).encode()
    buf = np.frombuffer(raw, np.uint8)
    starts, ends, _ = br.line_spans(buf, 0, len(raw))
    ints, dec = np.zeros((len(starts), 4), np.int64), np.zeros(len(starts))
    plain = np.zeros(len(starts), bool)
    br._parse_plain(buf, starts, ends, ord(","), 2, ints, dec, plain)
    return plain, ints, dec


def test_only_digit_fields_are_plain() -> None:
    plain = ["1,2,3.5,4", "01,2,0.5,4", "1,2,3,4", "123456789012345678,2,999999.123456789,4"]
    other = [
        " 1,2,3,4",
        "+1,2,3,4",
        "1,2,3.,4",
        "1,2,.5,4",
        "1,2,3,4,5",
        "1,2,3e1,4",
        '"1",2,3,4',
        "1,2,3.5",
        "1" * 19 + ",2,3,4",
        "1,2,1234567.5,4",
        "1,2,1.1234567890,4",
        "1,2,3,4 ",
        "1;2;3;4",
        "1,,3,4",
        "",
        "1,2,3,-4",
        "1,2,3,4x",
    ]
    flags, ints, dec = _parse(plain + other)
    assert flags.tolist() == [True] * len(plain) + [False] * len(other)
    assert dec[:4].tolist() == [3.5, 0.5, 3.0, 999999.123456789]
    assert ints[3].tolist()[:2] == [123456789012345678, 2] and ints[1, 3] == 4


def test_decimals_parse_as_java_parses_them() -> None:
    """mantissa / 10**k, both exact: the correctly rounded double, as float() gives."""
    rng = np.random.default_rng(1)
    texts = [
        f"{rng.integers(0, 10**6)}.{rng.integers(0, 10**9):0{rng.integers(1, 10)}d}"
        for _ in range(2000)
    ]
    texts = [t[: t.index(".") + 10] for t in texts]
    flags, _, dec = _parse([f"1,1,{t},1" for t in texts])
    assert flags.all()
    assert dec.tolist() == [float(t) for t in texts]


def test_scan_range_parses_plain_lines_and_leaves_the_rest_to_spark(tmp_path: Path) -> None:
    data = (
        b"userId,movieId,rating,timestamp\n"
        b"1,10,4.5,100\r\n"  # line 1 (local)
        b"2,20,4.25,100\n"  # off the grid
        b"0,20,4.0,100\n"  # user 0
        b"3,30,5.0,1700000001\n"  # in the future
        b"4,40,0.5,0\n"
        b"\n"
        b"5,50,6,100"  # above the scale, no final newline
    )
    path = tmp_path / "ratings.csv"
    path.write_bytes(data)
    scan = br.scan_range(str(path), 0, 0, len(data), len(data), FMT)
    assert scan.n_lines == 8
    assert scan.accepted.to_pydict() == {
        "user_id": [1, 4],
        "movie_id": [10, 40],
        "rating": [4.5, 0.5],
        "timestamp": [100, 0],
        "line": [1, 5],
    }
    assert scan.other_lines.tolist() == [0, 2, 3, 4, 6, 7]
    assert scan.other_bytes[0] == b"userId,movieId,rating,timestamp"  # the header: Spark's
    assert scan.other_bytes[-2:] == [b"", b"5,50,6,100"]


def test_fields_in_the_headers_order(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"timestamp,rating,movieId,userId\n100,3.5,20,7\n")
    fmt = br.RatingsFormat(",", (3, 2, 1, 0), True, 0.5, 5.0, 0.5, 10**9)
    scan = br.scan_range(str(path), 0, 0, 43, 43, fmt)
    assert scan.accepted.to_pydict()["user_id"] == [7]
    assert scan.accepted.to_pydict()["rating"] == [3.5]


def test_local_path(tmp_path: Path) -> None:
    f = tmp_path / "a b.csv"
    f.write_text("x")
    assert br.local_path(str(f)) == str(f)
    assert br.local_path("file://" + str(f).replace(" ", "%20")) == str(f)
    assert br.local_path(str(tmp_path)) is None  # a folder
    assert br.local_path("hdfs://nn/a.csv") is None
