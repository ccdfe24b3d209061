"""Every Spark job of the four jobs is named in the Spark UI (job description and group).

:func:`recspark.log.stage` puts each job into a job group named like the stage; the status
tracker lists the jobs that ran in no group, so a job started outside every stage fails
the test, with the call site Spark recorded for it (e.g. ``toPandas at recommend.py:163``).
Ingest, train and segment are the session's ``small_run`` (which records its jobs); the
test runs rescore itself, for all users and for pairs.
"""

from __future__ import annotations

import pytest

from tests.conftest import CHECKED_GROUPS, call_sites


@pytest.mark.slow
def test_every_job_of_ingest_train_segment_and_rescore_is_named(
    spark, small_run, tmp_path, run_job_script
):
    assert not small_run.unnamed_jobs, "jobs outside every stage:\n" + "\n".join(small_run.unnamed_jobs)
    for group in CHECKED_GROUPS:
        assert small_run.groups[group], group

    tracker = spark.sparkContext.statusTracker()
    unnamed_before = set(tracker.getJobIdsForGroup(None))
    first_job = max(unnamed_before | {0})
    args = small_run.common + ["--set", f"rescore.output_dir={tmp_path}/scores",
                               "--set", 'rescore.score_date="2025-01-01"']
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("userId,movieId\n1,10\n2,30\nx,1\n")
    assert run_job_script("rescore", args + ["--set", "rescore.model=als"]) == 0
    assert run_job_script("rescore", args + ["--set", "rescore.model=bias", "--set", "rescore.mode=pairs",
                                             "--set", f"rescore.input={pairs}"]) == 0
    unnamed = set(tracker.getJobIdsForGroup(None)) - unnamed_before
    assert not unnamed, "jobs outside every stage:\n" + "\n".join(call_sites(tracker, unnamed))
    for group in ("rescore: top-10 (all)", "rescore: score pairs"):
        assert [j for j in tracker.getJobIdsForGroup(group) if j > first_job], group
