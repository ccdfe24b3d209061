"""Logging set-up and the progress-line timer used around every stage."""

from __future__ import annotations

import contextlib
import logging
import threading
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


#: Spark's (log4j 2) logger of join hints that no join used. recspark marks the bias
#: tables for broadcast joins where it makes them (``models/bias._checkpointed``), so the
#: Parquet write that saves them leaves the mark unused, as intended.
UNUSED_HINT_LOGGER = "org.apache.spark.sql.catalyst.analysis.HintErrorLogger"


@contextlib.contextmanager
def quiet_jvm_logger(spark: SparkSession, name: str, level: str = "ERROR") -> Iterator[None]:
    """Inside the block the driver JVM's log4j 2 logger ``name`` logs only at ``level`` and
    above; afterwards it is as before (a logger that had no setting of its own inherits
    again). The driver plans every query, so its planner's messages (such as
    :data:`UNUSED_HINT_LOGGER`'s) are the driver's to silence. Raises nothing of its own."""
    jvm = spark.sparkContext._jvm
    log4j = jvm.org.apache.logging.log4j
    context = log4j.LogManager.getContext(False)
    had_own = context.getConfiguration().getLoggerConfig(name).getName() == name
    before = log4j.LogManager.getLogger(name).getLevel()
    log4j.core.config.Configurator.setLevel(name, log4j.Level.getLevel(level))
    try:
        yield
    finally:
        if had_own:
            log4j.core.config.Configurator.setLevel(name, before)
        else:
            context.getConfiguration().removeLogger(name)
            context.updateLoggers()


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


def job_names(spark: SparkSession) -> dict[str, str | None]:
    """The job description and group of the calling thread (:func:`job_description`), to
    hand to :func:`named_jobs` in another thread: Spark keeps them per thread."""
    sc = spark.sparkContext
    return {key: sc.getLocalProperty(key) for key in _JOB_PROPERTIES}


def named_jobs(spark: SparkSession, names: dict[str, str | None]) -> None:
    """Name this thread's Spark jobs as :func:`job_names` recorded them in another thread."""
    for key, value in names.items():
        spark.sparkContext.setLocalProperty(key, value)


@contextlib.contextmanager
def stage(name: str, spark: SparkSession | None = None) -> Iterator[None]:
    """Log the start and wall time of a stage; name its Spark jobs in the UI.

    With ``spark``, a stage still running after :data:`PROGRESS_EVERY` seconds logs a
    progress line at that interval (:class:`SparkProgress`): tasks done in the running
    Spark stages, elapsed time and an estimate of the time left.
    """
    _logger.info("%s ...", name)
    start = time.perf_counter()
    progress = SparkProgress(name, spark, start=start) if spark is not None else None
    try:
        with job_description(name, spark):
            if progress is not None:
                progress.start()
            yield
    except BaseException:
        _logger.error("%s failed after %.1f s", name, time.perf_counter() - start)
        raise
    finally:
        if progress is not None:
            progress.stop()
    seconds = time.perf_counter() - start
    _TIMINGS.append((name, round(seconds, 3)))
    _logger.info("%s done in %.1f s", name, seconds)


#: (stage name, seconds) of every stage finished in this process, in order of finishing.
_TIMINGS: list[tuple[str, float]] = []


def timings() -> list[tuple[str, float]]:
    """The (name, wall seconds) of every :func:`stage` finished so far in this process
    (nested stages too, inner first); slice it to get one job's stages."""
    return list(_TIMINGS)


#: Seconds between the progress lines of a long stage.
PROGRESS_EVERY = 30.0


def eta(done: float, total: float, elapsed: float) -> str:
    """``"12.0 s elapsed, ~36 s left"``: the time left estimated as ``elapsed`` × (total −
    done) / done, the rate so far; ``"12.0 s elapsed"`` while nothing is done yet."""
    text = f"{elapsed:.1f} s elapsed"
    if done > 0 and total >= done:
        text += f", ~{elapsed * (total - done) / done:.0f} s left"
    return text


class SparkProgress(threading.Thread):
    """A daemon thread that logs, every ``every`` seconds until :meth:`stop`, the tasks done
    of the Spark stages running now (``statusTracker``), e.g. ``top-10 recommendations of
    als: 12/40 tasks, 31.0 s elapsed, ~72 s left``. The estimate assumes the remaining
    tasks take as long as the finished ones; it covers the stages Spark has started, not
    the ones a later action will start. Of nested stages only the innermost logs."""

    #: The running instances, outermost first (stages nest on the driver's thread).
    _open: list["SparkProgress"] = []

    def __init__(
        self, name: str, spark: SparkSession, *, start: float, every: float | None = None
    ) -> None:
        super().__init__(name=f"progress: {name}", daemon=True)
        self.label, self.spark, self.t0 = name, spark, start
        self.every = PROGRESS_EVERY if every is None else every
        self._done = threading.Event()

    def start(self) -> None:
        SparkProgress._open.append(self)
        super().start()

    def run(self) -> None:
        while not self._done.wait(self.every):
            if SparkProgress._open and SparkProgress._open[-1] is not self:
                continue
            try:
                line = self.line()
            except Exception:  # the JVM went away (session stopped): no more lines
                return
            if line:
                _logger.info("%s", line)

    def line(self) -> str:
        """The progress line now, or "" when no Spark stage is running."""
        tracker = self.spark.sparkContext.statusTracker()
        done = total = 0
        for stage_id in tracker.getActiveStageIds():
            info = tracker.getStageInfo(stage_id)
            if info is not None:
                done, total = done + info.numCompletedTasks, total + info.numTasks
        if total == 0:
            return ""
        elapsed = time.perf_counter() - self.t0
        return f"{self.label}: {done}/{total} tasks, {eta(done, total, elapsed)}"

    def stop(self) -> None:
        """End the thread (it logs nothing more)."""
        self._done.set()
        if self in SparkProgress._open:
            SparkProgress._open.remove(self)
