"""The Arrow ingest's task-side functions: deduplication order, distinct ids, id index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recspark.io.ratings_tasks import (
    IdIndex,
    _block_stats,
    _by_value,
    _narrow,
    block_pieces,
    dedupe_order,
    distinct_ids,
    write_block,
)
from recspark.schema import MOVIE_ID, RATING, TIMESTAMP, USER_ID


def test_dedupe_order_keeps_the_latest_then_the_last_line() -> None:
    rng = np.random.default_rng(5)
    n = 2_000
    u = rng.integers(0, 30, n).astype(np.int32)
    m = rng.integers(0, 40, n).astype(np.int32)
    t = rng.integers(0, 5, n).astype(np.int64)
    line = rng.permutation(n).astype(np.int64) + 2
    kept = dedupe_order(u, m, t, line)
    frame = pd.DataFrame({"u": u, "m": m, "t": t, "line": line})
    want = frame.sort_values(["u", "m", "t", "line"]).groupby(["u", "m"]).tail(1)
    assert kept.tolist() == want.index.tolist()
    # no repeated pair: the order alone
    single = dedupe_order(
        np.array([1, 0, 1], np.int32),
        np.array([0, 5, 2], np.int32),
        np.zeros(3, np.int64),
        np.arange(3),
    )
    assert single.tolist() == [1, 0, 2]


def test_distinct_ids_by_bitmap_or_hash() -> None:
    rng = np.random.default_rng(2)
    for ids in (rng.integers(1, 500, 1000), rng.integers(1, 10**15, 1000), np.zeros(0, np.int64)):
        assert np.array_equal(distinct_ids(ids), np.unique(ids))


def test_id_index_by_table_or_search() -> None:
    for ids in (np.array([3, 7, 8, 20]), np.array([5, 10**15])):
        index = IdIndex(ids)
        assert (index.table is None) == (ids[-1] > 10**6)
        assert index(ids[::-1].copy()).tolist() == [len(ids) - 1 - i for i in range(len(ids))]
        assert index(ids).dtype == np.int32


def test_block_statistics_in_one_pass_or_by_sorting() -> None:
    rng = np.random.default_rng(4)
    n = 5_000
    u, m = rng.integers(0, 50, n), rng.integers(0, 70, n)
    t = rng.integers(0, 10**9, n)
    for r in (rng.integers(1, 11, n) / 2, rng.random(n)):  # 10 values; thousands of values
        per_user, per_movie, k, *one_pass = _block_stats(u, m, r, t, 50, 70)
        assert per_user.tolist() == np.bincount(u, minlength=50).tolist()
        assert per_movie.tolist() == np.bincount(m, minlength=70).tolist()
        frame = pd.DataFrame({"r": r, "t": t}).groupby("r")["t"].agg(["size", "min", "max"])
        sorted_ = _by_value(r, t)
        assert np.array_equal(sorted_[0], frame.index.to_numpy())
        for got, col in zip(sorted_[1:], ("size", "min", "max")):
            assert np.array_equal(got, frame[col].to_numpy())
        if k >= 0:
            values = one_pass[0][:k]
            order = np.argsort(values)
            assert np.array_equal(values[order], frame.index.to_numpy())
            for got, col in zip(one_pass[1:], ("size", "min", "max")):
                assert np.array_equal(got[:k][order], frame[col].to_numpy())
        else:
            assert r.size > 64  # the continuous values overflowed the one-pass table


def test_rows_in_pair_order_need_no_sort() -> None:
    u = np.array([0, 0, 1, 2], np.int32)
    m = np.array([1, 3, 0, 0], np.int32)
    assert dedupe_order(u, m, np.zeros(4, np.int64), np.arange(4)).tolist() == [0, 1, 2, 3]


def test_narrow_keeps_every_value_exactly() -> None:
    small = np.array([0, 2**31 - 1, -(2**31)], np.int64)
    assert _narrow(small).dtype == np.int32 and np.array_equal(_narrow(small), small)
    for wide in (np.array([2**31], np.int64), np.array([-(2**31) - 1], np.int64)):
        assert _narrow(wide).dtype == np.int64
    halves = np.array([0.5, 3.5, 5.0])
    assert _narrow(halves).dtype == np.float32 and np.array_equal(_narrow(halves), halves)
    assert _narrow(np.array([0.1, 3.5])).dtype == np.float64  # 0.1 is no float32


def test_write_block_widens_pieces_of_mixed_widths(tmp_path: Path) -> None:
    """Pieces narrowed differently (a timestamp past 2**31, a rating no float32 holds)
    join into one block, every value as it was read; a repeated pair keeps its latest."""
    users, movies = IdIndex(np.array([10, 20])), IdIndex(np.array([7, 8, 9]))

    def piece(u, m, r, t, lines):
        table = pa.table({USER_ID: u, MOVIE_ID: m, RATING: r, TIMESTAMP: t})
        ((_, data),) = block_pieces(table, np.array(lines, np.int64), users, movies, 1)
        return data

    first = piece([10, 10], [7, 9], [3.5, 4.0], [100, 200], [2, 3])  # all narrow
    second = piece([20, 10], [8, 7], [0.1, 2.0], [2**31 + 5, 300], [4, 5])  # all wide
    written = write_block(0, [second, first], users.ids, movies.ids, str(tmp_path))
    assert (written.rows, written.pairs) == (4, 3)
    got = pq.read_table(next(tmp_path.glob("user_block=0/*.parquet"))).to_pandas()
    assert got[[USER_ID, MOVIE_ID, RATING, TIMESTAMP]].values.tolist() == [
        [10, 7, 2.0, 300],  # (10, 7) twice: the later timestamp
        [10, 9, 4.0, 200],
        [20, 8, 0.1, 2**31 + 5],
    ]
