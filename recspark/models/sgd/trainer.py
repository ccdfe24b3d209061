"""DSGD: stratified SGD over d × d blocks of the ratings (Gemulla et al. 2011).

Layout (built once, cached): partition a holds the ratings of the users with
``user_idx % d == a``, cut by movie block ``b = movie_idx % d`` into d CSR sub-blocks over
local rows (user ``user_idx // d``, movie ``movie_idx // d``), plus the user state (p_u,
b_u) of those users, which never leaves the partition.

Sub-epochs: an epoch visits the d strata in a seeded order; stratum ``s`` pairs user block
a with movie block (a + s) mod d, so its d blocks share no user and no movie and run as d
parallel tasks. The movie side (q_i, b_i and, for SVD++, y_j) is held on the driver and
broadcast to each sub-epoch; every task returns the rows of its one movie block, which the
driver writes back. So between sub-epochs only movie factors move; user factors stay put.
Inside a block the ratings are visited in a seeded order (:func:`kernel.rating_order`;
user by user for SVD++, :func:`kernel.user_order`), by the compiled loops of
:mod:`recspark.models.sgd.kernel`.

SVD++'s implicit term couples a user with all its rated movies, not only the block's. A
task splits z_u = |N(u)|^-½ Σ_{j∈N(u)} y_j in two: the part over u's movies in other
movie blocks is computed once at the start of the sub-epoch from the broadcast y
(partition a holds every rating of its users) and held fixed, since other tasks own those
y_j; the part over the block's own movies is summed from the current y when the user's
visit starts (SVD++ visits a block user by user, :func:`kernel.user_order`). A user's
visit updates only the y_j of its block's movies (the ones no other task writes), so over
an epoch y_j is moved by the users of the blocks that hold j. With d = 1 this is the
serial user-by-user SVD++ of :mod:`recspark.models.sgd.kernel`.

History per epoch: ``train_rmse`` is the RMSE of the ratings as visited during the epoch
(each error measured just before its update, the usual cheap SGD figure); validation RMSE
is exact, measured after the epoch (pairs of unseen users or movies scored by the bias
fallback, as :meth:`FactorModel.predict` does). Early stopping on it with ``patience``.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pandas as pd
from pyspark import RDD, StorageLevel
from pyspark.sql import DataFrame

from recspark import blocks as blk
from recspark.errors import DataQualityError
from recspark.log import eta, job_description
from recspark.models.als.kernel import init_factors
from recspark.models.als.sides import validation_blocks
from recspark.models.iterative import (
    Iteration,
    IterationResult,
    Loop,
    LoopResult,
    figures,
    history_row,
)
from recspark.models.sgd import kernel
from recspark.schema import MOVIE_IDX, RATING, USER_IDX
from recspark.seeds import derive_seed

_STORAGE = StorageLevel.MEMORY_AND_DISK
#: rating visits (ratings × epochs) a one-block fit without validation runs per Spark task
VISITS_PER_TASK = 20_000_000
_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubBlock:
    """Ratings in CSR form over local user rows: ``users`` repeats each rating's row,
    ``cols`` its local movie row (global for validation blocks)."""

    indptr: np.ndarray  # int64 (n_rows + 1,)
    users: np.ndarray  # int32 (nnz,)
    cols: np.ndarray  # int32 (nnz,)
    vals: np.ndarray  # float64 (nnz,)


def _sub_block(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_rows: int) -> SubBlock:
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return SubBlock(indptr, rows.astype(np.int32), cols.astype(np.int32), vals.astype(np.float64))


@dataclass(frozen=True)
class UserPart:
    """Partition a: its users' ratings as d sub-blocks (one per movie block) and counts."""

    block: int
    counts: np.ndarray  # int64 (n_rows,): |N(u)|, all movie blocks
    subs: tuple[SubBlock, ...]
    movie_counts: np.ndarray  # int64 bincount of the global movie indices rated here
    total: float
    finite: bool

    @property
    def n_rows(self) -> int:
        return int(self.counts.shape[0])

    def scale(self) -> np.ndarray:
        """|N(u)|^-½ per row (0 for rows without ratings)."""
        return np.where(self.counts > 0, 1.0 / np.sqrt(np.maximum(self.counts, 1)), 0.0)


def make_part(block: int, pieces: list, *, d: int) -> Iterator[tuple[int, UserPart]]:
    """zip_blocks body: the :class:`UserPart` of user block ``block`` from its pieces."""
    rows, cols, vals = blk.join_pieces(pieces)
    local = rows.astype(np.int64) // d
    n_rows = int(local.max()) + 1 if local.size else 0
    counts = np.bincount(local, minlength=n_rows).astype(np.int64)
    subs = []
    for b in range(d):
        sel = cols % d == b
        subs.append(_sub_block(local[sel], cols[sel].astype(np.int64) // d, vals[sel], n_rows))
    yield block, UserPart(
        block, counts, tuple(subs), np.bincount(cols).astype(np.int64),
        float(vals.sum()), bool(np.isfinite(vals).all()),
    )


@dataclass(frozen=True)
class UserState:
    """The factors p (n_rows × k) and biases b_u of one user block."""

    p: np.ndarray
    bu: np.ndarray


@dataclass(frozen=True)
class SubEpoch:
    """What one task of a sub-epoch returns: its users' state and its movie block's rows."""

    users: UserState
    movie_block: int
    q: np.ndarray
    bi: np.ndarray
    y: np.ndarray | None
    sse: float


@dataclass(frozen=True)
class Hyper:
    """The numbers every task needs."""

    d: int
    mu: float
    reg_factors: float
    reg_bias: float
    reg_implicit: float | None  # None: plain MF
    seed: int
    lo: float
    hi: float


@dataclass
class Movies:
    """The driver's movie side: q (M × k), b_i (M,), y (M × k, SVD++ only)."""

    q: np.ndarray
    bi: np.ndarray
    y: np.ndarray | None = None

    def block(self, b: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Writable copies of movie block b's rows (local row j = movie b + j·d)."""
        y = None if self.y is None else self.y[b::d].copy()
        return self.q[b::d].copy(), self.bi[b::d].copy(), y

    def with_blocks(self, results: list[tuple[int, np.ndarray, np.ndarray, Any]], d: int) -> "Movies":
        """A copy with the returned movie blocks written back."""
        out = Movies(self.q.copy(), self.bi.copy(), None if self.y is None else self.y.copy())
        for b, q, bi, y in results:
            out.q[b::d], out.bi[b::d] = q, bi
            if y is not None:
                out.y[b::d] = y
        return out


def effective_factors(part: UserPart, state: UserState, y: np.ndarray | None, d: int) -> np.ndarray:
    """p_u, or p_u + z_u for SVD++ (z_u over every rated movie, from the full ``y``)."""
    if y is None:
        return state.p
    z = np.zeros_like(state.p)
    scale = part.scale()
    for b, sub in enumerate(part.subs):
        kernel.implicit_sums(sub.indptr, sub.cols, np.ascontiguousarray(y[b::d]), scale, z)
    return state.p + z


def _split(values: list) -> tuple[UserPart, UserState, Any]:
    part = next(v for v in values if isinstance(v, UserPart))
    state = next(v for v in values if isinstance(v, UserState))
    other = next((v for v in values if not isinstance(v, (UserPart, UserState))), None)
    return part, state, other


def run_sub_epoch(
    a: int, values: list, *, shift: int, epoch: int, lr: float, movies, hyper: Hyper
) -> Iterator[tuple[int, SubEpoch]]:
    """zip_blocks body: SGD over block (a, (a + shift) mod d) with the broadcast movies."""
    part, state, _ = _split(values)
    yield a, _sgd_block(part, state, movies.value, a, (a + shift) % hyper.d, epoch, lr, hyper)


def run_epochs(
    a: int, values: list, *, first: int, lrs: list[float], movies, hyper: Hyper
) -> Iterator[tuple[int, tuple[UserState, Movies, list[float], list[float]]]]:
    """zip_blocks body for one block (d = 1): epochs ``first``, ``first + 1``, … (one per
    learning rate of ``lrs``) in this task, each exactly as :func:`run_sub_epoch` runs it;
    yields the user state, the movies, and each epoch's Σ e² and seconds."""
    part, state, _ = _split(values)
    table = movies.value
    sses, seconds = [], []
    for epoch, lr in enumerate(lrs, start=first):
        start = time.perf_counter()
        out = _sgd_block(part, state, table, a, 0, epoch, lr, hyper)
        state, table = out.users, Movies(out.q, out.bi, out.y)
        sses.append(out.sse)
        seconds.append(time.perf_counter() - start)
    yield a, (state, table, sses, seconds)


def _sgd_block(
    part: UserPart, state: UserState, table: Movies, a: int, b: int, epoch: int, lr: float,
    hyper: Hyper,
) -> SubEpoch:
    """One SGD pass over block (a, b): new copies of the users' state and of movie block
    b's rows (``table`` and ``state`` are not written)."""
    d = hyper.d
    sub = part.subs[b]
    p, bu = state.p.copy(), state.bu.copy()
    q, bi, y = table.block(b, d)
    if hyper.reg_implicit is None:
        order = kernel.rating_order(hyper.seed, epoch, a, b, sub.vals.shape[0])
        sse = kernel.sgd_pass(
            order, sub.users, sub.cols, sub.vals, hyper.mu, p, bu, q, bi, lr,
            hyper.reg_factors, hyper.reg_bias,
        )
    else:
        z_out = np.zeros_like(p)  # the implicit sums over the other movie blocks
        scale = part.scale()
        for other, rest in enumerate(part.subs):
            if other != b:
                y_other = np.ascontiguousarray(table.y[other::d])
                kernel.implicit_sums(rest.indptr, rest.cols, y_other, scale, z_out)
        uorder, rorder = kernel.user_order(hyper.seed, epoch, a, b, sub.users, part.n_rows)
        sse = kernel.svdpp_pass(
            uorder, rorder, sub.indptr, sub.cols, sub.vals, hyper.mu, p, bu, z_out,
            scale, q, bi, y, lr, hyper.reg_factors, hyper.reg_bias, hyper.reg_implicit,
        )
    return SubEpoch(UserState(p, bu), b, q, bi, y, float(sse))


def _validation_sse(a: int, values: list, *, movies, hyper: Hyper) -> Iterator[tuple[int, tuple[float, int]]]:
    part, state, val = _split(values)
    if val is None:
        return
    table = movies.value
    p = effective_factors(part, state, table.y, hyper.d)
    sse = kernel.block_sse(
        val.users, val.cols, val.vals, hyper.mu, p, state.bu, table.q, table.bi, hyper.lo, hyper.hi
    )
    yield a, (float(sse), int(val.vals.shape[0]))


def _val_part(a: int, pieces: list, *, d: int) -> Iterator[tuple[int, SubBlock]]:
    users = np.concatenate([p[0] for p in pieces]).astype(np.int64) // d
    movies = np.concatenate([p[1] for p in pieces])
    vals = np.concatenate([p[2] for p in pieces])
    n_rows = int(users.max()) + 1 if users.size else 0
    yield a, _sub_block(users, movies, vals, n_rows)


def _transpose(item: tuple[int, blk.Block], *, d: int) -> Iterator[tuple[int, tuple]]:
    """(user block, (users, movies, values)) pieces of a movie-keyed validation block."""
    block = item[1]
    movies = np.repeat(block.ids.astype(np.int64), block.counts())
    for a, users, mv, vals in blk.split_by_block(block.cols.astype(np.int64), movies, block.vals, d):
        yield a, (users, mv, vals)


class Trainer:
    """One DSGD fit (driver side): :meth:`prepare` builds the cached layout, :meth:`run`
    iterates epochs through :class:`~recspark.models.iterative.Loop`."""

    def __init__(self, ratings: DataFrame, *, cfg: Any, seed: int, lo: float, hi: float,
                 bias: Any, validation: DataFrame | None, implicit: bool) -> None:
        self.spark = ratings.sparkSession
        self.sc = self.spark.sparkContext
        self.ratings, self.cfg, self.seed = ratings, cfg, seed
        self.lo, self.hi, self.bias, self.validation = lo, hi, bias, validation
        self.implicit = implicit
        self.d = cfg.blocks
        self._persisted: list[RDD] = []

    def _persist(self, rdd: RDD, name: str) -> RDD:
        rdd = rdd.persist(_STORAGE).setName(name)
        self._persisted.append(rdd)
        return rdd

    def prepare(self) -> None:
        """Cut the ratings into blocks (one shuffle), measure them (one collect), cache the
        validation blocks and the constant error of the pairs the model cannot score."""
        d = self.d
        pieces = blk.block_pieces(
            self.ratings.select(USER_IDX, MOVIE_IDX, RATING), row_col=USER_IDX,
            col_col=MOVIE_IDX, n_blocks=d,
        )
        self.parts = self._persist(
            blk.zip_blocks([pieces], functools.partial(make_part, d=d), n_blocks=d), "sgd ratings"
        )
        summary = self.parts.map(
            lambda kv: (kv[1].counts, kv[1].movie_counts, kv[1].total, kv[1].finite)
        ).collect()
        self.nnz = int(sum(int(c.sum()) for c, _, _, _ in summary))
        if self.nnz == 0:
            raise DataQualityError("sgd fit: the training ratings are empty")
        if not all(f for _, _, _, f in summary):
            raise DataQualityError(
                "sgd fit: some training ratings are null or not finite; drop or fix them first"
            )
        self.global_mean = sum(t for _, _, t, _ in summary) / self.nnz
        self.n_movies = max(m.shape[0] for _, m, _, _ in summary)
        counts = np.zeros(self.n_movies, dtype=np.int64)
        for _, m, _, _ in summary:
            counts[: m.shape[0]] += m
        self.trained_movies = np.flatnonzero(counts)
        self.val_parts, self.unknown_val = None, (0.0, 0)
        if self.validation is not None:
            by_movie, unknown = validation_blocks(
                self.ratings, self.validation, bias=self.bias, lo=self.lo, hi=self.hi, n_blocks=d
            )
            self._persisted.append(by_movie)
            moved = by_movie.flatMap(functools.partial(_transpose, d=d))
            self.val_parts = self._persist(
                blk.zip_blocks([moved], functools.partial(_val_part, d=d), n_blocks=d),
                "sgd validation",
            )
            self.unknown_val = (unknown.val_sse, unknown.val_n)
        self.hyper = Hyper(
            d, self.global_mean, self.cfg.reg_factors, self.cfg.reg_bias,
            getattr(self.cfg, "reg_implicit", None) if self.implicit else None,
            derive_seed(self.seed, "order"), self.lo, self.hi,
        )

    def learning_rate(self, epoch: int) -> float:
        """γ of epoch ``epoch`` (1-based): ``learning_rate`` · ``decay``^(epoch − 1)."""
        return self.cfg.learning_rate * self.cfg.decay ** (epoch - 1)

    def initial(self) -> tuple[RDD, Movies]:
        """Seeded starting factors (a pure function of (seed, index), whatever d), zero
        biases (and seeded y for SVD++)."""
        k, std, d, seed = self.cfg.rank, self.cfg.init_std, self.d, self.seed

        def users(item: tuple[int, UserPart]) -> tuple[int, UserState]:
            a, part = item
            ids = np.arange(part.n_rows, dtype=np.int64) * d + a
            p = init_factors(ids, rank=k, seed=derive_seed(seed, "init", "users"), std=std)
            return a, UserState(p, np.zeros(part.n_rows))

        state = self._persist(self.parts.map(users, preservesPartitioning=True), "sgd users init")
        ids = np.arange(self.n_movies)
        q = init_factors(ids, rank=k, seed=derive_seed(seed, "init", "movies"), std=std)
        y = None
        if self.implicit:
            y = init_factors(ids, rank=k, seed=derive_seed(seed, "init", "implicit"), std=std)
        return state, Movies(q, np.zeros(self.n_movies), y)

    def _epoch(self, it: Iteration, state: RDD, movies: Movies) -> tuple[RDD, Movies, float]:
        """The d sub-epochs of epoch ``it.number``; returns the new state, movies and Σ e²."""
        d = self.d
        lr = self.learning_rate(it.number)
        shifts = np.random.default_rng([self.hyper.seed, it.number]).permutation(d)
        sse, intermediate = 0.0, []
        for s, shift in enumerate(shifts):
            handle = self.sc.broadcast(movies)
            body = functools.partial(
                run_sub_epoch, shift=int(shift), epoch=it.number, lr=lr, movies=handle,
                hyper=self.hyper,
            )
            result = blk.zip_blocks([self.parts, state], body, n_blocks=d)
            name = f"sgd epoch {it.number} stratum {s + 1}/{d}"
            if s == d - 1:
                result = it.persist(result, name, state=True)
            else:
                result = result.persist(_STORAGE).setName(name)
                intermediate.append(result)
            got = result.map(lambda kv: (kv[1].movie_block, kv[1].q, kv[1].bi, kv[1].y, kv[1].sse)).collect()
            # a cached RDD's tasks may be re-run from its function (and broadcast) later
            handle.unpersist()
            movies = movies.with_blocks([g[:4] for g in got], d)
            sse += sum(g[4] for g in got)
            state = result.mapValues(lambda r: r.users)
        for rdd in intermediate:
            rdd.unpersist()
        return state, movies, sse

    def validation_rmse(self, state: RDD, movies: Movies) -> float:
        """RMSE on the validation ratings after an epoch (NaN without them)."""
        if self.val_parts is None:
            return float("nan")
        handle = self.sc.broadcast(movies)
        body = functools.partial(_validation_sse, movies=handle, hyper=self.hyper)
        got = blk.zip_blocks([self.parts, state, self.val_parts], body, n_blocks=self.d).values().collect()
        handle.destroy()
        sse = sum(s for s, _ in got) + self.unknown_val[0]
        n = sum(c for _, c in got) + self.unknown_val[1]
        return math.sqrt(sse / n) if n else float("nan")

    def run(self, name: str) -> LoopResult:
        """Up to ``epochs`` epochs (early stopping with ``patience``); the result's state is
        (user state RDD, :class:`Movies`), released with :meth:`LoopResult.release`. With one
        block and no validation ratings, :meth:`run_in_tasks`."""
        if self.d == 1 and self.val_parts is None:
            return self.run_in_tasks(name)
        state, movies = self.initial()

        def step(it: Iteration) -> IterationResult:
            nonlocal state, movies
            state, movies, sse = self._epoch(it, state, movies)
            return IterationResult(
                train_rmse=math.sqrt(sse / self.nnz),
                validation_rmse=self.validation_rmse(state, movies),
                extra={"learning_rate": self.learning_rate(it.number)},
                state=(state, movies),
            )

        loop = Loop(
            # without validation ratings there is nothing to stop on
            name, spark=self.spark,
            patience=(self.cfg.patience or None) if self.val_parts is not None else None,
            checkpoint_every=self.cfg.checkpoint_every, unit="epoch",
        )
        return loop.run(step, max_iter=self.cfg.epochs)

    def run_in_tasks(self, name: str) -> LoopResult:
        """All ``epochs`` epochs of a one-block fit without validation, several per Spark
        task (about :data:`VISITS_PER_TASK` rating visits each, so a small fit is one task):
        the same updates in the same order as one epoch per job (:func:`run_epochs`),
        without moving the movie factors through the driver between epochs. History and
        progress lines per epoch, as :class:`~recspark.models.iterative.Loop` writes them
        (``seconds``: the epoch's time inside its task)."""
        cfg = self.cfg
        per_task = max(1, VISITS_PER_TASK // self.nnz)
        state, movies = self.initial()
        rows, held, done, spent = [], None, 0, 0.0
        try:
            while done < cfg.epochs:
                first, last = done + 1, min(cfg.epochs, done + per_task)
                it = Iteration(last, checkpoint_due=bool(
                    cfg.checkpoint_every and last // cfg.checkpoint_every > done // cfg.checkpoint_every))
                lrs = [self.learning_rate(e) for e in range(first, last + 1)]
                handle = self.sc.broadcast(movies)
                # unpersist, not destroy: a later task may recompute this chunk from its lineage
                it.on_release(handle.unpersist)
                body = functools.partial(run_epochs, first=first, lrs=lrs, movies=handle, hyper=self.hyper)
                label = f"{name} epochs {first}-{last}/{cfg.epochs}"
                with job_description(label, self.spark):
                    result = it.persist(blk.zip_blocks([self.parts, state], body, n_blocks=1), label, state=True)
                    _, (_, movies, sses, seconds) = result.first()
                state = result.mapValues(lambda r: r[0])
                if held is not None:
                    held.release()
                held = it
                for epoch, lr, sse, sec in zip(range(first, last + 1), lrs, sses, seconds):
                    step = IterationResult(train_rmse=math.sqrt(sse / self.nnz), extra={"learning_rate": lr})
                    rows.append(history_row(epoch, step, sec))
                    spent += sec
                    _logger.info("%s epoch %d/%d: %s (%.1f s in a task; %s)", name, epoch, cfg.epochs,
                                 figures(step), sec, eta(epoch, cfg.epochs, spent))
                done = last
        except BaseException:
            if held is not None:
                held.release()
            raise
        return LoopResult(history=pd.DataFrame(rows), best_iteration=done, state=(state, movies),
                          last_iteration=done, stopped_by="max_iter", _kept=held)

    def user_rows(self, state: RDD, movies: Movies) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user_idx, b_u, effective factors) of every trained user, on the driver."""
        d, y = self.d, movies.y
        handle = self.sc.broadcast(y)

        def rows(a: int, values: list) -> Iterator[tuple[int, tuple]]:
            part, st, _ = _split(values)
            keep = np.flatnonzero(part.counts)
            p = effective_factors(part, st, handle.value, d)
            yield a, (keep * d + a, st.bu[keep], p[keep])

        got = blk.zip_blocks([self.parts, state], rows, n_blocks=d).values().collect()
        handle.destroy()
        return tuple(np.concatenate([g[i] for g in got]) for i in range(3))  # type: ignore[return-value]

    def release(self) -> None:
        """Unpersist the cached layout."""
        for rdd in self._persisted:
            rdd.unpersist()
