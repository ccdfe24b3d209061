"""The ALS NumPy kernel (recspark.models.als.kernel) against dense per-row references."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.blocks import encode_values
from recspark.models.als import AlsConfig
from recspark.models.als.kernel import (
    _solve_systems,
    init_factors,
    solve_rows,
    tile_columns,
    tiles_from_triples,
    transposed_by_block,
)
from tests.models.als._reference import N_MOVIES, N_USERS, RANK, dense_step, small_matrix


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("width, chunk, noise", [(100, 10**9, 0.0), (4, 7, 0.0), (1, 1, 0.0), (4, 7, 0.01)])
def test_block_solve_matches_dense_normal_equations(weighted, width, chunk, noise):
    rng = np.random.default_rng(11)
    ratings, mask = small_matrix()
    ratings = ratings + noise * rng.normal(size=ratings.shape) * mask  # noise: float64 storage
    fixed = rng.normal(0, 0.7, (N_MOVIES, RANK + 1))
    cfg = AlsConfig(rank=RANK, reg_factors=0.3, reg_bias=0.2, weighted_reg=weighted)
    rows, cols = np.nonzero(mask)
    indptr = np.concatenate([[0], np.cumsum(mask.sum(1))])
    tiles = tile_columns(indptr, cols, ratings[rows, cols], n_cols=N_MOVIES, width=width)

    x, sse, reg = solve_rows(
        tiles, fixed, global_mean=3.1, reg_factors=0.3, reg_bias=0.2, weighted=weighted,
        chunk_nnz=chunk,
    )

    expected = dense_step(ratings, mask, fixed, mu=3.1, cfg=cfg)
    np.testing.assert_allclose(x, expected, atol=1e-10)
    k = RANK
    pred = 3.1 + expected[:, [k]] + fixed[:, k][None, :] + expected[:, :k] @ fixed[:, :k].T
    assert sse == pytest.approx(float(((ratings - pred)[mask] ** 2).sum()), rel=1e-9)
    scale = mask.sum(1) if weighted else np.ones(N_USERS)
    penalty = (scale * (0.3 * (expected[:, :k] ** 2).sum(1) + 0.2 * expected[:, k] ** 2)).sum()
    assert reg == pytest.approx(penalty, rel=1e-9)



def test_initial_factors_depend_only_on_seed_and_id():
    a = init_factors(np.array([5, 1, 9]), rank=4, seed=3, std=0.1)
    b = init_factors(np.array([9, 5]), rank=4, seed=3, std=0.1)
    np.testing.assert_array_equal(a[[2, 0]], b)
    assert not np.allclose(a, init_factors(np.array([5, 1, 9]), rank=4, seed=4, std=0.1))
    big = init_factors(np.arange(20000), rank=10, seed=1, std=0.1)
    assert big.std() == pytest.approx(0.1, rel=0.02) and abs(big.mean()) < 0.002



@pytest.mark.parametrize("n_rows, n_cols, width", [(7, 5, 2), (70_000, 300, 128), (3, 70_000, 1 << 16)])
def test_tiles_sort_by_tile_row_column_and_keep_every_value(n_rows, n_cols, width):
    # 70 000 rows x 3 tiles: cells past 2**16 need the radix sort's second digit
    rng = np.random.default_rng(2)
    n = 50_000
    key = np.unique(rng.integers(0, n_rows * n_cols, n))
    key = key[rng.permutation(key.size)]  # any arrival order
    rows, cols = key // n_cols, key % n_cols
    vals = rng.integers(1, 11, key.size) / 2.0

    tiles = tiles_from_triples(rows, cols, vals, n_rows=n_rows, n_cols=n_cols, width=width)

    got_rows, got_cols = tiles.rows(), tiles.columns()
    tile = got_cols // width
    want = np.lexsort((got_cols, got_rows, tile))  # (tile, row, column) order is the identity
    np.testing.assert_array_equal(want, np.arange(key.size))
    lookup = dict(zip(key.tolist(), vals.tolist()))
    assert [lookup[k] for k in (got_rows * n_cols + got_cols).tolist()] == tiles.values().tolist()
    np.testing.assert_array_equal(tiles.counts, np.bincount(rows, minlength=n_rows))
    codes, scale = encode_values(vals)
    again = tiles_from_triples(rows, cols, codes, n_rows=n_rows, n_cols=n_cols, width=width, scale=scale)
    np.testing.assert_array_equal(again.codes, tiles.codes)
    np.testing.assert_array_equal(again.offsets, tiles.offsets)


@pytest.mark.parametrize("n_rows, n_cols, width", [(7, 5, 2), (70_000, 300, 128), (3, 70_000, 1 << 16)])
def test_packed_and_radix_tiling_agree(n_rows, n_cols, width):
    # 1-byte codes take the packed-key sort, float32 codes the radix sort: same tiles
    rng = np.random.default_rng(3)
    key = np.unique(rng.integers(0, n_rows * n_cols, 40_000))
    key = key[rng.permutation(key.size)]
    rows, cols = key // n_cols, key % n_cols
    codes = rng.integers(0, 256, key.size).astype(np.uint8)
    packed = tiles_from_triples(
        rows, cols, codes, n_rows=n_rows, n_cols=n_cols, width=width, scale=0.5
    )
    radix = tiles_from_triples(
        rows, cols, codes.astype(np.float32), n_rows=n_rows, n_cols=n_cols, width=width, scale=0.5
    )
    assert packed.codes.dtype == np.uint8 and radix.codes.dtype == np.float32
    for field in ("starts", "indptr", "offsets", "counts"):
        np.testing.assert_array_equal(getattr(packed, field), getattr(radix, field))
    np.testing.assert_array_equal(packed.values(), radix.values())


@pytest.mark.parametrize("n_rows, n_cols, width", [(7, 5, 2), (400, 3000, 128), (3, 70_000, 1 << 16)])
def test_byte_codes_are_ordered_as_a_sort_of_packed_keys_duplicates_included(n_rows, n_cols, width):
    # the counting sort must give the order of one np.sort of (cell, offset, code) keys,
    # ties (a repeated rating) included; (3, 70_000) puts hundreds of values in one cell
    rng = np.random.default_rng(6)
    rows = rng.integers(0, n_rows, 30_000)
    cols = rng.integers(0, n_cols, rows.size)
    rows, cols = np.concatenate([rows, rows[:500]]), np.concatenate([cols, cols[:500]])
    codes = rng.integers(0, 256, rows.size).astype(np.uint8)

    tiles = tiles_from_triples(rows, cols, codes, n_rows=n_rows, n_cols=n_cols, width=width, scale=0.5)

    tile = cols // width
    key = np.sort(((tile * n_rows + rows) << 24) | ((cols - tile * width) << 8) | codes)
    np.testing.assert_array_equal(tiles.offsets, (key >> 8) & 0xFFFF)
    np.testing.assert_array_equal(tiles.codes, key & 0xFF)
    cells = np.bincount(key >> 24, minlength=tiles.indptr.shape[0] * n_rows)
    np.testing.assert_array_equal(np.diff(tiles.indptr, axis=1).ravel(), cells)


@pytest.mark.parametrize("codes_dtype", [np.uint8, np.float32])
def test_id_maps_give_the_tiles_of_the_mapped_triples(codes_dtype):
    # ids mapped inside the sort (packed codes) or before it (radix): same as mapping first
    rng = np.random.default_rng(8)
    n_rows, n_cols = 500, 900
    row_ids = np.sort(rng.choice(5000, n_rows, replace=False))
    col_ids = np.sort(rng.choice(9000, n_cols, replace=False))
    row_map = np.full(5000, -1, dtype=np.int32)
    row_map[row_ids] = np.arange(n_rows)
    col_map = np.full(9000, -1, dtype=np.int32)
    col_map[col_ids] = np.arange(n_cols)
    key = rng.permutation(np.unique(rng.integers(0, n_rows * n_cols, 20_000)))
    codes = rng.integers(1, 11, key.size).astype(codes_dtype)
    local_rows, local_cols = key // n_cols, key % n_cols

    mapped = tiles_from_triples(
        row_ids[local_rows], col_ids[local_cols], codes, n_rows=n_rows, n_cols=n_cols, width=64,
        scale=0.5, row_map=row_map, col_map=col_map,
    )
    direct = tiles_from_triples(
        local_rows, local_cols, codes, n_rows=n_rows, n_cols=n_cols, width=64, scale=0.5
    )

    for field in ("starts", "indptr", "offsets", "codes", "counts"):
        np.testing.assert_array_equal(getattr(mapped, field), getattr(direct, field))


@pytest.mark.parametrize("codes_dtype", [np.uint8, np.float32])
def test_transposed_by_block_equals_gathering_the_ids_and_a_stable_split(codes_dtype):
    rng = np.random.default_rng(9)
    n_rows, n_cols = 300, 700
    key = rng.permutation(np.unique(rng.integers(0, n_rows * n_cols, 15_000)))
    codes = rng.integers(1, 11, key.size).astype(codes_dtype)
    tiles = tiles_from_triples(
        key // n_cols, key % n_cols, codes, n_rows=n_rows, n_cols=n_cols, width=50, scale=0.5
    )
    row_ids = np.sort(rng.choice(10_000, n_rows, replace=False)).astype(np.int32)
    col_ids = 2 * np.sort(rng.choice(20_000, n_cols, replace=False))  # blocks 1 and 3 empty

    got = list(transposed_by_block(tiles, row_ids, col_ids, 4))

    new_rows = col_ids[tiles.columns()]  # storage order: (tile, row, column)
    new_cols = row_ids[tiles.rows()]
    assert [b for b, *_ in got] == [0, 2]
    for b, rows, cols, out in got:
        sel = new_rows % 4 == b
        assert rows.dtype == np.int32 and cols.dtype == np.int32 and out.dtype == codes_dtype
        np.testing.assert_array_equal(rows, new_rows[sel])
        np.testing.assert_array_equal(cols, new_cols[sel])
        np.testing.assert_array_equal(out, tiles.codes[sel])


@pytest.mark.parametrize(
    "codes_dtype, d", [(np.uint8, 5), (np.float32, 5), (np.uint8, 2), (np.uint8, 11)]
)
def test_compiled_explicit_sums_equal_the_scipy_products_bit_for_bit(codes_dtype, d):
    from recspark.models.als.kernel import _explicit_sums, _max_tile_nnz, _normal_equations

    rng = np.random.default_rng(4)
    n_rows, n_cols = 300, 1000
    key = np.unique(rng.integers(0, n_rows * n_cols, 20_000))
    codes = rng.integers(1, 11, key.size).astype(codes_dtype)
    tiles = tiles_from_triples(
        key // n_cols, key % n_cols, codes, n_rows=n_rows, n_cols=n_cols, width=128, scale=0.5
    )
    y = rng.normal(size=(n_cols, d))
    y[:, -1] = 1.0
    offset = rng.normal(size=n_cols)

    def terms(values, cols):
        target = values - offset[cols]
        return None, target, float(target @ target)

    r0, r1 = 17, 250
    want_g, want_h, want_tt = _normal_equations(tiles, y, r0, r1, terms, _max_tile_nnz(tiles))
    gram, h = np.zeros_like(want_g), np.zeros_like(want_h)
    z = np.empty((128, want_g.shape[1] - 1))  # the distinct pairs and y without its 1s
    tt = _explicit_sums(d)(
        tiles.indptr, tiles.offsets, tiles.codes, 0.5, tiles.starts, y, offset, r0, r1, gram, h, z
    )
    np.testing.assert_array_equal(gram, want_g)
    np.testing.assert_array_equal(h, want_h)
    assert tt == pytest.approx(want_tt, rel=1e-12)


def _stacked_systems(rng, n, d):
    """n random symmetric positive semi-definite Gram matrices as upper-triangle pairs."""
    y = rng.normal(size=(n, 3 * d, d))
    iu, ju = np.triu_indices(d)
    return np.einsum("nia,nib->nab", y, y)[:, iu, ju], rng.normal(size=(n, d))


@pytest.mark.parametrize("with_base", [False, True])
def test_batched_cholesky_solve_matches_lapack(with_base):
    rng = np.random.default_rng(5)
    d = 6
    gram, h = _stacked_systems(rng, 40, d)
    lam_rows = rng.uniform(0.1, 3.0, size=(40, d))
    base = None
    full = np.zeros((40, d, d))
    iu, ju = np.triu_indices(d)
    full[:, iu, ju] = gram
    full[:, ju, iu] = gram
    if with_base:
        b = rng.normal(size=(2 * d, d))
        base = b.T @ b
        full += base
    full[:, np.arange(d), np.arange(d)] += lam_rows
    want = np.linalg.solve(full, h[..., None])[..., 0]
    np.testing.assert_allclose(_solve_systems(gram, h, lam_rows, base=base), want, rtol=1e-12, atol=1e-12)


def test_systems_that_are_not_positive_definite_go_to_lapack():
    # an indefinite system: Cholesky fails, LU with pivoting solves it exactly
    gram = np.array([[1.0, 2.0, 1.0]])  # [[1, 2], [2, 1]]
    x = _solve_systems(gram, np.array([[3.0, 3.0]]), np.zeros((1, 2)))
    np.testing.assert_allclose(x, [[1.0, 1.0]])
    with pytest.raises(np.linalg.LinAlgError):  # singular: as numpy.linalg.solve
        _solve_systems(np.array([[1.0, 1.0, 1.0]]), np.array([[1.0, 2.0]]), np.zeros((1, 2)))
