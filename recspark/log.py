"""Logging set-up and the progress-line timer used around every stage."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

from pyspark.sql import SparkSession

_logger = logging.getLogger("recspark")


def setup_logging(level: str = "INFO") -> None:
    """Progress lines on stderr: time, level, logger, message."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # py4j logs every gateway call at INFO; keep it quiet.
    logging.getLogger("py4j").setLevel(logging.WARNING)


#: The SparkContext's local properties behind the UI's job description and job group.
_JOB_PROPERTIES = ("spark.job.description", "spark.jobGroup.id")


@contextlib.contextmanager
def job_description(name: str, spark: SparkSession | None = None) -> Iterator[None]:
    """Name the Spark jobs started inside the block, no log line: ``name`` becomes their
    description and their job group in the UI (``statusTracker().getJobIdsForGroup(name)``
    finds them). On exit the enclosing block's name is restored, so blocks nest."""
    if spark is None:
        yield
        return
    sc = spark.sparkContext
    saved = [(key, sc.getLocalProperty(key)) for key in _JOB_PROPERTIES]
    for key, _ in saved:
        sc.setLocalProperty(key, name)
    try:
        yield
    finally:
        for key, value in saved:
            sc.setLocalProperty(key, value)  # None removes it


@contextlib.contextmanager
def stage(name: str, spark: SparkSession | None = None) -> Iterator[None]:
    """Log the start and wall time of a stage; name its Spark jobs in the UI."""
    _logger.info("%s ...", name)
    start = time.perf_counter()
    try:
        with job_description(name, spark):
            yield
    except BaseException:
        _logger.error("%s failed after %.1f s", name, time.perf_counter() - start)
        raise
    _logger.info("%s done in %.1f s", name, time.perf_counter() - start)
