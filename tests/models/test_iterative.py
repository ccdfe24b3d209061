"""The shared iteration loop (recspark.models.iterative) on fake step functions."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest

from recspark.models.iterative import Iteration, IterationResult, Loop
from recspark.schema import ITERATION, OBJECTIVE, RELATIVE_CHANGE, SECONDS, TRAIN_RMSE, VALIDATION_RMSE

NAN = float("nan")


class Recorder:
    """A fake step: figures from lists, and a log of what the loop frees and when."""

    def __init__(self, validation: list[float], *, converge_at: int | None = None) -> None:
        self.validation = validation
        self.converge_at = converge_at
        self.events: list[str] = []

    def step(self, it: Iteration) -> IterationResult:
        n = it.number
        self.events.append(f"step {n}")
        it.on_release(lambda: self.events.append(f"free scratch {n}"))
        it.on_release(lambda: self.events.append(f"free state {n}"), state=True)
        return IterationResult(
            train_rmse=1.0 / (n + 1),
            validation_rmse=self.validation[n],
            objective=10.0 - n,
            extra={RELATIVE_CHANGE: 0.5**n},
            state=f"state {n}",
            converged=n == self.converge_at,
        )


def test_history_has_one_row_per_iteration_in_the_documented_columns():
    rec = Recorder([NAN] * 4)
    result = Loop("fake").run(rec.step, max_iter=3, first=0)

    h = result.history
    assert list(h.columns) == [ITERATION, TRAIN_RMSE, VALIDATION_RMSE, OBJECTIVE, RELATIVE_CHANGE, SECONDS]
    expected = pd.DataFrame(
        {
            ITERATION: [0, 1, 2, 3],
            TRAIN_RMSE: [1.0, 0.5, 1 / 3, 0.25],
            VALIDATION_RMSE: [NAN] * 4,
            OBJECTIVE: [10.0, 9.0, 8.0, 7.0],
            RELATIVE_CHANGE: [1.0, 0.5, 0.25, 0.125],
        }
    )
    pd.testing.assert_frame_equal(h.drop(columns=SECONDS), expected)
    assert (h[SECONDS] >= 0).all()
    # no patience: runs to max_iter and returns the last state
    assert (result.best_iteration, result.last_iteration, result.state) == (3, 3, "state 3")
    assert result.stopped_by == "max_iter"


def test_early_stopping_keeps_the_best_iteration_and_stops_after_patience():
    #            it: 1    2    3    4    5    6    7
    rec = Recorder([NAN, 0.9, 0.8, 0.7, 0.75, 0.7, 0.71, 0.5, 0.4])  # index = iteration
    result = Loop("fake", patience=3).run(rec.step, max_iter=8)

    # 0.7 at iteration 3, then 0.75, 0.7 (not strictly lower), 0.71: three without improvement
    assert result.last_iteration == 6 and result.stopped_by == "patience"
    assert result.best_iteration == 3 and result.state == "state 3"
    assert list(result.history[ITERATION]) == [1, 2, 3, 4, 5, 6]
    # every iteration's scratch is freed once the next step ran; states of iterations that
    # are neither the latest nor the best as soon as that is so; the best one on request
    assert "free state 3" not in rec.events
    assert rec.events.index("free scratch 3") == rec.events.index("step 4") + 1
    assert rec.events.index("free state 4") < rec.events.index("step 6")
    assert {f"free scratch {n}" for n in range(1, 7)} | {f"free state {n}" for n in (1, 2, 4, 5, 6)} == {
        e for e in rec.events if e.startswith("free")
    }
    result.release()
    assert rec.events[-1] == "free state 3"


def test_a_converged_step_ends_the_loop():
    rec = Recorder([NAN] * 10, converge_at=2)
    result = Loop("fake").run(rec.step, max_iter=9, first=0)
    assert result.last_iteration == 2 and result.stopped_by == "converged"
    assert result.state == "state 2"


def test_release_previous_frees_the_previous_scratch_inside_the_step():
    events = []

    def step(it: Iteration) -> IterationResult:
        it.release_previous()
        events.append(f"used {it.number}")
        it.on_release(lambda: events.append(f"free {it.number}"))
        return IterationResult(train_rmse=1.0)

    Loop("fake").run(step, max_iter=3)
    assert events == ["used 1", "free 1", "used 2", "free 2", "used 3", "free 3"]


def test_a_failing_step_frees_everything_and_raises():
    rec = Recorder([NAN, 0.9, 0.8])

    def step(it: Iteration) -> IterationResult:
        if it.number == 3:
            it.on_release(lambda: rec.events.append("free scratch 3"))
            raise RuntimeError("boom")
        return rec.step(it)

    with pytest.raises(RuntimeError, match="boom"):
        Loop("fake", patience=2).run(step, max_iter=5)
    assert {"free scratch 3", "free state 2", "free scratch 2", "free state 1"} <= set(rec.events)


def test_progress_line_leaves_out_missing_validation(caplog):
    rec = Recorder([NAN, NAN, 0.8123])
    with caplog.at_level(logging.INFO, logger="recspark.models.iterative"):
        Loop("als").run(rec.step, max_iter=2)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("als iteration 1/2: train RMSE 0.5000, objective 9, relative change 0.5 (")
    assert "validation RMSE" not in lines[0] and "nan" not in lines[0]
    assert lines[1].startswith("als iteration 2/2: train RMSE 0.3333, validation RMSE 0.8123,")


class FakeRdd:
    """Just enough of an RDD for Iteration.persist: records how it was persisted."""

    def __init__(self, checkpoint_dir: str | None) -> None:
        self.context = type("Context", (), {"getCheckpointDir": lambda _self: checkpoint_dir})()
        self.calls: list[str] = []

    def persist(self, _level):
        self.calls.append("persist")
        return self

    def setName(self, _name):
        return self

    def checkpoint(self):
        self.calls.append("checkpoint")

    def localCheckpoint(self):
        self.calls.append("localCheckpoint")

    def unpersist(self):
        self.calls.append("unpersist")


@pytest.mark.parametrize("checkpoint_dir, kind", [("/tmp/cp", "checkpoint"), (None, "localCheckpoint")])
def test_checkpoint_kind_follows_the_checkpoint_directory(checkpoint_dir, kind):
    rdds = {}

    def step(it: Iteration) -> IterationResult:
        rdds[it.number] = it.persist(FakeRdd(checkpoint_dir), f"fake {it.number}")
        return IterationResult(train_rmse=1.0)

    Loop("fake", checkpoint_every=2).run(step, max_iter=4).release()
    assert [kind in rdds[n].calls for n in (1, 2, 3, 4)] == [False, True, False, True]
    assert all(r.calls[-1] == "unpersist" for r in rdds.values())


def test_spark_rdds_are_checkpointed_every_n_iterations_and_the_previous_unpersisted(spark):
    sc = spark.sparkContext
    rdds = {}

    def step(it: Iteration) -> IterationResult:
        previous = rdds.get(it.number - 1, sc.parallelize(range(10), 2))
        rdd = it.persist(previous.map(lambda x: x + 1), f"loop test {it.number}", state=True)
        total = rdd.sum()  # the first action: materialises (and checkpoints when due)
        rdds[it.number] = rdd
        return IterationResult(train_rmse=math.sqrt(total))

    result = Loop("fake", checkpoint_every=2).run(step, max_iter=5)

    assert [rdds[n].isCheckpointed() for n in range(1, 6)] == [False, True, False, True, False]
    assert rdds[4].getCheckpointFile()  # a reliable checkpoint: the test session has a dir
    assert [rdds[n].is_cached for n in range(1, 6)] == [False, False, False, False, True]
    assert result.history[TRAIN_RMSE].iloc[-1] == pytest.approx(math.sqrt(sum(range(5, 15))))
    result.release()
    assert not rdds[5].is_cached
