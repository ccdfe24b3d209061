"""scripts/als_numpy_ref.py, bench_als's single-process yardstick: its half-step against the
dense per-row solve, and its whole fit against recspark's fit_als from the same start."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recspark.models.als import AlsConfig, fit_als
from recspark.seeds import derive_seed
from tests.models.als._reference import (
    N_MOVIES,
    N_USERS,
    RANK,
    SEED,
    dense_step,
    ratings_frame,
    small_matrix,
    table_of,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import als_numpy_ref as ref  # noqa: E402


@pytest.mark.parametrize("weighted", [True, False])
def test_half_step_matches_the_dense_per_row_solve(weighted):
    rng = np.random.default_rng(5)
    ratings, mask = small_matrix()
    fixed = rng.normal(0, 0.7, (N_MOVIES, RANK + 1))
    r = sp.csr_matrix(np.where(mask, ratings, 0.0))
    cfg = AlsConfig(rank=RANK, reg_factors=0.3, reg_bias=0.2, weighted_reg=weighted)

    x = ref.half_step(r, fixed, mu=3.1, reg_factors=0.3, reg_bias=0.2, weighted=weighted)

    np.testing.assert_allclose(x, dense_step(ratings, mask, fixed, mu=3.1, cfg=cfg), atol=1e-10)


def test_fit_follows_recspark_als_from_the_same_start(spark):
    ratings, mask = small_matrix()
    users, items = np.nonzero(mask)
    cfg = AlsConfig(rank=RANK, max_iter=4, reg_factors=0.1, reg_bias=0.1, blocks=3)

    out = ref.fit(
        users,
        items,
        ratings[mask],
        rank=RANK,
        iters=4,
        reg=0.1,
        init_seed=derive_seed(SEED, "init", "movies"),
    )
    model = fit_als(ratings_frame(spark, ratings, mask), cfg=cfg, seed=SEED)

    assert out.mu == pytest.approx(model.global_mean, abs=1e-12)
    np.testing.assert_allclose(
        out.users, table_of(model.user_factors, "user_idx", N_USERS, RANK), atol=1e-9
    )
    np.testing.assert_allclose(
        out.items, table_of(model.item_factors, "movie_idx", N_MOVIES, RANK), atol=1e-9
    )
    np.testing.assert_allclose(out.train_rmse, model.history["train_rmse"], rtol=1e-9)
    assert len(out.iteration_s) == 4 and out.build_s >= 0
