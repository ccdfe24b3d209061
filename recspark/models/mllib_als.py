"""The MLlib ALS baseline (explicit feedback), wrapped in recspark's model contract.

MLlib minimises Σ (r_ui − p_u·q_i)² + λ (n_u ||p_u||² + n_i ||q_i||²) by alternating least
squares with no bias terms. It trains on the dense indices; predictions for pairs it
cannot score (unseen user or movie) fall back to the bias model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import Config
from recspark.models.base import with_fallback
from recspark.models.bias import BIAS_PREDICTION, ITEM_BIAS, USER_BIAS, BiasModel
from recspark.schema import (
    FACTORS,
    MOVIE_ID,
    MOVIE_IDX,
    RATING,
    USER_ID,
    USER_IDX,
    require_columns,
)
from recspark.seeds import derive_seed

_logger = logging.getLogger(__name__)
_RAW = "_mllib_raw"


@dataclass(frozen=True)
class MllibAlsModel:
    """A fitted MLlib ALS model plus the id maps and bias model it needs to predict.

    ``user_factors``: (user_id, user_idx, factors); ``item_factors``: (movie_id, movie_idx,
    factors). ``factors`` are MLlib's float vectors as array<double>.
    """

    als: ALSModel
    user_factors: DataFrame
    item_factors: DataFrame
    bias: BiasModel
    lo: float
    hi: float
    name: str = "mllib_als"

    def predict(self, pairs: DataFrame) -> DataFrame:
        """Score (user_id, movie_id) pairs; unseen ids get the bias prediction."""
        require_columns(pairs, [USER_ID, MOVIE_ID], stage=f"{self.name} prediction")
        base = pairs.drop(USER_IDX, MOVIE_IDX)
        indexed = base.join(
            self.user_factors.select(USER_ID, USER_IDX), USER_ID, "left"
        ).join(self.item_factors.select(MOVIE_ID, MOVIE_IDX), MOVIE_ID, "left")
        # MLlib rejects null ids; -1 is never a factor id, so it scores NaN like any unknown.
        indexed = indexed.fillna(-1, subset=[USER_IDX, MOVIE_IDX])
        scored = self.als.setPredictionCol(_RAW).transform(indexed)
        # coldStartStrategy="nan" marks unscorable rows with NaN; null lets the fallback in.
        scored = scored.withColumn(_RAW, F.when(~F.isnan(_RAW), F.col(_RAW)))
        scored = self.bias.annotate(scored)
        return with_fallback(
            scored, _RAW, F.col(BIAS_PREDICTION), lo=self.lo, hi=self.hi
        ).drop(USER_IDX, MOVIE_IDX, USER_BIAS, ITEM_BIAS, BIAS_PREDICTION)


def fit_mllib_als(
    train: DataFrame, *, cfg: Config, bias: BiasModel, validation: DataFrame | None = None
) -> MllibAlsModel:
    """Fit MLlib ALS on ``train`` (user_idx, movie_idx, rating, plus the ids).

    The ALS seed is derived from the root seed; ``checkpointInterval`` cuts lineage (the
    session's checkpoint directory must be set, as :func:`recspark.session.build_session`
    does). ``validation`` is unused: MLlib has no early stopping.
    """
    require_columns(train, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage="mllib_als fit")
    c = cfg.mllib_als
    als = ALS(
        rank=c.rank,
        maxIter=c.max_iter,
        regParam=c.reg_param,
        nonnegative=c.nonnegative,
        numUserBlocks=c.num_blocks,
        numItemBlocks=c.num_blocks,
        checkpointInterval=c.checkpoint_interval,
        userCol=USER_IDX,
        itemCol=MOVIE_IDX,
        ratingCol=RATING,
        coldStartStrategy="nan",
        seed=derive_seed(cfg.seed, "mllib_als"),
    )
    model = als.fit(train.select(USER_IDX, MOVIE_IDX, RATING))
    users = train.select(USER_ID, USER_IDX).distinct()
    movies = train.select(MOVIE_ID, MOVIE_IDX).distinct()
    user_factors = users.join(
        model.userFactors.select(F.col("id").alias(USER_IDX), F.col("features").alias(FACTORS)),
        USER_IDX,
    )
    item_factors = movies.join(
        model.itemFactors.select(F.col("id").alias(MOVIE_IDX), F.col("features").alias(FACTORS)),
        MOVIE_IDX,
    )
    cast = F.col(FACTORS).cast("array<double>").alias(FACTORS)
    return MllibAlsModel(
        als=model,
        user_factors=user_factors.select(USER_ID, USER_IDX, cast),
        item_factors=item_factors.select(MOVIE_ID, MOVIE_IDX, cast),
        bias=bias,
        lo=cfg.train.rating_min,
        hi=cfg.train.rating_max,
    )
