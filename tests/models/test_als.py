"""recspark's block-partitioned biased ALS (recspark.models.als) and FactorModel.

The references are written out densely in NumPy, one row at a time, straight from the
normal equations in the module docstring, so a mistake in the vectorised/distributed code
shows up as a mismatch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import load_config
from recspark.models import registry
from recspark.models.als import AlsConfig
from recspark.models.bias import BiasConfig
from recspark.errors import ConfigError, ModelError
from recspark.evaluation.rating import regression_metrics
from recspark.index import add_indices, movie_index, user_index
from recspark.io.movielens import read_ratings_csv
from recspark.blocks import encode_values, split_by_block
from recspark.models.als import (
    _make_side,
    _transposed_pieces,
    fit_als,
    init_factors,
    solve_rows,
    tile_columns,
)
from recspark.models.bias import BiasModel, fit_bias
from recspark.models.factor import FactorModel
from recspark.schema import (
    BIAS,
    FACTORS,
    ITERATION,
    MOVIE_ID,
    MOVIE_IDX,
    OBJECTIVE,
    PERSONALISED,
    RATING,
    TRAIN_RMSE,
    USER_ID,
    USER_IDX,
    VALIDATION_RMSE,
)
from recspark.seeds import derive_seed
from recspark.split import random_split

SEED = 7
RANK = 3
N_USERS, N_MOVIES = 12, 9


# --------------------------------------------------------------------------- helpers


def small_matrix() -> tuple[np.ndarray, np.ndarray]:
    """A 12 x 9 ratings matrix, ~55% observed, every row and column non-empty."""
    rng = np.random.default_rng(3)
    mask = rng.random((N_USERS, N_MOVIES)) < 0.55
    mask[np.arange(N_USERS), np.arange(N_USERS) % N_MOVIES] = True
    ratings = np.where(mask, rng.integers(1, 11, (N_USERS, N_MOVIES)) / 2.0, 0.0)
    return ratings, mask


def ratings_frame(spark, ratings: np.ndarray, mask: np.ndarray):
    """user_id = idx + 100, movie_id = idx + 500; only observed cells."""
    rows = [
        (int(u) + 100, int(i) + 500, int(u), int(i), float(ratings[u, i]))
        for u, i in zip(*np.nonzero(mask))
    ]
    return spark.createDataFrame(rows, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING])


def dense_step(
    ratings: np.ndarray, mask: np.ndarray, fixed: np.ndarray, *, mu: float, cfg: AlsConfig
) -> np.ndarray:
    """Reference half-step for the rows of ``ratings``: one dense solve per row.

    fixed: (columns, k+1) = [factors, bias] of the other side. Returns (rows, k+1).
    """
    k = fixed.shape[1] - 1
    y = np.hstack([fixed[:, :k], np.ones((fixed.shape[0], 1))])
    lam = np.diag([cfg.reg_factors] * k + [cfg.reg_bias])
    out = np.zeros((ratings.shape[0], k + 1))
    for u in range(ratings.shape[0]):
        cols = np.flatnonzero(mask[u])
        target = ratings[u, cols] - mu - fixed[cols, k]
        scale = cols.size if cfg.weighted_reg else 1.0
        a = y[cols].T @ y[cols] + scale * lam
        out[u] = np.linalg.solve(a, y[cols].T @ target)
    return out


def dense_objective(ratings, mask, users, items, *, mu, cfg) -> tuple[float, float]:
    """(training RMSE, objective J) of users/items = [factors, bias] rows."""
    k = users.shape[1] - 1
    pred = mu + users[:, [k]] + items[:, k][None, :] + users[:, :k] @ items[:, :k].T
    sse = float(((ratings - pred)[mask] ** 2).sum())
    penalty = 0.0
    for table, counts in ((users, mask.sum(1)), (items, mask.sum(0))):
        scale = counts if cfg.weighted_reg else np.ones_like(counts)
        penalty += float(
            (scale * (cfg.reg_factors * (table[:, :k] ** 2).sum(1) + cfg.reg_bias * table[:, k] ** 2)).sum()
        )
    return math.sqrt(sse / mask.sum()), sse + penalty


def table_of(df, idx_col: str, n: int, rank: int) -> np.ndarray:
    """Collect a factor table into an (n, rank+1) array [factors, bias] by index."""
    out = np.full((n, rank + 1), np.nan)
    for row in df.select(idx_col, FACTORS, BIAS).collect():
        out[row[0], :rank] = row[1]
        out[row[0], rank] = row[2]
    return out


def hand_bias_model(spark, *, movie_bias: dict[int, float], user_bias: dict[int, float], mu: float):
    schema_u = T.StructType([T.StructField(USER_ID, T.LongType()), T.StructField(BIAS, T.DoubleType())])
    schema_i = T.StructType([T.StructField(MOVIE_ID, T.LongType()), T.StructField(BIAS, T.DoubleType())])
    return BiasModel(
        mu,
        spark.createDataFrame(list(user_bias.items()), schema_u),
        spark.createDataFrame(list(movie_bias.items()), schema_i),
    )


def load_sample(spark, sample_dir: Path):
    """ml-latest-small with dense indices, read with an explicit schema."""
    ratings = read_ratings_csv(spark, str(sample_dir)).select(USER_ID, MOVIE_ID, RATING)
    indexed = add_indices(ratings, users=user_index(ratings), movies=movie_index(ratings), user_blocks=1)
    return indexed.select(USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING)


# --------------------------------------------------------------------------- the NumPy kernel


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


def _sides(rows, cols, vals, n_blocks, width):
    pieces: dict[int, list] = {}
    codes, scale = encode_values(vals)
    for d, r, c, v in split_by_block(rows, cols, codes, n_blocks):
        pieces.setdefault(d, []).append((r, c, v, scale))
    return {b: next(_make_side(b, p, width=width))[1] for b, p in pieces.items()}


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
        for d, piece in _transposed_pieces(item, n_blocks=2):
            moved.setdefault(d, []).append(piece)
    movies = {b: next(_make_side(b, p, width=4))[1] for b, p in moved.items()}
    direct = _sides(cols, rows, vals, n_blocks=2, width=4)
    assert sorted(movies) == sorted(direct)
    for b in movies:
        np.testing.assert_array_equal(movies[b].ids, direct[b].ids)
        np.testing.assert_array_equal(movies[b].needed, direct[b].needed)
        for field in ("starts", "indptr", "offsets", "codes", "counts"):
            np.testing.assert_array_equal(getattr(movies[b].tiles, field), getattr(direct[b].tiles, field))


def test_initial_factors_depend_only_on_seed_and_id():
    a = init_factors(np.array([5, 1, 9]), rank=4, seed=3, std=0.1)
    b = init_factors(np.array([9, 5]), rank=4, seed=3, std=0.1)
    np.testing.assert_array_equal(a[[2, 0]], b)
    assert not np.allclose(a, init_factors(np.array([5, 1, 9]), rank=4, seed=4, std=0.1))
    big = init_factors(np.arange(20000), rank=10, seed=1, std=0.1)
    assert big.std() == pytest.approx(0.1, rel=0.02) and abs(big.mean()) < 0.002


# --------------------------------------------------------------------------- distributed ALS


@pytest.mark.parametrize("weighted", [True, False])
def test_every_half_step_matches_numpy(spark, weighted):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask)
    cfg = AlsConfig(
        rank=RANK, max_iter=2, reg_factors=0.25, reg_bias=0.15, weighted_reg=weighted,
        blocks=3, mode="broadcast",
    )
    movie_bias = {500 + i: 0.1 * i - 0.4 for i in range(N_MOVIES)}
    bias = hand_bias_model(spark, movie_bias=movie_bias, user_bias={}, mu=3.0)

    model = fit_als(df, cfg=cfg, seed=SEED, bias=bias)

    mu = float(ratings[mask].mean())
    assert model.global_mean == pytest.approx(mu, abs=1e-12)
    items = np.zeros((N_MOVIES, RANK + 1))
    items[:, :RANK] = init_factors(
        np.arange(N_MOVIES), rank=RANK, seed=derive_seed(SEED, "init", "movies"), std=cfg.init_std
    )
    items[:, RANK] = [movie_bias[500 + i] for i in range(N_MOVIES)]
    history = []
    for _ in range(2):
        users = dense_step(ratings, mask, items, mu=mu, cfg=cfg)  # user half-step
        items = dense_step(ratings.T, mask.T, users, mu=mu, cfg=cfg)  # movie half-step
        history.append(dense_objective(ratings, mask, users, items, mu=mu, cfg=cfg))
    np.testing.assert_allclose(table_of(model.user_factors, USER_IDX, N_USERS, RANK), users, atol=1e-5)
    np.testing.assert_allclose(table_of(model.item_factors, MOVIE_IDX, N_MOVIES, RANK), items, atol=1e-5)
    np.testing.assert_allclose(model.history[TRAIN_RMSE], [h[0] for h in history], rtol=1e-8)
    np.testing.assert_allclose(model.history[OBJECTIVE], [h[1] for h in history], rtol=1e-8)


def test_broadcast_and_routed_modes_give_the_same_factors(spark):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask).cache()
    base = AlsConfig(rank=RANK, max_iter=3, reg_factors=0.1, reg_bias=0.05, blocks=3, checkpoint_every=1)
    # 12 users x 4 doubles = 384 bytes does not fit under 320 bytes; 9 movies (288) does.
    tiny = 320 / 2**20
    fits = {
        mode: fit_als(df, cfg=base.replace(**over), seed=SEED)
        for mode, over in {
            "broadcast": {"mode": "broadcast"},
            "routed": {"mode": "routed"},
            "mixed": {"mode": "auto", "broadcast_max_mb": tiny},
        }.items()
    }
    ref = fits["broadcast"]
    for mode in ("routed", "mixed"):
        got = fits[mode]
        for df_name, idx, n in (("user_factors", USER_IDX, N_USERS), ("item_factors", MOVIE_IDX, N_MOVIES)):
            np.testing.assert_allclose(
                table_of(getattr(got, df_name), idx, n, RANK),
                table_of(getattr(ref, df_name), idx, n, RANK),
                rtol=0, atol=1e-10,
            )
        np.testing.assert_allclose(got.history[OBJECTIVE], ref.history[OBJECTIVE], rtol=1e-12)


def test_history_agrees_with_predictions_and_objective_never_increases(spark):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask)
    train = df.where(F.xxhash64(USER_ID, MOVIE_ID) % 4 != 0).cache()
    held = df.where(F.xxhash64(USER_ID, MOVIE_ID) % 4 == 0)
    # a user and a movie the model never saw: scored by the bias fallback
    unknown = spark.createDataFrame(
        [(999, 500, 99, 0, 4.0), (100, 999, 0, 99, 1.0)], [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING]
    )
    validation = held.unionByName(unknown).cache()
    bias = fit_bias(train, cfg=BiasConfig())
    cfg = AlsConfig(rank=2, max_iter=6, reg_factors=0.05, reg_bias=0.05, blocks=2, mode="routed")

    model = fit_als(train, cfg=cfg, seed=SEED, bias=bias, validation=validation)

    h = model.history
    assert list(h[ITERATION]) == list(range(1, 7))
    assert (np.diff(h[OBJECTIVE]) <= 1e-9 * h[OBJECTIVE].iloc[0]).all()
    scored = model.predict(validation)
    assert h[VALIDATION_RMSE].iloc[-1] == pytest.approx(regression_metrics(scored)["rmse"], rel=1e-9)
    wide = FactorModel(**{**model.__dict__, "lo": -100.0, "hi": 100.0})
    assert h[TRAIN_RMSE].iloc[-1] == pytest.approx(regression_metrics(wide.predict(train))["rmse"], rel=1e-9)


def test_recovers_a_planted_biased_low_rank_matrix(spark):
    rng = np.random.default_rng(5)
    nu, ni = 40, 30
    p, q = rng.normal(0, 0.5, (nu, 2)), rng.normal(0, 0.5, (ni, 2))
    truth = 3.0 + rng.normal(0, 0.4, (nu, 1)) + rng.normal(0, 0.4, (1, ni)) + p @ q.T
    observed = rng.random((nu, ni)) < 0.7
    df = ratings_frame(spark, truth, observed)
    held = ratings_frame(spark, truth, ~observed)
    cfg = AlsConfig(rank=2, max_iter=40, reg_factors=1e-4, reg_bias=1e-4, weighted_reg=False, blocks=2)
    model = fit_als(df, cfg=cfg, seed=SEED, lo=-10, hi=10)

    als_rmse = regression_metrics(model.predict(held))["rmse"]
    bias_rmse = regression_metrics(fit_bias(df, cfg=BiasConfig(), lo=-10, hi=10).predict(held))["rmse"]
    assert model.history[TRAIN_RMSE].iloc[-1] < 1e-3
    assert als_rmse < 0.05 < 0.3 < bias_rmse


def test_fifty_iterations_on_ml_latest_small_cut_lineage(spark, sample_dir):
    ratings = load_sample(spark, sample_dir).cache()
    cfg = AlsConfig(rank=2, max_iter=50, blocks=2, mode="routed", checkpoint_every=5)
    model = fit_als(ratings, cfg=cfg, seed=SEED)
    h = model.history
    assert len(h) == 50 and h[TRAIN_RMSE].iloc[-1] < h[TRAIN_RMSE].iloc[0] < 1.0
    assert (np.diff(h[OBJECTIVE]) <= 1e-9 * h[OBJECTIVE].iloc[0]).all()
    assert model.user_factors.count() == 610


def test_bad_settings_are_rejected_before_any_work():
    with pytest.raises(ConfigError, match="als.mode: input should be 'auto', 'broadcast' or 'routed'"):
        load_config(overrides=["als.mode=fast"])
    with pytest.raises(ConfigError, match="reg_factors: input should be greater than 0"):
        AlsConfig().replace(reg_factors=0.0)


# --------------------------------------------------------------------------- FactorModel


def hand_model(spark, *, fallback: BiasModel | None) -> FactorModel:
    users = spark.createDataFrame(
        [(1, 0, 0.1, [1.0, 2.0]), (2, 1, 0.0, [2.0, 2.0])],
        "user_id long, user_idx int, bias double, factors array<double>",
    )
    items = spark.createDataFrame(
        [(10, 0, 0.2, [0.5, -1.0]), (20, 1, 1.0, [1.0, 1.0])],
        "movie_id long, movie_idx int, bias double, factors array<double>",
    )
    return FactorModel("hand", 3.5, 2, users, items, fallback=fallback)


def test_predict_scores_known_pairs_and_falls_back_for_unknown_ids(spark):
    bias = hand_bias_model(spark, user_bias={1: 0.5, 3: 0.25}, movie_bias={10: -0.25, 30: 0.5}, mu=3.0)
    pairs = spark.createDataFrame(
        [(1, 10), (2, 20), (3, 10), (1, 30), (99, 99)], "user_id long, movie_id long"
    )
    expected_schema = "user_id long, movie_id long, prediction double, personalised boolean"
    expected = spark.createDataFrame(
        [
            (1, 10, 3.5 + 0.1 + 0.2 + (0.5 - 2.0), True),  # 2.3
            (2, 20, 5.0, True),  # 3.5 + 0 + 1 + 4 = 8.5, clipped
            (3, 10, 3.0 + 0.25 - 0.25, False),  # bias model: unknown user
            (1, 30, 3.0 + 0.5 + 0.5, False),  # bias model: unknown movie
            (99, 99, 3.0, False),
        ],
        expected_schema,
    )
    got = hand_model(spark, fallback=bias).predict(pairs)
    assert_approx_df_equality(got, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)

    own = hand_model(spark, fallback=None).predict(pairs)
    expected_own = spark.createDataFrame(
        [(1, 10, 2.3, True), (2, 20, 5.0, True), (3, 10, 3.7, False), (1, 30, 3.6, False), (99, 99, 3.5, False)],
        expected_schema,
    )
    assert_approx_df_equality(own, expected_own, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_save_and_load_give_identical_predictions(spark, tmp_path):
    ratings, mask = small_matrix()
    df = ratings_frame(spark, ratings, mask)
    bias = fit_bias(df, cfg=BiasConfig())
    cfg = load_config(overrides=["als.rank=2", "als.max_iter=3", "als.blocks=2"])
    model = registry.fit("als", df, cfg=cfg, bias=bias)
    path = str(tmp_path / "als")
    model.save(path)
    loaded = FactorModel.load(spark, path)

    pairs = df.select(USER_ID, MOVIE_ID, RATING).unionByName(
        spark.createDataFrame([(999, 500, 3.0), (100, 999, 2.0)], [USER_ID, MOVIE_ID, RATING])
    )
    before = model.predict(pairs).orderBy(USER_ID, MOVIE_ID)
    assert_df_equality(loaded.predict(pairs).orderBy(USER_ID, MOVIE_ID), before)
    assert before.where(~F.col(PERSONALISED)).count() == 2
    assert loaded.global_mean == model.global_mean and loaded.rank == 2
    assert loaded.settings["rank"] == 2 and loaded.settings["blocks"] == 2
    pd.testing.assert_frame_equal(loaded.history, model.history)


def test_load_explains_missing_incomplete_and_foreign_folders(spark, tmp_path):
    with pytest.raises(ModelError, match="no saved model at"):
        FactorModel.load(spark, str(tmp_path / "nothing"))
    model = hand_model(spark, fallback=None)
    path = tmp_path / "m"
    model.save(str(path))
    FactorModel.load(spark, str(path))  # complete: loads

    (path / "item_factors" / "_SUCCESS").unlink()
    with pytest.raises(ModelError, match="item_factors/ is missing or was not fully written"):
        FactorModel.load(spark, str(path))
    meta = json.loads((path / "model.json").read_text())
    (path / ".model.json.crc").unlink(missing_ok=True)  # Hadoop's checksum of the original
    (path / "model.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ModelError, match="layout version 99"):
        FactorModel.load(spark, str(path))
    (path / "model.json").write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(ModelError, match="not a recspark factor model"):
        FactorModel.load(spark, str(path))
    (path / "model.json").unlink()
    with pytest.raises(ModelError, match="model.json is missing"):
        FactorModel.load(spark, str(path))


# --------------------------------------------------------------------------- accuracy target


@pytest.mark.slow
def test_ml_latest_small_test_rmse_with_tuned_settings(spark, sample_dir):
    cfg = load_config(["als.toml"])
    ratings = load_sample(spark, sample_dir)
    train, test = random_split(ratings, test_fraction=0.2, seed=42)
    train = train.cache()
    bias = fit_bias(train, cfg=cfg.bias, lo=cfg.train.rating_min, hi=cfg.train.rating_max)
    model = registry.fit("als", train, cfg=cfg, bias=bias)
    rmse = regression_metrics(model.predict(test))["rmse"]
    assert rmse <= 0.860
