"""Item- and user-based neighbourhood collaborative filtering with a baseline (``item_knn``,
``user_knn``).

Prediction, the KNN-with-baseline form (Koren 2010, "Factor in the neighbors", eq. 3;
Surprise's ``KNNBaseline``), item-based:

    r̂(u, i) = b_ui + Σ_{j ∈ N_k(i; u)} s_ij (r_uj − b_uj) / (λ + Σ_{j ∈ N_k(i; u)} s_ij)

with b_ui = μ + b_u + b_i the damped bias model fitted on the same training ratings and
N_k(i; u) the (at most) k movies most similar to i among i's kept neighbours that u rated.
User-based swaps the roles: the k users most similar to u among u's kept neighbours who
rated i, weighted by their residuals r_vi − b_vi. Where no such neighbour exists the bias
model predicts (``personalised`` false). λ = ``damping`` (0: Surprise's form) shrinks the
correction towards the baseline when the neighbours are few or weakly similar; user-based
it is what brings the model below the baseline (validation RMSE 0.880 → 0.848 at λ 0.3,
``conf/knn.toml``).

Similarities (:mod:`recspark.similarity`, ``measure``) are computed on the baseline
residuals (``values = "residual"``: cosine of residuals with shrinkage is the
"pearson_baseline" of Surprise) or the raw ratings, with a minimum co-support and shrinkage
s · n / (n + β). Only the ``neighbours`` most similar (positive) entities are kept per movie
(user): computed block by block (:mod:`recspark.models.neighbours.matrix`), rows with more
than ``max_row_entries`` entries sampled down first.

Top-N (``item_knn`` only): score(u, i) = Σ_{j ∈ R(u), j ∈ N(i)} s_ij, the sum of i's kept
similarities to the movies u rated, not weighted by u's residuals. The unweighted sum
ranks by "looks like what u watches", which is what a held-out test item is; weighting by
residuals would push down movies near ones u rated below its baseline although u still
chose to watch them (a design choice, not compared on validation).

Saved as ``neighbours/`` (entity, neighbour_id, similarity, co_support), ``residuals/``
(user_id, movie_id, residual: the training ratings minus the baseline, which re-scoring
needs), ``user_bias/``, ``item_bias/`` and ``model.json``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pydantic import Field, model_validator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Section
from recspark.errors import ModelError
from recspark.io import runs, storage
from recspark.models.base import with_fallback
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec, RankingInputs, UserBlock
from recspark.models.neighbours.matrix import collect_matrix, map_column_blocks
from recspark.schema import (
    BIAS,
    BIAS_PREDICTION,
    CO_SUPPORT,
    MOVIE_ID,
    NEIGHBOUR_ID,
    PERSONALISED,
    PREDICTION,
    RATING,
    RESIDUAL,
    SIMILARITY,
    USER_ID,
    require_columns,
)
from recspark.similarity import MEASURES, Columns, prepare, similarity_pairs, top_k_pairs

_logger = logging.getLogger(__name__)

MODEL_FORMAT = "recspark-knn-model"
MODEL_VERSION = 1
_RAW, _DELTA = "_knn_raw", "_knn_delta"
_NEIGHBOURS, _RESIDUALS, _USER_BIAS, _ITEM_BIAS = "neighbours", "residuals", "user_bias", "item_bias"


class KnnConfig(Section):
    """Neighbourhood model settings (see the module docstring)."""

    measure: Literal[MEASURES] = "cosine"  # type: ignore[valid-type]
    values: Literal["residual", "rating"] = "residual"
    k: int = Field(40, ge=1)  # neighbours averaged per prediction
    neighbours: int = Field(100, ge=1)  # most similar kept per movie (user)
    min_support: int = Field(1, ge=1)
    shrinkage: float = Field(100.0, ge=0)
    damping: float = Field(0.0, ge=0)  # λ in Σ s·res / (Σ s + λ): few weak neighbours, small correction
    max_row_entries: int = Field(0, ge=0)  # cap on a user's (movie's) entries; 0 = none
    max_cells: int = Field(2_000_000, ge=1000)  # block × all entities cells per block (bounds its co-rated cells)

    @model_validator(mode="after")
    def _k_within_kept(self) -> "KnnConfig":
        check_k(self.k, self.neighbours)
        return self


def check_k(k: int, neighbours: int) -> None:
    """ValueError (a config section's check) unless ``k`` ≤ ``neighbours``."""
    if k > neighbours:
        raise ValueError(
            f"k ({k}) must not exceed neighbours ({neighbours}): a prediction averages the k "
            "most similar among the kept neighbours"
        )


@dataclass(frozen=True)
class Side:
    """Which entity has neighbours: ``entity`` (its id column) and ``other``."""

    entity: str
    other: str


ITEM = Side(MOVIE_ID, USER_ID)
USER = Side(USER_ID, MOVIE_ID)
_SIDES = {"item": ITEM, "user": USER}


def neighbour_schema(side: Side) -> T.StructType:
    """entity id, neighbour_id, similarity, co_support."""
    return T.StructType(
        [
            T.StructField(side.entity, T.LongType(), False),
            T.StructField(NEIGHBOUR_ID, T.LongType(), False),
            T.StructField(SIMILARITY, T.DoubleType(), False),
            T.StructField(CO_SUPPORT, T.LongType(), False),
        ]
    )


@dataclass(frozen=True)
class NeighbourRows:
    """A neighbour table as padded rows: ``nbr[i]`` (K,) are the positions (into
    ``item_ids``, the entity ids: movies for item_knn, users for user_knn) of entity i's
    neighbours, most similar first, −1 past the last; ``sim[i]`` their similarities."""

    item_ids: np.ndarray
    nbr: np.ndarray  # (M, K) int32
    sim: np.ndarray  # (M, K) float64

    @classmethod
    def collect(cls, neighbours: DataFrame, side: Side = None) -> "NeighbourRows":  # type: ignore[assignment]
        """From the (entity id, neighbour_id, similarity) table of ``side`` (default: item
        side, entity movie_id). Action: one collect."""
        entity = (side or ITEM).entity
        pdf = neighbours.select(entity, NEIGHBOUR_ID, SIMILARITY).toPandas()
        i_ids, j_ids = pdf[entity].to_numpy(np.int64), pdf[NEIGHBOUR_ID].to_numpy(np.int64)
        sims = pdf[SIMILARITY].to_numpy(np.float64)
        item_ids = np.unique(np.concatenate([i_ids, j_ids]))
        i, j = np.searchsorted(item_ids, i_ids), np.searchsorted(item_ids, j_ids)
        order = np.lexsort((j, -sims, i))  # per movie: most similar first, ties by smaller id
        i, j, sims = i[order], j[order], sims[order]
        counts = np.bincount(i, minlength=item_ids.size)
        width = max(int(counts.max(initial=0)), 1)
        slot = np.arange(i.size) - np.repeat(np.cumsum(counts) - counts, counts)
        nbr = np.full((item_ids.size, width), -1, dtype=np.int32)
        sim = np.zeros((item_ids.size, width))
        nbr[i, slot], sim[i, slot] = j, sims
        return cls(item_ids, nbr, sim)


def block_deltas(
    rows: NeighbourRows, pair_users: np.ndarray, pair_items: np.ndarray, rated_users: np.ndarray,
    rated_items: np.ndarray, residuals: np.ndarray, *, k: int, damping: float = 0.0,
    max_cells: int = 4_000_000,
) -> np.ndarray:
    """The KNN-with-baseline correction of every pair (NaN where no neighbour was rated).

    Item side: ``pair_users``/``pair_items`` are the pairs' user and movie ids, ``rated_*``
    and ``residuals`` the training residuals of those users. For pair (u, i) the neighbours
    of i are scanned most similar first; the first k that u rated give Σ s·res / (Σ s + λ),
    λ = ``damping``. User
    side: the same with the roles swapped (movies in ``pair_users``, users in
    ``pair_items``: the first k neighbours of u who rated i). Memory
    O(pairs chunk × K) with chunks of ``max_cells`` cells; sorted-key lookups, no loop per pair.
    """
    m = rows.item_ids.size
    rated_pos = np.searchsorted(rows.item_ids, rated_items)
    known = (rated_pos < m) & (rows.item_ids[np.minimum(rated_pos, m - 1)] == rated_items)
    keys = rated_users[known].astype(np.int64) * m + rated_pos[known]  # users are ids: fine for int64
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], residuals[known][order]
    pos = np.searchsorted(rows.item_ids, pair_items)
    item_known = (pos < m) & (rows.item_ids[np.minimum(pos, m - 1)] == pair_items)
    out = np.full(pair_users.size, np.nan)
    chunk = max(1, max_cells // rows.nbr.shape[1])
    for a in range(0, pair_users.size, chunk):
        sel = np.arange(a, min(a + chunk, pair_users.size))
        sel = sel[item_known[sel]]
        nbr, sim = rows.nbr[pos[sel]], rows.sim[pos[sel]]
        want = pair_users[sel, None].astype(np.int64) * m + nbr
        at = np.minimum(np.searchsorted(keys, want), max(keys.size - 1, 0))
        found = (nbr >= 0) & (keys.size > 0) & (keys[at] == want) & (sim > 0)
        use = found & (np.cumsum(found, axis=1) <= k)
        den = np.where(use, sim, 0.0).sum(axis=1)
        num = np.where(use, sim * values[at] if keys.size else 0.0, 0.0).sum(axis=1)
        out[sel] = np.where(den > 0, num / np.where(den > 0, den + damping, 1.0), np.nan)
    return out


_DELTA_SCHEMA = T.StructType(
    [T.StructField(USER_ID, T.LongType(), False), T.StructField(MOVIE_ID, T.LongType(), False),
     T.StructField(_DELTA, T.DoubleType(), False)]
)
_PART = "_knn_part"


def knn_deltas(
    pairs: DataFrame, neighbours: DataFrame, residuals: DataFrame, *, side: Side, k: int,
    damping: float = 0.0, blocks: int = 16,
) -> DataFrame:
    """(user_id, movie_id, ``_knn_delta``) of :func:`block_deltas` for the distinct pairs of
    ``pairs``: the pairs and the residuals (user_id, movie_id, residual) are co-grouped by a
    hash of the other side's id (the user for item_knn) into ``blocks`` groups, so each
    group holds every residual its pairs need; the padded neighbour rows are broadcast.
    Action: collects the neighbour table; the result is lazy."""
    spark = pairs.sparkSession
    table = spark.sparkContext.broadcast(NeighbourRows.collect(neighbours, side))

    def task(left: pa.Table, right: pa.Table) -> pa.Table:
        rows, ents = (left.column(c).to_numpy().astype(np.int64) for c in (side.other, side.entity))
        delta = block_deltas(
            table.value, rows, ents, right.column(side.other).to_numpy().astype(np.int64),
            right.column(side.entity).to_numpy().astype(np.int64),
            right.column(RESIDUAL).to_numpy().astype(np.float64), k=k, damping=damping,
        )
        ok = ~np.isnan(delta)
        found = {side.other: rows[ok], side.entity: ents[ok]}
        return pa.table({USER_ID: found[USER_ID], MOVIE_ID: found[MOVIE_ID], _DELTA: delta[ok]})

    task.__annotations__ = {"left": pa.Table, "right": pa.Table, "return": pa.Table}
    part = F.pmod(F.xxhash64(side.other), F.lit(blocks)).alias(_PART)
    q = pairs.select(F.col(USER_ID).cast("long"), F.col(MOVIE_ID).cast("long")).distinct()
    r = residuals.select(F.col(USER_ID).cast("long"), F.col(MOVIE_ID).cast("long"), RESIDUAL)
    return (
        q.select("*", part).groupBy(_PART)
        .cogroup(r.select("*", part).groupBy(_PART))
        .applyInArrow(task, _DELTA_SCHEMA)
    )


def neighbour_batch(
    entities: np.ndarray, neighbours: np.ndarray, sims: np.ndarray, support: np.ndarray, side: Side
) -> pa.RecordBatch:
    """One Arrow batch of the neighbour table (:func:`neighbour_schema` of ``side``)."""
    return pa.RecordBatch.from_arrays(
        [pa.array(entities, pa.int64()), pa.array(neighbours, pa.int64()),
         pa.array(sims, pa.float64()), pa.array(support.astype(np.int64))],
        schema=pa.schema(
            [pa.field(f.name, pa.int64() if f.name != SIMILARITY else pa.float64(), False)
             for f in neighbour_schema(side).fields]
        ),
    )


def _with_columns(matrix: sp.csc_matrix) -> tuple[sp.csc_matrix, Columns]:
    """The matrix (its column slices are the query blocks) and its :func:`prepare` form."""
    return matrix, prepare(matrix)


def _neighbour_block(
    data: tuple[sp.csc_matrix, Columns], cols: np.ndarray, *, ids: np.ndarray, cfg: KnnConfig,
    side: Side,
) -> pa.RecordBatch:
    """The kept neighbours of the entities at column positions ``cols`` (one Spark task):
    similarities at the co-rated cells only, then the best ``cfg.neighbours`` per entity."""
    matrix, columns = data
    rows, nbr, sims, n = similarity_pairs(
        cfg.measure, matrix[:, cols], columns, min_support=cfg.min_support, shrinkage=cfg.shrinkage
    )
    top_rows, top_nbr, top_vals = top_k_pairs(rows, nbr, sims, cfg.neighbours, exclude=cols)
    # the co-support of the kept cells: both lists are sorted by (row, column) cell key
    m = matrix.shape[1]
    cell = rows.astype(np.int64) * m + nbr
    support = n[np.searchsorted(cell, top_rows.astype(np.int64) * m + top_nbr)]
    return neighbour_batch(ids[cols[top_rows]], ids[top_nbr], top_vals, support, side)


def neighbour_table(
    values: DataFrame, *, side: Side, cfg: KnnConfig, value_col: str, seed: int = 0
) -> DataFrame:
    """The ``cfg.neighbours`` most similar entities of every entity of ``values`` (user_id,
    movie_id, ``value_col``), similarity > 0 (schema :func:`neighbour_schema`).

    Action: collects the triples to the driver (:func:`collect_matrix`, rows of more than
    ``cfg.max_row_entries`` entries sampled with ``seed``); the result is lazy, one Spark
    task per few blocks of ``cfg.max_cells`` similarity cells.
    """
    m = collect_matrix(
        values, row_col=side.other, col_col=side.entity, value_col=value_col,
        max_row_entries=cfg.max_row_entries, seed=seed,
    )
    fn = functools.partial(_neighbour_block, ids=m.col_ids, cfg=cfg, side=side)
    return map_column_blocks(
        values.sparkSession, m.matrix, fn, neighbour_schema(side), max_cells=cfg.max_cells,
        prepare=_with_columns,
    )


@dataclass(frozen=True)
class ItemKnnScorer:
    """``TOP_N`` of ``item_knn``: ``weights`` (M × M CSR) holds s_ij at [j, i] for every
    kept neighbour j of movie i, so a block's scores are R_binary @ weights."""

    item_ids: np.ndarray
    weights: sp.csr_matrix
    shared_scores: None = None

    def scores(self, block: UserBlock, rows: slice) -> np.ndarray:
        lo, hi = int(block.rated_indptr[rows.start]), int(block.rated_indptr[rows.stop])
        indptr = block.rated_indptr[rows.start : rows.stop + 1] - lo
        rated = sp.csr_matrix(
            (np.ones(hi - lo), block.rated_items[lo:hi], indptr),
            shape=(rows.stop - rows.start, self.item_ids.size),
        )
        return np.asarray((rated @ self.weights).toarray())


@dataclass(frozen=True)
class KnnModel:
    """A fitted neighbourhood model (see the module docstring): ``neighbours`` (entity,
    neighbour_id, similarity, co_support), ``residuals`` (user_id, movie_id, residual),
    the ``bias`` baseline, ``side`` ("item" or "user") and ``k``."""

    name: str
    side: str
    k: int
    neighbours: DataFrame
    residuals: DataFrame
    bias: BiasModel
    lo: float = 0.5
    hi: float = 5.0
    damping: float = 0.0

    def deltas(self, pairs: DataFrame) -> DataFrame:
        """(user_id, movie_id, ``_knn_delta``): the similarity-weighted mean residual of the
        k most similar rated neighbours, for the distinct pairs that have any
        (:func:`knn_deltas`)."""
        return knn_deltas(
            pairs, self.neighbours, self.residuals, side=_SIDES[self.side], k=self.k,
            damping=self.damping,
        )

    def predict(self, pairs: DataFrame) -> DataFrame:
        """``PREDICT``: ``pairs`` (user_id, movie_id, ...) plus ``prediction`` (baseline plus
        the neighbours' weighted residual, clipped) and ``personalised``."""
        require_columns(pairs, [USER_ID, MOVIE_ID], stage=f"{self.name} prediction")
        columns = [c for c in pairs.columns if c not in (PREDICTION, PERSONALISED)]
        scored = (
            self.bias.annotate(pairs.select(*columns))
            .join(self.deltas(pairs), [USER_ID, MOVIE_ID], "left")
            .withColumn(_RAW, F.col(BIAS_PREDICTION) + F.col(_DELTA))
        )
        return with_fallback(
            scored, _RAW, F.col(BIAS_PREDICTION), lo=self.lo, hi=self.hi
        ).select(*columns, PREDICTION, PERSONALISED)

    def ranking_inputs(self) -> RankingInputs:
        """``TOP_N`` (item side): every training user against every movie with neighbours or
        ratings (:class:`ItemKnnScorer`). Action: collects the neighbour table."""
        if self.side != "item":
            raise ModelError(f"{self.name}: only item neighbourhoods rank movies")
        nb = self.neighbours.select(MOVIE_ID, NEIGHBOUR_ID, SIMILARITY).toPandas()
        items = self.residuals.select(MOVIE_ID).distinct().toPandas()[MOVIE_ID].to_numpy(np.int64)
        item_ids = np.unique(np.concatenate([items, nb[MOVIE_ID].to_numpy(np.int64)]))
        i = np.searchsorted(item_ids, nb[MOVIE_ID].to_numpy(np.int64))
        j = np.searchsorted(item_ids, nb[NEIGHBOUR_ID].to_numpy(np.int64))
        weights = sp.csr_matrix(
            (nb[SIMILARITY].to_numpy(np.float64), (j, i)), shape=(item_ids.size, item_ids.size)
        )
        users = self.residuals.select(USER_ID).distinct()
        return RankingInputs(users=users, scorer=ItemKnnScorer(item_ids, weights))

    def save(self, path: str) -> None:
        """``SAVE``: the tables of the module docstring and ``model.json``. Action: writes."""
        spark = self.neighbours.sparkSession
        s = _SIDES[self.side]
        meta = {
            runs.NAME_KEY: self.name, "format": MODEL_FORMAT, "version": MODEL_VERSION,
            "side": self.side, "k": self.k, "damping": self.damping, "lo": self.lo, "hi": self.hi,
            "global_mean": self.bias.global_mean,
        }
        with storage.staged(spark, path) as tmp:
            for name, df, schema in self._tables(s):
                runs.write_model_table(df, schema, f"{tmp}/{name}")
            runs.write_model_meta(spark, tmp, meta)
        _logger.info("saved %s model to %s", self.name, path)

    def _tables(self, s: Side) -> list[tuple[str, DataFrame, T.StructType]]:
        return [
            (_NEIGHBOURS, self.neighbours, neighbour_schema(s)),
            (_RESIDUALS, self.residuals, _RESIDUAL_SCHEMA),
            (_USER_BIAS, self.bias.user_bias, _bias_schema(USER_ID)),
            (_ITEM_BIAS, self.bias.item_bias, _bias_schema(MOVIE_ID)),
        ]

    @classmethod
    def load(cls, spark: SparkSession, path: str) -> "KnnModel":
        """Read what :meth:`save` wrote (lazily); :class:`ModelError` when the folder is
        missing, incomplete or of another format or version."""
        meta = runs.read_model_meta(spark, path)
        if (meta.get("format"), meta.get("version")) != (MODEL_FORMAT, MODEL_VERSION):
            raise ModelError(
                f"{path} is not a version-{MODEL_VERSION} kNN model (format "
                f"{meta.get('format')!r}, version {meta.get('version')!r}): re-train it"
            )
        s = _SIDES[meta["side"]]
        read = functools.partial(runs.read_model_table, spark, path)
        lo, hi = float(meta["lo"]), float(meta["hi"])
        bias = BiasModel(
            float(meta["global_mean"]), read(_USER_BIAS, _bias_schema(USER_ID)),
            read(_ITEM_BIAS, _bias_schema(MOVIE_ID)), lo=lo, hi=hi,
        )
        return cls(
            name=str(meta[runs.NAME_KEY]), side=str(meta["side"]), k=int(meta["k"]),
            neighbours=read(_NEIGHBOURS, neighbour_schema(s)),
            residuals=read(_RESIDUALS, _RESIDUAL_SCHEMA), bias=bias, lo=lo, hi=hi,
            damping=float(meta.get("damping", 0.0)),
        )


_RESIDUAL_SCHEMA = T.StructType(
    [
        T.StructField(USER_ID, T.LongType(), False),
        T.StructField(MOVIE_ID, T.LongType(), False),
        T.StructField(RESIDUAL, T.DoubleType(), False),
    ]
)


def _bias_schema(id_col: str) -> T.StructType:
    return T.StructType(
        [T.StructField(id_col, T.LongType(), False), T.StructField(BIAS, T.DoubleType(), False)]
    )


def residual_table(train: DataFrame, bias: BiasModel, *, keep_rating: bool = False) -> DataFrame:
    """(user_id, movie_id[, rating], residual = r − (μ + b_u + b_i)) of ``train``, computed
    and cached (localCheckpoint: an action)."""
    return (
        bias.annotate(train.select(USER_ID, MOVIE_ID, RATING))
        .select(USER_ID, MOVIE_ID, *([RATING] if keep_rating else []),
                (F.col(RATING) - F.col(BIAS_PREDICTION)).alias(RESIDUAL))
        .localCheckpoint()
    )


def fit_knn(
    train: DataFrame, *, side: str, name: str, cfg: KnnConfig, bias: BiasModel, seed: int,
    lo: float, hi: float,
) -> KnnModel:
    """Fit a neighbourhood model on ``train`` (user_id, movie_id, rating) with the baseline
    ``bias`` fitted on the same ratings. Actions: the residuals and the neighbour table are
    computed and cached (localCheckpoint)."""
    require_columns(train, [USER_ID, MOVIE_ID, RATING], stage=f"{name} fit")
    s = _SIDES[side]
    residuals = residual_table(train, bias, keep_rating=True)
    value_col = RESIDUAL if cfg.values == "residual" else RATING
    neighbours = neighbour_table(residuals, side=s, cfg=cfg, value_col=value_col, seed=seed)
    neighbours = neighbours.localCheckpoint()
    _logger.info("%s: %s similarity on %s, %d neighbours kept", name, cfg.measure, value_col,
                 cfg.neighbours)
    return KnnModel(
        name=name, side=side, k=cfg.k, neighbours=neighbours,
        residuals=residuals.drop(RATING), bias=bias, lo=lo, hi=hi, damping=cfg.damping,
    )


def _fit_item(train, *, cfg: KnnConfig, bias: BiasModel, seed: int, lo: float, hi: float):
    return fit_knn(train, side="item", name="item_knn", cfg=cfg, bias=bias, seed=seed, lo=lo, hi=hi)


def _fit_user(train, *, cfg: KnnConfig, bias: BiasModel, seed: int, lo: float, hi: float):
    return fit_knn(train, side="user", name="user_knn", cfg=cfg, bias=bias, seed=seed, lo=lo, hi=hi)


ITEM_SPEC = ModelSpec(
    name="item_knn",
    summary="item-based kNN with baseline: μ + b_u + b_i + weighted residuals of similar movies",
    fit=_fit_item,
    abilities=frozenset({Ability.PREDICT, Ability.TOP_N, Ability.SAVE}),
    config=KnnConfig,
    load=KnnModel.load,
)
USER_SPEC = ModelSpec(
    name="user_knn",
    summary="user-based kNN with baseline: μ + b_u + b_i + weighted residuals of similar users",
    fit=_fit_user,
    abilities=frozenset({Ability.PREDICT, Ability.SAVE}),
    config=KnnConfig,
    load=KnnModel.load,
)
