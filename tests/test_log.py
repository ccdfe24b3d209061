"""Stage names reach the Spark UI as job descriptions and job groups, nested blocks included;
a JVM logger is quieted for a block and comes back as it was."""

from __future__ import annotations

import pytest

from recspark.log import UNUSED_HINT_LOGGER, job_description, quiet_jvm_logger, stage


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


@pytest.mark.parametrize("own_level", [None, "WARN"])
def test_a_quieted_jvm_logger_comes_back_as_it_was(spark, own_level):
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j
    configurator, name = log4j.core.config.Configurator, UNUSED_HINT_LOGGER
    if own_level:  # a setting of its own (the test session's root logs at ERROR)
        configurator.setLevel(name, log4j.Level.getLevel(own_level))

    def warns():
        return log4j.LogManager.getLogger(name).isEnabled(log4j.Level.WARN)

    def has_own():
        config = log4j.LogManager.getContext(False).getConfiguration()
        return config.getLoggerConfig(name).getName() == name

    before = (warns(), has_own())
    try:
        with quiet_jvm_logger(spark, name):
            assert not warns() and has_own()
            assert log4j.LogManager.getLogger(name).isEnabled(log4j.Level.ERROR)
        assert (warns(), has_own()) == before == (own_level is not None, own_level is not None)
    finally:
        if own_level:
            config = log4j.LogManager.getContext(False).getConfiguration()
            config.removeLogger(name)
            log4j.LogManager.getContext(False).updateLoggers()
