"""Every Spark job of the four jobs is named in the Spark UI (job description and group).

:func:`recspark.log.stage` puts each job into a job group named like the stage; the status
tracker lists the jobs that ran in no group, so a job started outside every stage fails
the test, with the call site Spark recorded for it (e.g. ``toPandas at recommend.py:163``).
Ingest, train and segment are the session's ``small_run`` (which watches its jobs); the
test runs rescore itself, for all users and for pairs.
"""

from __future__ import annotations

import pytest

from tests.conftest import JobWatch


@pytest.mark.slow
def test_every_job_of_ingest_train_segment_and_rescore_is_named(
    spark, small_run, tmp_path, run_job_script
):
    args = small_run.common + ["--set", f"rescore.output_dir={tmp_path}/scores",
                               "--set", 'rescore.score_date="2025-01-01"']
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("userId,movieId\n1,10\n2,30\nx,1\n")
    with JobWatch(spark, ("rescore: top-10 (all)", "rescore: score pairs")) as rescore:
        assert run_job_script("rescore", args + ["--set", "rescore.model=als"]) == 0
        assert run_job_script("rescore", args + ["--set", "rescore.model=bias", "--set", "rescore.mode=pairs",
                                                 "--set", f"rescore.input={pairs}"]) == 0
    for jobs in (small_run.jobs, rescore):
        assert not jobs.unnamed, "jobs outside every stage:\n" + "\n".join(jobs.unnamed)
        for group, ids in jobs.in_group.items():
            assert ids, f"no job in the stage group {group!r}"
