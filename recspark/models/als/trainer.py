"""The ALS trainer: builds the cached sides once, then iterates through the shared loop.

:class:`Trainer` is driver-side only. :meth:`Trainer.prepare` builds and caches the user
and movie sides (:mod:`recspark.models.als.sides`), measures them from the summaries the
jobs that build them report, picks broadcast or routed per side (``als.mode``; ``auto``
broadcasts a side whose factor table fits under ``als.broadcast_max_mb``) and plans the
routes a routed side needs.
:meth:`Trainer.run` then runs :class:`recspark.models.iterative.Loop`, one user half-step
and one movie half-step per iteration, no early stopping (the last iterate is kept), the
lineage of routed sides cut every ``als.checkpoint_every`` iterations.

History (one row per iteration): training RMSE from the movie step's normal equations
(i.e. of the model after the iteration), the objective J, validation RMSE when validation
ratings are given (computed in the movie step: pairs the model knows are scored by it, the
rest by the bias model's fallback, all clipped to the rating scale), and wall seconds.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from pyspark import RDD, StorageLevel
from pyspark.accumulators import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark import blocks as blk
from recspark.errors import DataQualityError
from recspark.log import stage
from recspark.models.als.kernel import init_factors, tile_width
from recspark.models.als.sides import (
    Params,
    SideSummary,
    Solved,
    Stats,
    SummaryParam,
    ValidationBlock,
    initial_rows,
    make_side,
    solve_broadcast,
    solve_routed,
    summarised,
    transposed_pieces,
    validation_blocks,
)
from recspark.models.bias import BiasModel
from recspark.models.factor import factor_frame, factor_schema
from recspark.models.iterative import Iteration, IterationResult, Loop, LoopResult
from recspark.schema import BIAS, FACTORS, MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX
from recspark.seeds import derive_seed

if TYPE_CHECKING:  # pragma: no cover - the config lives in the package's __init__
    import pandas as pd

    from recspark.models.als import AlsConfig

_logger = logging.getLogger(__name__)

_STORAGE = StorageLevel.MEMORY_AND_DISK


@dataclass
class SideState:
    """The latest rows of one side: a driver table (broadcast) or a block RDD (routed)."""

    table: np.ndarray | None = None  # (n_total, d), rows of untrained ids unused
    trained: np.ndarray | None = None  # ids of the rows solved (driver mode)
    rdd: RDD | None = None

    def release(self) -> None:
        """Unpersist the block RDD, if any."""
        if self.rdd is not None:
            self.rdd.unpersist()


class Trainer:
    """One fit: the cached sides, the routes and the iterations. Driver-side only.

    Subclasses (implicit ALS) change ``name``, the row width ``d``, :meth:`half_step_params`
    and :meth:`run`; the sides, routes and factor movement stay the same."""

    #: The model name in log lines, job descriptions and cached RDD names.
    name = "als"

    def __init__(
        self,
        ratings: DataFrame,
        *,
        cfg: "AlsConfig",
        seed: int,
        lo: float,
        hi: float,
        bias: BiasModel | None,
        validation: DataFrame | None,
    ) -> None:
        self.spark = ratings.sparkSession
        self.sc = self.spark.sparkContext
        self.ratings = ratings
        self.cfg = cfg
        self.seed = seed
        self.lo, self.hi = lo, hi
        self.bias = bias
        self.validation = validation
        self.n = blk.resolve_blocks(self.sc, cfg.blocks)
        self.d = cfg.rank + 1
        self._persisted: list[RDD] = []

    # ---------------------------------------------------------------- set-up

    def _persist(self, rdd: RDD, name: str) -> RDD:
        rdd = rdd.persist(_STORAGE).setName(name)
        self._persisted.append(rdd)
        return rdd

    def prepare(self) -> None:
        """Build and cache the two sides, measure them (their builds' summaries), plan routes."""
        start = time.perf_counter()
        val_blocks = self._build_sides()
        users = self._materialise(self.users, self.user_summaries)
        built = time.perf_counter()
        items = self._materialise(self.items, self.item_summaries)
        _logger.info(
            "%s: user blocks built in %.1f s, movie blocks in %.1f s",
            self.name, built - start, time.perf_counter() - built,
        )
        if val_blocks is not None:
            val_blocks.unpersist()
        self._measure(users, items)
        self.bc_users = self._broadcastable(self.n_users)
        self.bc_items = self._broadcastable(self.n_items)
        _logger.info(
            "%s: %d ratings, %d users, %d movies in %d blocks; μ = %.4f; users %s, movies %s",
            self.name,
            self.nnz,
            self.trained_users,
            self.trained_items,
            self.n,
            self.global_mean,
            "broadcast" if self.bc_users else "routed",
            "broadcast" if self.bc_items else "routed",
        )
        self._plan_routes()

    def _build_sides(self) -> RDD | None:
        """Cache the user sides and the movie sides (with the validation ratings); returns
        the validation blocks to release once the movie sides are materialised."""
        n = self.n
        ratings = self.ratings.select(USER_IDX, MOVIE_IDX, RATING)
        make = functools.partial(make_side, width=tile_width(self.cfg.rank))
        self.user_summaries = self.sc.accumulator({}, SummaryParam())
        self.item_summaries = self.sc.accumulator({}, SummaryParam())
        # One shuffle of the ratings into user blocks, tiled as they are assembled; the
        # movie blocks are the user blocks transposed (a second shuffle, of arrays).
        pieces = blk.block_pieces(ratings, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=n)
        self.users = self._persist(
            blk.zip_blocks([pieces], summarised(make, self.user_summaries), n_blocks=n),
            f"{self.name} users",
        )
        inputs = [self.users.flatMap(functools.partial(transposed_pieces, n_blocks=n))]
        val_blocks = None
        self.unknown_val = Stats()
        if self.validation is not None:
            val_blocks, self.unknown_val = validation_blocks(
                self.ratings, self.validation, bias=self.bias, lo=self.lo, hi=self.hi, n_blocks=n
            )
            inputs.append(val_blocks.mapValues(ValidationBlock))
        self.items = self._persist(
            blk.zip_blocks(inputs, summarised(make, self.item_summaries), n_blocks=n),
            f"{self.name} movies",
        )
        return val_blocks

    @staticmethod
    def _materialise(side: RDD, summaries: Accumulator) -> list[SideSummary]:
        """Build and cache ``side`` (a JVM-side count: the cached blocks are not read back
        into Python) and return the summaries its tasks reported, in block order."""
        side._jrdd.count()
        return [summaries.value[b] for b in sorted(summaries.value)]

    def _measure(self, users: list[SideSummary], items: list[SideSummary]) -> None:
        """Sizes, μ and the solve parameters from the sides' summaries."""
        self.nnz = sum(s.nnz for s in users)
        if self.nnz == 0:
            raise DataQualityError(f"{self.name} fit: the training ratings are empty")
        if not all(s.finite for s in users):
            raise DataQualityError(
                f"{self.name} fit: some training ratings are null or not finite; drop or fix them first"
            )
        self.global_mean = sum(s.total for s in users) / self.nnz
        self.n_users = max(s.max_id for s in users) + 1
        self.n_items = max(s.max_id for s in items) + 1
        self.trained_users = sum(s.rows for s in users)
        self.trained_items = sum(s.rows for s in items)
        self.known_val = sum(s.validation for s in items)
        self.params = self.half_step_params()

    def half_step_params(self) -> Params:
        """What every half-step task needs (explicit ALS: μ, λ_f, λ_b, the weighting)."""
        cfg = self.cfg
        return Params(
            self.global_mean, cfg.reg_factors, cfg.reg_bias, cfg.weighted_reg, self.lo, self.hi,
            reg_offset=cfg.reg_offset,
        )

    def _plan_routes(self) -> None:
        """Routes are needed only to send a routed side to the other side's blocks."""
        self.routes_to_users = None
        if not self.bc_items:
            self.routes_to_users = self._routes(self.users, self.items, f"{self.name} routes movies->users")
        self.routes_to_items = None
        if not self.bc_users:
            self.routes_to_items = self._routes(self.items, self.users, f"{self.name} routes users->movies")

    def _routes(self, dest: RDD, source: RDD, name: str) -> RDD:
        """The cached routes that send ``source``'s rows to the ``dest`` blocks reading them."""
        needs = dest.mapValues(lambda s: s.needed)
        return self._persist(
            blk.plan_routes(needs, source.mapValues(lambda s: s.ids), n_blocks=self.n), name
        )

    def _broadcastable(self, n_total: int) -> bool:
        if self.cfg.mode == "broadcast":
            return True
        if self.cfg.mode == "routed":
            return False
        return n_total * self.d * 8 / 2**20 <= self.cfg.broadcast_max_mb

    def initial_items(self) -> SideState:
        """Seeded random movie factors and the bias model's movie biases (or zeros)."""
        k, seed, std = self.cfg.rank, derive_seed(self.seed, "init", "movies"), self.cfg.init_std
        biases = None
        if self.bias is not None:
            ids = self.ratings.select(MOVIE_ID, MOVIE_IDX).distinct()
            biases = self.bias.item_bias.join(ids, MOVIE_ID).select(MOVIE_IDX, BIAS)
        if self.bc_items:
            table = np.zeros((self.n_items, self.d))
            table[:, :k] = init_factors(np.arange(self.n_items), rank=k, seed=seed, std=std)
            if biases is not None:
                pdf = biases.toPandas()
                table[pdf[MOVIE_IDX].to_numpy(np.int64), k] = pdf[BIAS].to_numpy(np.float64)
            return SideState(table=table)
        inputs = [self.items]
        if biases is not None:
            n = self.n
            inputs.append(biases.rdd.map(lambda r: (int(r[0]) % n, (int(r[0]), float(r[1])))))
        init = functools.partial(initial_rows, rank=k, seed=seed, std=std, width=self.d)
        rdd = self._persist(blk.zip_blocks(inputs, init, n_blocks=self.n), f"{self.name} movies init")
        return SideState(rdd=rdd)

    # ---------------------------------------------------------------- iterations

    def half_step(
        self, side_rdd: RDD, fixed: SideState, routes: RDD | None, *, to_driver: bool,
        n_total: int, it: Iteration, name: str, params: Any = None,
    ) -> tuple[SideState, Stats]:
        """Solve one side against ``fixed`` with ``params`` (default :attr:`params`); keep
        the result on the driver, or as an RDD persisted (and checkpointed when due)
        through the loop's ``it``."""
        params = self.params if params is None else params
        if fixed.table is not None:
            handle = self.sc.broadcast(fixed.table)
            solved = solve_broadcast(self._one_wave(side_rdd, to_driver), handle, params)
        else:
            handle = None
            solved = solve_routed(
                side_rdd, fixed.rdd, routes, params, n_blocks=self.n, width=self.d
            )
        if to_driver:
            parts = solved.map(lambda kv: (kv[1].ids, kv[1].rows, kv[1].stats)).collect()
            table = np.zeros((n_total, self.d))
            blk.assemble_rows(((ids, rows) for ids, rows, _ in parts), table)
            trained = np.concatenate([ids for ids, _, _ in parts])
            stats = functools.reduce(lambda a, b: a + b, (s for _, _, s in parts), Stats())
            state = SideState(table=table, trained=np.sort(trained))
        else:
            solved = it.persist(solved, name, state=True)
            stats = functools.reduce(
                lambda a, b: a + b, solved.map(lambda kv: kv[1].stats).collect(), Stats()
            )
            state = SideState(rdd=solved)
        if handle is not None:
            if to_driver:
                handle.destroy()
            else:
                # Spark serializes a cached RDD's own function (and so its broadcasts) into
                # every later task that reads it, even after a checkpoint: the broadcast
                # must stay valid. Free the executors' copies; Spark's cleaner drops the
                # rest once the RDD is garbage.
                handle.unpersist()
        return state, stats

    def _one_wave(self, side_rdd: RDD, to_driver: bool) -> RDD:
        """``side_rdd`` in one task per core when its solved rows go to the driver.

        The blocks (``BLOCKS_PER_CORE`` per core when automatic) even out the block build;
        in a half-step each further wave of tasks costs more than it evens out: a task starts
        ~0.1 s after the previous one on the same core ended. At the ml-32m shape on two
        cores, four blocks in two tasks took 1.63-1.78 s per iteration against 1.86-2.14 s in
        four tasks (alternated in one process). Coalescing moves no data (each task reads
        its blocks from the cache, preferring local ones) and every block is solved as
        before, so the factors are the same. A routed result keeps one block per partition:
        the next half-step's routes are planned per block.
        """
        slots = max(1, self.sc.defaultParallelism)
        if not to_driver or slots >= side_rdd.getNumPartitions():
            return side_rdd
        return side_rdd.coalesce(slots)

    def run(self) -> LoopResult:
        """Iterate ``als.max_iter`` times; the result's state is (users, movies)
        :class:`SideState`, to be released with :meth:`LoopResult.release` once read."""
        start = self.initial_items()
        movies = start  # the movie rows the next user step reads
        val_n = self.known_val + self.unknown_val.val_n

        def step(it: Iteration) -> IterationResult:
            nonlocal movies
            users, ustats = self.half_step(
                self.users, movies, self.routes_to_users, to_driver=self.bc_users,
                n_total=self.n_users, it=it, name=f"{self.name} users {it.number}",
            )
            movies, istats = self.half_step(
                self.items, users, self.routes_to_items, to_driver=self.bc_items,
                n_total=self.n_items, it=it, name=f"{self.name} movies {it.number}",
            )
            if it.number == 1:  # the seeded start serves only the first user step
                start.release()
            val_rmse = float("nan")
            if self.validation is not None and val_n:
                val_rmse = math.sqrt((istats.val_sse + self.unknown_val.val_sse) / val_n)
            return IterationResult(
                train_rmse=math.sqrt(istats.sse / istats.n),
                validation_rmse=val_rmse,
                objective=istats.sse + ustats.reg + istats.reg,
                state=(users, movies),
            )

        return self.loop().run(step, max_iter=self.cfg.max_iter)

    def loop(self) -> Loop:
        """The shared iteration loop, no early stopping, lineage cut every
        ``checkpoint_every`` iterations."""
        return Loop(self.name, spark=self.spark, checkpoint_every=self.cfg.checkpoint_every)

    # ---------------------------------------------------------------- output

    def fit(self) -> tuple[DataFrame, DataFrame, "pd.DataFrame"]:
        """Prepare, iterate and release: ``(user_factors, item_factors, history)``, the
        tables as (user_id, user_idx, bias, factors) and (movie_id, movie_idx, bias,
        factors), cached (the id columns are joined from the training ratings lazily)."""
        try:
            with stage(f"{self.name}: partition ratings into blocks", self.spark):
                self.prepare()
            outcome = self.run()
            try:
                users, items = outcome.state
                with stage(f"{self.name}: factor tables", self.spark):
                    user_table = self.factor_table(users, USER_IDX)
                    item_table = self.factor_table(items, MOVIE_IDX)
            finally:
                outcome.release()
        finally:
            self.release()
        user_ids = self.ratings.select(
            F.col(USER_ID).cast("long").alias(USER_ID), F.col(USER_IDX).cast("int").alias(USER_IDX)
        ).distinct()
        movie_ids = self.ratings.select(
            F.col(MOVIE_ID).cast("long").alias(MOVIE_ID),
            F.col(MOVIE_IDX).cast("int").alias(MOVIE_IDX),
        ).distinct()
        return (
            user_ids.join(user_table, USER_IDX).select(USER_ID, USER_IDX, BIAS, FACTORS).cache(),
            movie_ids.join(item_table, MOVIE_IDX).select(MOVIE_ID, MOVIE_IDX, BIAS, FACTORS).cache(),
            outcome.history,
        )

    def factor_table(self, state: SideState, idx_col: str) -> DataFrame:
        """(idx, bias, factors) of the trained rows, cached and materialised; bias 0 when
        the rows hold factors only (d = rank)."""
        k = self.cfg.rank
        if state.table is not None:
            rows = state.table[state.trained]
            df = factor_frame(
                self.spark, idx_col, state.trained, _bias_column(rows, k), rows[:, :k], in_tasks=True
            )
        else:

            def rows_of(item: tuple[int, Solved]) -> Iterator[tuple[int, float, list[float]]]:
                s = item[1]
                return zip(s.ids.tolist(), _bias_column(s.rows, k).tolist(), s.rows[:, :k].tolist())

            df = self.spark.createDataFrame(state.rdd.flatMap(rows_of), factor_schema(idx_col))
        df = df.cache()
        df.count()
        return df

    def release(self) -> None:
        """Unpersist the sides, routes and seeded start."""
        for rdd in self._persisted:
            rdd.unpersist()


def _bias_column(rows: np.ndarray, k: int) -> np.ndarray:
    """Column k of [factors, bias] rows, or zeros for rows of factors only."""
    return rows[:, k] if rows.shape[1] > k else np.zeros(rows.shape[0])
