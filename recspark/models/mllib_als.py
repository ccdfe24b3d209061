"""The MLlib ALS baseline (explicit feedback), wrapped in recspark's model contract.

MLlib minimises Σ (r_ui − p_u·q_i)² + λ (n_u ||p_u||² + n_i ||q_i||²) by alternating least
squares with no bias terms. It trains on the dense indices; predictions for pairs it
cannot score (unseen user or movie) fall back to the bias model.

Saved as ``als/`` (MLlib's own ALSModel format, so a loaded model predicts exactly as the
fitted one), ``user_factors/`` (user_id, user_idx, factors), ``item_factors/`` (movie_id,
movie_idx, factors), the fallback's bias tables and ``model.json``. It ranks with p_u·q_i
and cannot fold in users it did not see in training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import Field
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Section
from recspark.errors import ModelError
from recspark.io import runs, storage
from recspark.models.als.implicit import AlsImplicitConfig, ImplicitFactorModel
from recspark.models.base import with_fallback
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec, RankingInputs
from recspark.models.factor import FALLBACK_TABLES, factor_ranking_inputs, mllib_factor_table
from recspark.schema import (
    BIAS_PREDICTION,
    FACTORS,
    FEATURES,
    ITEM_BIAS,
    MLLIB_ID,
    MOVIE_ID,
    MOVIE_IDX,
    RATING,
    USER_BIAS,
    USER_ID,
    USER_IDX,
    require_columns,
)

_logger = logging.getLogger(__name__)
_RAW = "_mllib_raw"

MODEL_FORMAT = "recspark-mllib-als-model"
MODEL_VERSION = 1
_ALS, _USERS, _ITEMS = "als", "user_factors", "item_factors"
USER_FACTORS_SCHEMA = T.StructType(
    [T.StructField(USER_ID, T.LongType(), False), T.StructField(USER_IDX, T.IntegerType(), False),
     T.StructField(FACTORS, T.ArrayType(T.DoubleType()), False)]
)
ITEM_FACTORS_SCHEMA = T.StructType(
    [T.StructField(MOVIE_ID, T.LongType(), False), T.StructField(MOVIE_IDX, T.IntegerType(), False),
     T.StructField(FACTORS, T.ArrayType(T.DoubleType()), False)]
)


class MllibAlsConfig(Section):
    """MLlib ALS (explicit) baseline: MLlib's defaults except ``reg_param``.

    reg_param was chosen on a validation split of ml-latest-small's training part
    (validation RMSE: 0.1 → 0.886, 0.15 → 0.874, 0.2 → 0.882 at 10 iterations).
    """

    rank: int = Field(10, ge=1)
    max_iter: int = Field(10, ge=1)
    reg_param: float = Field(0.15, ge=0)
    nonnegative: bool = False
    num_blocks: int = Field(10, ge=1)
    checkpoint_interval: int = Field(10, ge=1)


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

    def ranking_inputs(self) -> RankingInputs:
        """``TOP_N``: raw scores p_u·q_i (no biases) for every user with factors against
        every movie with factors. Action: collects the item factors."""
        return factor_ranking_inputs(self.user_factors, self.item_factors, global_mean=0.0)

    def save(self, path: str) -> None:
        """``SAVE``: write the folder ``path`` (module docstring; replaced atomically).
        Action: writes the tables."""
        spark = self.user_factors.sparkSession
        with storage.staged(spark, path) as tmp:
            self.als.write().save(f"{tmp}/{_ALS}")
            runs.write_model_table(self.user_factors, USER_FACTORS_SCHEMA, f"{tmp}/{_USERS}")
            runs.write_model_table(self.item_factors, ITEM_FACTORS_SCHEMA, f"{tmp}/{_ITEMS}")
            self.bias.write_tables(tmp, FALLBACK_TABLES)
            runs.write_model_meta(spark, tmp, {
                runs.NAME_KEY: self.name, "format": MODEL_FORMAT, "version": MODEL_VERSION,
                "lo": self.lo, "hi": self.hi, "fallback": self.bias.meta(),
            })
        _logger.info("saved %s model to %s", self.name, path)

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "MllibAlsModel":
        """Read what :meth:`save` wrote. Raises :class:`ModelError` when the folder is
        missing, incomplete or of another format or version. Action: MLlib reads the ALS
        model's metadata; the tables are read lazily."""
        meta = runs.read_model_meta(
            spark, path, expect=(MODEL_FORMAT, MODEL_VERSION), what="MLlib ALS model"
        )
        if not storage.exists(spark, f"{path}/{_ALS}/metadata"):
            raise ModelError(f"{path} is not a complete saved model ({_ALS}/ is missing): re-train it")
        return cls(
            als=ALSModel.load(f"{path}/{_ALS}"),
            user_factors=runs.read_model_table(spark, path, _USERS, USER_FACTORS_SCHEMA),
            item_factors=runs.read_model_table(spark, path, _ITEMS, ITEM_FACTORS_SCHEMA),
            bias=BiasModel.read_tables(spark, path, meta["fallback"], FALLBACK_TABLES),
            lo=float(meta["lo"]),
            hi=float(meta["hi"]),
            name=str(meta[runs.NAME_KEY]),
        )


def fit_mllib_als(
    train: DataFrame,
    *,
    cfg: MllibAlsConfig,
    seed: int,
    bias: BiasModel,
    lo: float = 0.5,
    hi: float = 5.0,
) -> MllibAlsModel:
    """Fit MLlib ALS on ``train`` (user_idx, movie_idx, rating, plus the ids).

    ``seed``: the stage seed of MLlib's ALS; ``checkpointInterval`` cuts lineage when the
    SparkContext has a checkpoint directory (the jobs fit inside
    :func:`recspark.io.storage.checkpoints`). MLlib has no early stopping, so no validation ratings are taken.
    """
    require_columns(train, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage="mllib_als fit")
    c = cfg
    if c.max_iter > c.checkpoint_interval and not train.sparkSession.sparkContext.getCheckpointDir():
        _logger.warning(
            "mllib_als: no checkpoint directory, so the lineage of %d iterations is never cut "
            "and a long fit can die of StackOverflowError: fit inside "
            "recspark.io.storage.checkpoints (the jobs do)", c.max_iter,
        )
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
        seed=seed,
    )
    model = als.fit(train.select(USER_IDX, MOVIE_IDX, RATING))
    users = train.select(USER_ID, USER_IDX).distinct()
    movies = train.select(MOVIE_ID, MOVIE_IDX).distinct()
    user_factors = users.join(
        model.userFactors.select(F.col(MLLIB_ID).alias(USER_IDX), F.col(FEATURES).alias(FACTORS)),
        USER_IDX,
    )
    item_factors = movies.join(
        model.itemFactors.select(F.col(MLLIB_ID).alias(MOVIE_IDX), F.col(FEATURES).alias(FACTORS)),
        MOVIE_IDX,
    )
    cast = F.col(FACTORS).cast("array<double>").alias(FACTORS)
    return MllibAlsModel(
        als=model,
        user_factors=user_factors.select(USER_ID, USER_IDX, cast),
        item_factors=item_factors.select(MOVIE_ID, MOVIE_IDX, cast),
        bias=bias,
        lo=lo,
        hi=hi,
    )


SPEC = ModelSpec(
    name="mllib_als",
    summary="MLlib ALS, explicit feedback, no biases; the baseline of recspark's ALS",
    fit=fit_mllib_als,
    abilities=frozenset({Ability.PREDICT, Ability.TOP_N, Ability.FACTORS, Ability.SAVE}),
    config=MllibAlsConfig,
    load=MllibAlsModel.load,
)


def fit_mllib_als_implicit(
    train: DataFrame, *, cfg: AlsImplicitConfig, seed: int
) -> ImplicitFactorModel:
    """MLlib ALS with ``implicitPrefs=True`` on ``train`` (user_id, movie_id, user_idx,
    movie_idx, rating): the baseline of ``als_implicit``, with its section's rank, λ
    (``reg``; MLlib always weights it by the entity's preferences, as ``weighted_reg =
    true`` does), α, iterations and ``min_rating`` (ratings below it dropped). MLlib's
    confidence is 1 + α·r; with ``confidence = "binary"`` every kept rating is passed as 1.

    Returns an :class:`~recspark.models.als.implicit.ImplicitFactorModel` named
    ``mllib_als_implicit`` (scores x_u·y_i; biases 0). Actions: MLlib's fit and the two
    factor tables (cached).
    """
    require_columns(
        train, [USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING], stage="mllib_als_implicit fit"
    )
    kept = train.where(F.col(RATING) >= F.lit(float(cfg.min_rating)))
    value = F.col(RATING) if cfg.confidence == "rating" else F.lit(1.0)
    als = ALS(
        rank=cfg.rank,
        maxIter=cfg.max_iter,
        regParam=cfg.reg,
        alpha=cfg.alpha,
        implicitPrefs=True,
        numUserBlocks=cfg.blocks,
        numItemBlocks=cfg.blocks,
        checkpointInterval=cfg.checkpoint_every,
        userCol=USER_IDX,
        itemCol=MOVIE_IDX,
        ratingCol=RATING,
        seed=seed,
    )
    fitted = als.fit(kept.select(USER_IDX, MOVIE_IDX, value.alias(RATING)))
    return ImplicitFactorModel(
        name="mllib_als_implicit",
        global_mean=0.0,
        rank=cfg.rank,
        user_factors=mllib_factor_table(kept, fitted.userFactors, USER_ID, USER_IDX),
        item_factors=mllib_factor_table(kept, fitted.itemFactors, MOVIE_ID, MOVIE_IDX),
        settings={**cfg.model_dump(), "seed": seed, "solver": "mllib"},
    )


IMPLICIT_SPEC = ModelSpec(
    name="mllib_als_implicit",
    summary="MLlib ALS with implicitPrefs=True; the baseline of als_implicit",
    fit=fit_mllib_als_implicit,
    abilities=frozenset({Ability.TOP_N, Ability.FACTORS, Ability.SAVE}),
    config=AlsImplicitConfig,
    section="als_implicit",
    load=ImplicitFactorModel.load,
)
