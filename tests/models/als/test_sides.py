"""ALS sides (recspark.models.als.sides): building, tiling and transposing blocks."""

from __future__ import annotations

import functools

import numpy as np

from recspark.blocks import encode_values, split_by_block
from recspark.models.als.sides import (
    SideSummary,
    SummaryParam,
    make_side,
    side_summary,
    summarised,
    transposed_pieces,
)
from tests.models.als._reference import small_matrix


def _sides(rows, cols, vals, n_blocks, width):
    pieces: dict[int, list] = {}
    codes, scale = encode_values(vals)
    for d, r, c, v in split_by_block(rows, cols, codes, n_blocks):
        pieces.setdefault(d, []).append((r, c, v, scale))
    return {b: next(make_side(b, p, width=width))[1] for b, p in pieces.items()}


def _dense(side, shape):
    """The ratings a side holds, as a dense (global rows x global columns) matrix."""
    out = np.full(shape, np.nan)
    out[side.ids[side.tiles.rows()], side.needed[side.tiles.columns()]] = side.tiles.values()
    return out


def test_sides_hold_the_ratings_and_transposing_them_equals_building_by_column():
    ratings, mask = small_matrix()
    rows, cols = np.nonzero(mask)
    order = np.random.default_rng(3).permutation(rows.size)  # pieces arrive in any order
    rows, cols, vals = rows[order].astype(np.int32), cols[order].astype(np.int32), ratings[rows, cols][order]
    users = _sides(rows, cols, vals, n_blocks=3, width=4)
    for b, side in users.items():
        assert np.all(side.ids % 3 == b) and np.all(np.diff(side.ids) > 0)
        np.testing.assert_array_equal(side.tiles.counts, mask[side.ids].sum(1))
        got, want = _dense(side, mask.shape), np.where(mask, ratings, np.nan)
        np.testing.assert_array_equal(got[side.ids], want[side.ids])
        # half stars are stored as one byte each; values in tile order, rows sorted within
        assert side.tiles.codes.dtype == np.uint8 and side.tiles.scale == 0.5
        t_of = np.searchsorted(side.tiles.starts, side.tiles.columns(), side="right") - 1
        assert np.all(np.diff(t_of) >= 0)
    moved: dict[int, list] = {}
    for item in users.items():
        for d, piece in transposed_pieces(item, n_blocks=2):
            moved.setdefault(d, []).append(piece)
    movies = {b: next(make_side(b, p, width=4))[1] for b, p in moved.items()}
    direct = _sides(cols, rows, vals, n_blocks=2, width=4)
    assert sorted(movies) == sorted(direct)
    for b in movies:
        np.testing.assert_array_equal(movies[b].ids, direct[b].ids)
        np.testing.assert_array_equal(movies[b].needed, direct[b].needed)
        for field in ("starts", "indptr", "offsets", "codes", "counts"):
            np.testing.assert_array_equal(getattr(movies[b].tiles, field), getattr(direct[b].tiles, field))



def test_pieces_of_different_encodings_are_decoded_and_stored_in_the_widest():
    # one task's ratings are half stars (uint8 codes), another's are not (float64)
    rows = np.array([0, 2, 0, 2], dtype=np.int32)
    cols = np.array([1, 0, 3, 2], dtype=np.int32)
    halves, scale = encode_values(np.array([4.5, 1.0]))
    exact, one = encode_values(np.array([3.3, 2.0]))
    assert halves.dtype == np.uint8 and exact.dtype == np.float64

    side = next(make_side(0, [(rows[:2], cols[:2], halves, scale), (rows[2:], cols[2:], exact, one)], width=2))[1]

    assert side.tiles.codes.dtype == np.float64 and side.tiles.scale == 1.0
    got = _dense(side, (3, 4))
    assert got[0, 1] == 4.5 and got[2, 0] == 1.0 and got[0, 3] == 3.3 and got[2, 2] == 2.0
    assert np.isnan(got).sum() == 12 - 4


def test_summaries_are_reported_once_per_block_however_often_a_block_is_built(spark):
    rows = np.array([0, 1, 2, 3, 4, 5], dtype=np.int32)
    cols = np.array([0, 1, 0, 2, 1, 2], dtype=np.int32)
    codes, scale = encode_values(np.array([1.0, 2.5, 3.0, 4.0, 4.5, 5.0]))
    pieces = [(b, (r, c, v, scale)) for b, r, c, v in split_by_block(rows, cols, codes, 2)]
    summaries = spark.sparkContext.accumulator({}, SummaryParam())
    make = summarised(functools.partial(make_side, width=2), summaries)
    built = spark.sparkContext.parallelize(pieces, 2).groupByKey().flatMap(
        lambda kv: make(kv[0], list(kv[1]))
    )

    assert built.count() == 2 and built.count() == 2  # every block built twice

    assert sorted(summaries.value) == [0, 1]
    for block, side in built.collect():
        assert summaries.value[block] == side_summary((block, side))
    assert summaries.value[0] == SideSummary(3, 3, 1.0 + 3.0 + 4.5, 4, 0, True)
