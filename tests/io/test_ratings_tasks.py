"""The Arrow ingest's task-side functions: deduplication order, distinct ids, id index."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recspark.io.ratings_tasks import IdIndex, dedupe_order, distinct_ids


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
    single = dedupe_order(np.array([1, 0, 1], np.int32), np.array([0, 5, 2], np.int32),
                          np.zeros(3, np.int64), np.arange(3))
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
