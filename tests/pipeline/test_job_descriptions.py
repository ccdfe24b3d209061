"""Every Spark job of the four jobs is named in the Spark UI (job description and group).

:func:`recspark.log.stage` puts each job into a job group named like the stage; the status
tracker lists the jobs that ran in no group, so a job started outside every stage fails
the test, with the call site Spark recorded for it (e.g. ``toPandas at recommend.py:163``).
"""

from __future__ import annotations

import pytest


def _call_sites(tracker, job_ids) -> list[str]:
    sites = []
    for job in sorted(job_ids):
        info = tracker.getJobInfo(job)
        stages = [tracker.getStageInfo(s) for s in (info.stageIds if info else [])]
        sites.append(f"job {job}: " + ", ".join(s.name for s in stages if s is not None))
    return sites


@pytest.mark.slow
def test_every_job_of_ingest_train_segment_and_rescore_is_named(
    spark, tiny, tmp_path, run_job_script
):
    _, common = tiny
    tracker = spark.sparkContext.statusTracker()
    unnamed_before = set(tracker.getJobIdsForGroup(None))
    first_job = max(unnamed_before | {0})
    args = common + [
        "--set", f"ingest.output_dir={tmp_path}/ingest", "--set", f"train.output_dir={tmp_path}/runs",
        "--set", "train.models=bias,popularity,mllib_als", "--set", "recommend.extra_splits=leave_last_out",
        "--set", "segment.model=mllib_als", "--set", "segment.k=2", "--set", "segment.source=run",
        "--set", f"segment.output_dir={tmp_path}/segments", "--set", f"rescore.output_dir={tmp_path}/scores",
        "--set", 'rescore.score_date="2025-01-01"',
    ]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("userId,movieId\n1,10\n2,30\nx,1\n")
    assert run_job_script("ingest", args) == 0
    assert run_job_script("train", args) == 0
    assert run_job_script("segment", args) == 0
    assert run_job_script("rescore", args + ["--set", "rescore.model=mllib_als"]) == 0
    assert run_job_script("rescore", args + ["--set", "rescore.model=bias", "--set", "rescore.mode=pairs",
                                             "--set", f"rescore.input={pairs}"]) == 0
    unnamed = set(tracker.getJobIdsForGroup(None)) - unnamed_before
    assert not unnamed, "jobs outside every stage:\n" + "\n".join(_call_sites(tracker, unnamed))
    for group in ("top-10 recommendations of mllib_als", "train: write metrics",
                  "rescore: top-10 (all)", "fit mllib_als"):
        assert [j for j in tracker.getJobIdsForGroup(group) if j > first_job], group
