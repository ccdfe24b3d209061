"""The blend's weights are a NumPy ridge regression; its predictions combine its members."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import load_config
from recspark.errors import ConfigError
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.blend import (
    BlendConfig,
    BlendModel,
    holdout_rmse,
    member_predictions,
    normal_equations,
    ridge_weights,
)
from recspark.schema import MOVIE_ID, MOVIE_IDX, PERSONALISED, PREDICTION, RATING, USER_ID, USER_IDX


@dataclass(frozen=True)
class Planted:
    """A fake member: predicts a·user_id + b·movie_id, personally only for user_id < known."""

    a: float
    b: float
    known: int = 100
    name: str = "planted"

    def predict(self, pairs: DataFrame) -> DataFrame:
        return pairs.withColumn(
            PREDICTION, F.lit(self.a) * F.col(USER_ID) + F.lit(self.b) * F.col(MOVIE_ID)
        ).withColumn(PERSONALISED, F.col(USER_ID) < F.lit(self.known))


def _pairs(spark):
    g = np.random.default_rng(3)
    rows = [(u, m, float(g.uniform(1, 5))) for u in range(1, 7) for m in range(1, 5)]
    return spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING]), np.array(rows)


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_weights_match_a_numpy_ridge_with_an_unpenalised_intercept(spark, reg):
    members = [Planted(0.5, 0.1), Planted(0.2, 0.6)]
    pairs, rows = _pairs(spark)
    scored = member_predictions(members, pairs)
    gram, xty, yty = normal_equations(scored, 2)
    w = ridge_weights(gram, xty, reg)

    u, m, y = rows[:, 0], rows[:, 1], rows[:, 2]
    x = np.column_stack([np.ones_like(u), 0.5 * u + 0.1 * m, 0.2 * u + 0.6 * m])
    # ridge as least squares on the augmented system [X; sqrt(λ)·P] w ≈ [y; 0]
    penalty = np.sqrt(reg) * np.diag([0.0, 1.0, 1.0])
    expected, *_ = np.linalg.lstsq(np.vstack([x, penalty]), np.concatenate([y, np.zeros(3)]), rcond=None)
    np.testing.assert_allclose(w, expected, rtol=1e-8, atol=1e-10)
    assert holdout_rmse(gram, xty, yty, w) == pytest.approx(np.sqrt(np.mean((x @ w - y) ** 2)))


def test_blend_predicts_the_weighted_sum_and_falls_back_where_no_member_is_personal(spark):
    members = (Planted(0.5, 0.1, known=5), Planted(0.2, 0.6, known=3))
    model = BlendModel(members, ("a", "b"), np.array([0.3, 0.5, 0.25]), lo=0.5, hi=5.0)
    pairs, _ = _pairs(spark)
    out = {(r[USER_ID], r[MOVIE_ID]): r for r in model.predict(pairs).collect()}
    assert len(out) == 24 and set(model.predict(pairs).columns) == {
        USER_ID, MOVIE_ID, RATING, PREDICTION, PERSONALISED}
    r = out[(2, 3)]  # both members personal: 0.3 + 0.5·1.3 + 0.25·2.2 = 1.5
    assert r[PREDICTION] == pytest.approx(1.5) and r[PERSONALISED]
    r = out[(6, 4)]  # no member personal: the first member's (fallback) prediction, clipped
    assert r[PREDICTION] == pytest.approx(3.4) and not r[PERSONALISED]
    assert out[(4, 4)][PREDICTION] == pytest.approx(min(5.0, 0.3 + 0.5 * 2.4 + 0.25 * 3.2))


def test_blend_config_rejects_itself_and_duplicates():
    for members in (("bias", "blend"), ("als", "als"), ()):
        with pytest.raises(ValueError):
            BlendConfig(members=members)
    with pytest.raises(ConfigError, match="singular"):
        ridge_weights(np.zeros((2, 2)), np.zeros(2), 0.0)


@pytest.mark.parametrize("refit", [True, False])
def test_refit_reuses_the_members_the_run_already_fitted_on_the_same_train(spark, refit):
    train, _ = _pairs(spark)
    cfg = load_config(overrides=['blend.members=["bias", "svd"]', f"blend.refit={str(refit).lower()}",
                                 "svd.rank=1", "svd.sweep=[]"])
    train = train.withColumn(USER_IDX, (F.col(USER_ID) - 1).cast("int")).withColumn(
        MOVIE_IDX, (F.col(MOVIE_ID) - 1).cast("int"))
    bias = fit_bias(train, cfg=cfg.bias)
    earlier = Planted(0.5, 0.1, name="svd")
    model = registry.fit("blend", train, cfg=cfg, bias=bias, fitted={"svd": earlier})
    if refit:  # svd taken from the run's fits; bias (not among them) is the train's baseline
        assert model.reused == ("svd",) and model.members[1] is earlier
        assert model.members[0] is bias
    else:  # the members fitted on the blend's fit part are kept
        assert model.reused == () and model.members[1] is not earlier
