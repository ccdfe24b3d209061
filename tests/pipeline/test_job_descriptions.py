"""Every Spark job of the four jobs is named in the Spark UI (job description and group).

:func:`recspark.log.stage` puts each job into a job group named like the stage; the status
tracker lists the jobs that ran in no group, so a job started outside every stage fails
the test, with the call site Spark recorded for it (e.g. ``toPandas at recommend.py:163``).
The session's ``sample_ingest`` and ``small_run`` watched their ingest, train and segment of
recspark's own models (als, svd); the test runs train (bias, popularity, MLlib ALS, with the
leave-last-out split), segment and rescore (all users, and pairs) on the tiny data set.
"""

from __future__ import annotations

import pytest

from tests.conftest import JobWatch


@pytest.mark.slow
def test_every_job_of_ingest_train_segment_and_rescore_is_named(
    spark, sample_ingest, small_run, tiny, tmp_path, run_job_script
):
    _, common = tiny
    args = common + [
        "--set", f"train.output_dir={tmp_path}/runs", "--set", "train.models=bias,popularity,mllib_als",
        "--set", "recommend.extra_splits=leave_last_out", "--set", "segment.model=mllib_als",
        "--set", "segment.k=2", "--set", "segment.source=run", "--set", f"segment.output_dir={tmp_path}/segments",
        "--set", f"rescore.output_dir={tmp_path}/scores", "--set", 'rescore.score_date="2025-01-01"',
    ]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("userId,movieId\n1,10\n2,30\nx,1\n")
    groups = ("top-10 recommendations of mllib_als", "train: write metrics", "rescore: top-10 (all)",
              "fit mllib_als", "rescore: score pairs")
    with JobWatch(spark, groups) as on_tiny:
        assert run_job_script("train", args) == 0
        assert run_job_script("segment", args) == 0
        assert run_job_script("rescore", args + ["--set", "rescore.model=mllib_als"]) == 0
        assert run_job_script("rescore", args + ["--set", "rescore.model=bias", "--set", "rescore.mode=pairs",
                                                 "--set", f"rescore.input={pairs}"]) == 0
    for jobs in (sample_ingest.jobs, small_run.jobs, on_tiny):
        assert not jobs.unnamed, "jobs outside every stage:\n" + "\n".join(jobs.unnamed)
        for group, ids in jobs.in_group.items():
            assert ids, f"no job in the stage group {group!r}"
