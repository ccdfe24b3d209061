"""Stage names reach the Spark UI as job descriptions and job groups, nested blocks included."""

from __future__ import annotations

from recspark.log import job_description, stage


def test_jobs_are_grouped_by_the_innermost_stage_and_the_outer_name_comes_back(spark):
    sc = spark.sparkContext
    tracker = sc.statusTracker()
    with stage("outer test stage", spark):
        spark.range(3).count()
        with job_description("inner test block", spark):
            spark.range(4).count()
            assert sc.getLocalProperty("spark.job.description") == "inner test block"
        spark.range(5).count()  # after the inner block: the outer name again
    assert sc.getLocalProperty("spark.jobGroup.id") is None
    assert sc.getLocalProperty("spark.job.description") is None
    outer = tracker.getJobIdsForGroup("outer test stage")
    inner = tracker.getJobIdsForGroup("inner test block")
    assert inner and min(outer) < min(inner) and max(outer) > max(inner)
