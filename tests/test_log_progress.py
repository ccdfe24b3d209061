"""Progress lines of long stages: the time-left estimate and the Spark task counts."""

from __future__ import annotations

import logging

from recspark.log import SparkProgress, eta, stage


def test_eta_extrapolates_the_rate_so_far():
    assert eta(0, 10, 3.0) == "3.0 s elapsed"
    assert eta(2, 10, 4.0) == "4.0 s elapsed, ~16 s left"
    assert eta(10, 10, 9.5) == "9.5 s elapsed, ~0 s left"


def test_progress_line_counts_tasks_of_the_running_stage(spark):
    import time

    progress = SparkProgress("slow stage", spark, start=time.perf_counter(), every=0.2)
    assert progress.line() == ""  # nothing running
    seen = []

    def slow(rows):
        time.sleep(0.6)
        return rows

    progress.line = (lambda line=progress.line: seen.append(line()) or seen[-1])
    progress.start()
    try:
        spark.sparkContext.parallelize(range(4), 4).mapPartitions(slow).count()
    finally:
        progress.stop()
    lines = [s for s in seen if s]
    assert lines, seen
    assert lines[0].startswith("slow stage: ") and "/4 tasks, " in lines[0]


def test_stage_logs_start_and_end(caplog):
    with caplog.at_level(logging.INFO, logger="recspark"), stage("tiny"):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "tiny ..." and messages[-1].startswith("tiny done in ")
