"""The iterate / record / stop loop, written once for every iterative model.

A model writes one function, ``step(it) -> IterationResult``, that advances its state by
one iteration and measures the result; :class:`Loop` runs it and does the rest:

History
    One row per iteration, in this column order: ``iteration``, ``train_rmse``,
    ``validation_rmse`` (NaN without validation), ``objective``, the step's ``extra``
    figures (e.g. ``relative_change``), ``seconds`` (wall time of the step).
Stopping
    After ``max_iter``; after a step that reports ``converged`` (e.g. a change below a
    tolerance); and, with ``patience`` p, after p iterations in a row whose validation RMSE
    is not strictly below the best so far. With ``patience`` the state of the best
    iteration is returned (the first one when it never improved), without it the last.
Caching
    A step persists its RDDs through ``it.persist(rdd, name)`` and registers anything else
    to free (a broadcast's ``destroy``) with ``it.on_release``. Scratch data (what only the
    next step reads, e.g. a residual RDD) is freed once the next step has run, or as soon
    as that step calls ``it.release_previous()``. State data (``state=True``: RDDs that hold
    the model state, e.g. ALS factor blocks) is freed once its iteration is neither the
    latest nor the best; the returned state's data stays until :meth:`LoopResult.release`
    (the caller reads the state first). If a step raises, everything is freed.
Checkpointing
    Every ``checkpoint_every`` iterations (iteration numbers divisible by it),
    ``it.persist`` also cuts the RDD's lineage: a reliable checkpoint when the
    SparkContext has a checkpoint directory, else ``localCheckpoint``. As Spark requires,
    the step persists an RDD before its first action on it.
Stage names and progress
    Each step's Spark jobs are described as ``"<name> <unit> t/max_iter"`` and one INFO line
    follows it, e.g. ``als iteration 3/10: train RMSE 0.8123, validation RMSE 0.8634,
    objective 1.23e+04 (1.2 s; 3.9 s elapsed, ~9 s left)``, the time left estimated from
    the mean step so far (early stopping may end sooner); NaN figures (no validation set, no
    change yet) are left out of the line.

Example (iteration 0 is the initial state, as NMF and iterative SVD record it)::

    def step(it: Iteration) -> IterationResult:
        state = initial if it.number == 0 else update(state_of_previous_iteration)
        errors = evaluate(state)
        return IterationResult(train_rmse=errors.train, validation_rmse=errors.validation,
                               objective=errors.objective, state=state)

    result = Loop("nmf", spark=spark, patience=3).run(step, max_iter=50, first=0)
    result.history, result.best_iteration, result.state
    result.release()
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import pandas as pd
from pyspark import RDD, StorageLevel
from pyspark.sql import SparkSession

from recspark.log import eta, job_description
from recspark.schema import ITERATION, OBJECTIVE, SECONDS, TRAIN_RMSE, VALIDATION_RMSE

__all__ = ["Iteration", "IterationResult", "Loop", "LoopResult", "figures", "history_row"]

_logger = logging.getLogger(__name__)

_NAN = float("nan")


@dataclass(frozen=True)
class IterationResult:
    """What one step reports: its figures (RMSEs on the rating scale; NaN when not measured),
    ``extra`` history columns, the model ``state`` after the step (what the loop returns
    for the best or last iteration), and ``converged`` to stop after this iteration."""

    train_rmse: float
    validation_rmse: float = _NAN
    objective: float = _NAN
    extra: Mapping[str, float] = field(default_factory=dict)
    state: Any = None
    converged: bool = False


class Iteration:
    """The handle a step receives: its ``number`` and the loop's caching services.

    Data registered by a step is either scratch (needed by the next step only, e.g. a
    residual RDD; freed once the next step has run, or earlier by that step's
    :meth:`release_previous`) or state (``state=True``: holds the state the loop may
    return, e.g. a factor RDD; freed once this iteration is neither the latest nor the best).
    """

    def __init__(self, number: int, *, checkpoint_due: bool, previous: "Iteration | None" = None) -> None:
        self.number = number
        #: True when this iteration's persisted RDDs are checkpointed.
        self.checkpoint_due = checkpoint_due
        self._previous = previous
        self._scratch: list[Callable[[], Any]] = []
        self._state: list[Callable[[], Any]] = []

    def persist(
        self,
        rdd: RDD,
        name: str,
        *,
        state: bool = False,
        storage: StorageLevel = StorageLevel.MEMORY_AND_DISK,
    ) -> RDD:
        """Persist ``rdd`` (named ``name`` in the UI), checkpoint it when due, and register
        it to be unpersisted (as scratch, or with the ``state``). Call before the first
        action on it."""
        rdd = rdd.persist(storage).setName(name)
        if self.checkpoint_due:
            if rdd.context.getCheckpointDir():
                rdd.checkpoint()
            else:
                rdd.localCheckpoint()
        self.on_release(rdd.unpersist, state=state)
        return rdd

    def on_release(self, release: Callable[[], Any], *, state: bool = False) -> None:
        """Call ``release()`` when this iteration's scratch (or ``state``) data is freed,
        e.g. ``broadcast.destroy``."""
        (self._state if state else self._scratch).append(release)

    def release_previous(self) -> None:
        """Free the previous iteration's scratch data now, once this step has used it."""
        if self._previous is not None:
            self._previous.release_scratch()

    def release_scratch(self) -> None:
        """Free this iteration's scratch data (idempotent)."""
        _call_all(self, "_scratch")

    def release(self) -> None:
        """Free all of this iteration's data (idempotent)."""
        _call_all(self, "_scratch")
        _call_all(self, "_state")


def _call_all(it: Iteration, attribute: str) -> None:
    releases = getattr(it, attribute)
    setattr(it, attribute, [])
    for release in releases:
        release()


class _Held(NamedTuple):
    """An iteration the loop still holds: its number, result and data."""

    number: int
    result: IterationResult
    iteration: Iteration


@dataclass
class LoopResult:
    """The outcome of :meth:`Loop.run`: the history table, the iteration whose ``state`` is
    returned (the best on validation with patience, else the last), the last iteration run
    and why the loop stopped (``max_iter``, ``converged`` or ``patience``)."""

    history: pd.DataFrame
    best_iteration: int
    state: Any
    last_iteration: int
    stopped_by: str
    _kept: Iteration | None = field(default=None, repr=False)

    def release(self) -> None:
        """Free the returned state's data once the caller has read it."""
        if self._kept is not None:
            self._kept.release()


class Loop:
    """Runs a step function with history, early stopping, caching and checkpoints.

    ``name``: the model (log lines and job descriptions); ``spark``: where to describe the
    jobs (None: no description); ``patience``: early stopping on validation RMSE (None:
    none); ``checkpoint_every``: cut lineage every n iterations (None: never); ``unit``:
    the word used in the log line ("iteration", "round").
    """

    def __init__(
        self,
        name: str,
        *,
        spark: SparkSession | None = None,
        patience: int | None = None,
        checkpoint_every: int | None = None,
        unit: str = "iteration",
    ) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.name = name
        self.spark = spark
        self.patience = patience
        self.checkpoint_every = checkpoint_every
        self.unit = unit

    def run(
        self,
        step: Callable[[Iteration], IterationResult],
        *,
        max_iter: int,
        first: int = 1,
    ) -> LoopResult:
        """Run ``step`` for iterations ``first``, ``first + 1``, … up to ``max_iter`` at most
        (see the module docstring for when it stops). Returns a :class:`LoopResult`; raises
        what ``step`` raises, after freeing every iteration's data."""
        rows: list[dict[str, float]] = []
        self._first, self._spent = first, 0.0
        best: _Held | None = None
        last: _Held | None = None
        best_rmse, bad, stopped_by = math.inf, 0, "max_iter"
        try:
            for number in range(first, max_iter + 1):
                previous = None if last is None else last.iteration
                it, result, seconds = self._one(step, number, max_iter, previous)
                rows.append(history_row(number, result, seconds))
                current = _Held(number, result, it)
                if self.patience is None or result.validation_rmse < best_rmse:
                    best_rmse, bad, new_best = result.validation_rmse, 0, current
                else:
                    bad, new_best = bad + 1, best
                if previous is not None:
                    previous.release_scratch()
                for old in (last, best):  # neither the latest nor the best: no longer needed
                    if old is not None and old is not current and old is not new_best:
                        old.iteration.release()
                last, best = current, new_best
                if self.patience is not None and bad >= self.patience:
                    stopped_by = "patience"
                    break
                if result.converged:
                    stopped_by = "converged"
                    break
        except BaseException:
            for held in (last, best):
                if held is not None:
                    held.iteration.release()
            raise
        if last is not None:
            last.iteration.release_scratch()
        if best is None:  # never improved on validation: keep the last iteration
            best = last
        elif last is not None and last is not best:
            last.iteration.release()
        return self._finish(rows, best, last, stopped_by)

    def _one(
        self,
        step: Callable[[Iteration], IterationResult],
        number: int,
        max_iter: int,
        previous: Iteration | None,
    ) -> tuple[Iteration, IterationResult, float]:
        """Run one step under its job description; log its progress line."""
        due = self.checkpoint_every is not None and number % self.checkpoint_every == 0
        it = Iteration(number, checkpoint_due=due, previous=previous)
        label = f"{self.name} {self.unit} {number}/{max_iter}"
        start = time.perf_counter()
        try:
            with job_description(label, self.spark):
                result = step(it)
        except BaseException:
            _logger.error("%s failed after %.1f s", label, time.perf_counter() - start)
            it.release()
            raise
        finally:
            it._previous = None  # no chain of handles across the whole fit
        seconds = time.perf_counter() - start
        self._spent += seconds
        done = number - self._first + 1
        _logger.info(
            "%s: %s (%.1f s; %s)", label, figures(result), seconds,
            eta(done, max_iter - self._first + 1, self._spent),
        )
        return it, result, seconds

    def _finish(
        self, rows: list[dict[str, float]], best: _Held | None, last: _Held | None, stopped_by: str
    ) -> LoopResult:
        if best is None or last is None:
            raise ValueError(f"{self.name}: no iteration ran (max_iter below the first iteration)")
        if self.patience is not None:
            _logger.info(
                "%s: kept %s %d of %d (validation RMSE %.4f; stopped by %s)",
                self.name, self.unit, best.number, last.number, best.result.validation_rmse,
                stopped_by,
            )
        elif stopped_by == "converged":
            _logger.info("%s: converged after %s %d", self.name, self.unit, last.number)
        return LoopResult(
            history=pd.DataFrame(rows),
            best_iteration=best.number,
            state=best.result.state,
            last_iteration=last.number,
            stopped_by=stopped_by,
            _kept=best.iteration,
        )


def history_row(number: int, result: IterationResult, seconds: float) -> dict[str, float]:
    """One history row (see the module docstring for the columns)."""
    return {
        ITERATION: number,
        TRAIN_RMSE: result.train_rmse,
        VALIDATION_RMSE: result.validation_rmse,
        OBJECTIVE: result.objective,
        **result.extra,
        SECONDS: seconds,
    }


def figures(result: IterationResult) -> str:
    """The figures of the progress line, NaN ones left out."""
    parts = [
        ("train RMSE", result.train_rmse, ".4f"),
        ("validation RMSE", result.validation_rmse, ".4f"),
        ("objective", result.objective, ".6g"),
        *((name.replace("_", " "), value, ".3g") for name, value in result.extra.items()),
    ]
    return ", ".join(f"{label} {value:{fmt}}" for label, value, fmt in parts if value == value)
