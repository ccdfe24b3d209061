"""Build the SparkSession: a Spark setting made by whoever launched recspark wins.

recspark's ``[spark]`` config (master, driver memory, shuffle partitions, ``extra``) and the
few settings it always wants (UTC session time zone, Arrow, no console progress bar) apply
only to the keys nobody else set. Who else can set them, highest first:

1. **spark-submit.** Under ``spark-submit`` the driver JVM is already running (PySpark finds
   it through ``PYSPARK_GATEWAY_PORT``) and its system properties hold every ``spark.*``
   setting spark-submit resolved: its command line (``--master``, ``--driver-memory``, ...),
   ``--conf``, ``--properties-file`` and ``spark-defaults.conf``. spark-submit always sets a
   master (``local[*]`` when given none). Settings that size the driver JVM
   (``spark.driver.memory``) cannot change once it runs, so the config's value is not applied
   there.
2. **The environment**, when recspark is started with plain ``python`` and launches the JVM
   itself: ``PYSPARK_SUBMIT_ARGS`` (its options, then its ``--conf`` values), then the
   properties file (``--properties-file`` of ``PYSPARK_SUBMIT_ARGS``, else
   ``$SPARK_CONF_DIR/spark-defaults.conf`` or ``$SPARK_HOME/conf/spark-defaults.conf``),
   then ``$MASTER``: the order spark-submit itself applies, since PySpark launches the JVM
   through it.
3. **A SparkSession already running** in this process (a notebook, the tests): its settings.
4. recspark's config.

:func:`resolve` is the rule as a pure function; :func:`launcher_settings` gathers what the
launcher set; :func:`build_session` applies both and logs the master in use and who chose it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, TypeVar

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from recspark.config import SparkConfig
from recspark.log import job_names, named_jobs

_logger = logging.getLogger(__name__)

#: Who set a setting (the log line names it).
SPARK_SUBMIT = "spark-submit"
DEFAULTS_FILE = "spark-defaults.conf"
SUBMIT_ARGS = "environment (PYSPARK_SUBMIT_ARGS)"
MASTER_ENV = "environment (MASTER)"
RUNNING = "the running SparkSession"
RECSPARK = "recspark config"

MASTER = "spark.master"
DRIVER_MEMORY = "spark.driver.memory"
#: Settings read only when the driver JVM starts: useless once it runs.
LAUNCH_ONLY = frozenset({DRIVER_MEMORY})

#: spark-submit options (also valid in PYSPARK_SUBMIT_ARGS) and the setting each one sets.
SUBMIT_OPTIONS = {
    "--master": MASTER,
    "--deploy-mode": "spark.submit.deployMode",
    "--name": "spark.app.name",
    "--driver-memory": DRIVER_MEMORY,
    "--driver-cores": "spark.driver.cores",
    "--driver-java-options": "spark.driver.extraJavaOptions",
    "--driver-library-path": "spark.driver.extraLibraryPath",
    "--driver-class-path": "spark.driver.extraClassPath",
    "--executor-memory": "spark.executor.memory",
    "--executor-cores": "spark.executor.cores",
    "--total-executor-cores": "spark.cores.max",
    "--num-executors": "spark.executor.instances",
    "--queue": "spark.yarn.queue",
    "--jars": "spark.jars",
    "--packages": "spark.jars.packages",
    "--py-files": "spark.submit.pyFiles",
    "--files": "spark.files",
    "--archives": "spark.archives",
}
#: Other spark-submit options that take a value (skipped with it).
_VALUE_OPTIONS = frozenset(
    {"--class", "--exclude-packages", "--repositories", "--principal", "--keytab",
     "--proxy-user", "--kill", "--status"}
)


@dataclass(frozen=True)
class Setting:
    """A setting's value and who set it (``SPARK_SUBMIT``, ``RECSPARK``, ...)."""

    value: str
    source: str


@dataclass(frozen=True)
class Resolution:
    """The outcome of :func:`resolve`.

    ``settings``: every key recspark wants plus every key the launcher set → the
    :class:`Setting` in effect. ``apply``: what recspark passes to the session builder.
    ``overruled``: recspark's values that lost (key → recspark's value), to log.
    """

    settings: dict[str, Setting]
    apply: dict[str, str] = field(default_factory=dict)
    overruled: dict[str, str] = field(default_factory=dict)

    @property
    def master(self) -> Setting:
        """The master in use and who chose it."""
        return self.settings[MASTER]


#: Cache DataFrames (``cache``/``persist``) uncompressed. Compressing the columnar cache
#: costs more CPU than it saves on two cores: caching the random split of the full-shape
#: ingested ratings (25.6M + 6.4M rows, seven columns) took 20.8 and 19.6 s compressed, 9.0
#: and 8.3 s not (1,339 MB cached instead of 728 MB), and later scans were no slower; the
#: ingest's validated rows, 4M of them: 13.9 s of task CPU compressed, 9.1 s not. A cache
#: that outgrows memory spills to disk (``cache`` is MEMORY_AND_DISK).
UNCOMPRESSED_CACHE = {"spark.sql.inMemoryColumnarStorage.compressed": "false"}

#: The JVM and its Python processes (workers, and the driver's data connections) talk over
#: Unix domain sockets instead of TCP on localhost (Spark 4.1+, SPARK-51688; both always
#: run on one host). Every Python task pays a fixed cost for its connection: on two cores a
#: job of 4 trivial Python tasks took 0.15-0.18 s over TCP and 0.07-0.09 s over Unix
#: sockets, 8 tasks 0.25 against 0.09-0.12 s; an ALS fit (20 half-steps of 4 tasks) at the
#: ml-32m shape 32.2 and 31.1 s against 29.5 and 30.2 s, the same factors.
UNIX_SOCKETS = {"spark.python.unix.domain.socket.enabled": "true"}

#: Arrow batches sent to Python tasks are cut by rows only (``maxRecordsPerBatch``, 10,000
#: rows by default), not also by bytes: unless the byte limit is Int.MaxValue, Spark 4
#: measures the batch being built after every row it adds (``ArrowWriter.sizeInBytes`` walks
#: every vector), which a JVM profile of an ALS fit's map side showed as a quarter of its
#: executor samples (that map side now reads through :func:`recspark.arrow.record_batches`,
#: which cuts by rows only anyway; the setting serves the ``applyInArrow``/``mapInArrow``
#: stages: top-N lists, fold-in, kNN). recspark's Arrow rows are small (ids, a rating, a factor vector), so
#: 10,000 of them stay far below Arrow's 2 GB batch limit the byte cut guards. 25.6M ratings
#: (one packed long each) from the cache into an empty ``mapInArrow`` on two cores: 1.9-2.3 s
#: against 4.3-4.9 s with the 64 MB default.
ARROW_BATCHES_BY_ROWS = {"spark.sql.execution.arrow.maxBytesPerBatch": str(2**31 - 1)}

#: Task results up to 32 MB go back to the driver inside the task's status message, not
#: through the block manager (Spark's default sends anything over 1 MB that way: stored by
#: the executor, then fetched by the driver over the block transfer service, even in local
#: mode). ALS's broadcast half-steps return every solved row to the driver (at the ml-32m
#: shape on two cores, 9.3 MB a task): fits of 17.7 and 17.9 s with this alone, 17.5-18.0 s
#: with the broadcasts also uncompressed, against 18.8-19.4 s without (alternated, the same
#: factors); the broadcasts uncompressed alone, 18.4 and 19.5 s: no gain, not set. Spark
#: caps it at ``spark.rpc.message.maxSize`` (128 MB).
DIRECT_TASK_RESULTS = {"spark.task.maxDirectResultSize": "32m"}

#: The settings recspark wants in every session whatever its config, and the tests'
#: session too, so that the tests run Spark as the jobs do.
FIXED_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    # progress bars garble the log lines the jobs print; the UI still shows stages.
    "spark.ui.showConsoleProgress": "false",
    # Arrow moves batches between the JVM and the vectorised Python stages.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    **UNCOMPRESSED_CACHE,
    **UNIX_SOCKETS,
    **ARROW_BATCHES_BY_ROWS,
    **DIRECT_TASK_RESULTS,
}


def wanted_settings(cfg: SparkConfig) -> dict[str, str]:
    """Every ``spark.*`` setting recspark would like: the ``[spark]`` config section plus
    :data:`FIXED_SETTINGS` (an ``extra`` key of the config overrides a fixed one)."""
    return {
        MASTER: cfg.master,
        "spark.app.name": cfg.app_name,
        DRIVER_MEMORY: cfg.driver_memory,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        **FIXED_SETTINGS,
        **dict(cfg.extra),
    }


def resolve(
    preset: Mapping[str, Setting], wanted: Mapping[str, str], *, jvm_running: bool
) -> Resolution:
    """The precedence rule: a key of ``preset`` (what the launcher set) keeps its value;
    ``wanted`` (recspark's config) fills the others, except settings of ``LAUNCH_ONLY``
    when ``jvm_running`` (they can no longer change; the launcher's default stands).

    ``wanted`` must hold ``spark.master`` unless ``preset`` does (raises ValueError).
    """
    if MASTER not in preset and MASTER not in wanted:
        raise ValueError("no master: neither the launcher nor the config sets spark.master")
    settings = dict(preset)
    apply, overruled = {}, {}
    for key, value in wanted.items():
        if key in preset:
            if preset[key].value != value:
                overruled[key] = value
        elif jvm_running and key in LAUNCH_ONLY:
            overruled[key] = value
        else:
            settings[key] = Setting(value, RECSPARK)
            apply[key] = value
    return Resolution(settings, apply, overruled)


def read_properties(text: str) -> dict[str, str]:
    """The ``spark.*`` entries of a ``spark-defaults.conf``-style file: ``key value``,
    ``key=value`` or ``key: value`` per line, ``#`` / ``!`` comments (the Java properties
    syntax without line continuations; spark-submit ignores keys other than ``spark.*``)."""
    out = {}
    for line in text.splitlines():
        m = _PROPERTY.match(line.strip())
        if m and m["key"].startswith("spark."):
            out[m["key"]] = m["value"].strip()
    return out


_PROPERTY = re.compile(r"^(?P<key>[^\s=:#!][^\s=:]*)\s*[=:]?\s*(?P<value>.*)$")


def parse_submit_args(text: str) -> tuple[dict[str, str], dict[str, str], str | None, bool]:
    """Parse ``PYSPARK_SUBMIT_ARGS``: (settings of spark-submit options, ``--conf`` settings,
    the ``--properties-file`` or None, whether ``--load-spark-defaults`` is given).
    ``--opt value`` and ``--opt=value`` both work; other words (``pyspark-shell``) are skipped."""
    options: dict[str, str] = {}
    confs: dict[str, str] = {}
    properties, load_defaults = None, False
    words = shlex.split(text)
    i = 0
    while i < len(words):
        word, value = words[i], None
        if word.startswith("--") and "=" in word:
            word, value = word.split("=", 1)
        takes_value = word in SUBMIT_OPTIONS or word in _VALUE_OPTIONS or word in (
            "--conf", "-c", "--properties-file")
        if takes_value and value is None:
            i += 1
            value = words[i] if i < len(words) else ""
        if word in ("--conf", "-c") and "=" in value:
            key, conf_value = value.split("=", 1)
            confs[key] = conf_value
        elif word == "--properties-file":
            properties = value
        elif word in SUBMIT_OPTIONS:
            options[SUBMIT_OPTIONS[word]] = value
        elif word == "--load-spark-defaults":
            load_defaults = True
        i += 1
    return options, confs, properties, load_defaults


def python_launch_settings(
    environ: Mapping[str, str], read_file=lambda path: Path(path).read_text(encoding="utf-8")
) -> dict[str, Setting]:
    """What the environment sets when recspark launches the JVM itself (plain ``python``):
    ``$MASTER``, the properties file, ``PYSPARK_SUBMIT_ARGS``' ``--conf`` values, then its
    options, each overriding the ones before (spark-submit's own order). ``read_file(path)``
    returns a file's text (missing defaults files are skipped; a missing
    ``--properties-file`` raises FileNotFoundError, as spark-submit fails on it)."""
    options, confs, properties, load_defaults = parse_submit_args(
        environ.get("PYSPARK_SUBMIT_ARGS", "")
    )
    out: dict[str, Setting] = {}
    if environ.get("MASTER"):
        out[MASTER] = Setting(environ["MASTER"], MASTER_ENV)
    files = []
    if properties is None or load_defaults:
        files.append((defaults_file(environ), DEFAULTS_FILE))
    if properties is not None:
        files.append((properties, "--properties-file of PYSPARK_SUBMIT_ARGS"))
    for path, source in files:
        try:
            text = read_file(path)
        except FileNotFoundError:
            if source != DEFAULTS_FILE:
                raise
            continue
        out.update({k: Setting(v, source) for k, v in read_properties(text).items()})
    out.update({k: Setting(v, SUBMIT_ARGS) for k, v in {**confs, **options}.items()})
    return out


def defaults_file(environ: Mapping[str, str]) -> str:
    """Where spark-submit looks for ``spark-defaults.conf``: ``$SPARK_CONF_DIR``, else the
    ``conf/`` folder of ``$SPARK_HOME`` (PySpark's own Spark when unset)."""
    if environ.get("SPARK_CONF_DIR"):
        return str(Path(environ["SPARK_CONF_DIR"]) / DEFAULTS_FILE)
    home = environ.get("SPARK_HOME")
    if not home:
        from pyspark.find_spark_home import _find_spark_home

        home = _find_spark_home()
    return str(Path(home) / "conf" / DEFAULTS_FILE)


def launcher_settings() -> tuple[dict[str, Setting], bool]:
    """(what the launcher set, whether the driver JVM is already running): a running
    SparkContext's settings, else spark-submit's (the JVM's system properties), else
    :func:`python_launch_settings` of this process's environment."""
    active = SparkContext._active_spark_context
    if active is not None:
        return {k: Setting(v, RUNNING) for k, v in active.getConf().getAll()}, True
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        SparkContext._ensure_initialized()  # connects to spark-submit's JVM; starts nothing
        return {k: Setting(v, SPARK_SUBMIT) for k, v in SparkConf().getAll()}, True
    return python_launch_settings(os.environ), False


def build_session(cfg: SparkConfig) -> SparkSession:
    """Create (or reuse) the SparkSession with the settings :func:`resolve` leaves to
    recspark's config (module docstring); log the master in use and who chose it.

    With a local master the Python workers run this interpreter unless ``PYSPARK_PYTHON``
    says otherwise (PySpark reads only that variable; under spark-submit,
    ``spark.pyspark.python`` sets it). On a cluster the cluster's setting rules. The
    checkpoint directory is set per run (:func:`recspark.io.storage.checkpoints`).
    """
    preset, jvm_running = launcher_settings()
    res = resolve(preset, wanted_settings(cfg), jvm_running=jvm_running)
    if res.master.value.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Local mode needs no routable address; without this Spark warns twice at start-up
        # that the host name resolves to a loopback address.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in res.apply.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    for key, value in res.overruled.items():
        kept = res.settings.get(key)
        _logger.info(
            "%s: the recspark config's %s is not applied; %s", key, value,
            f"{kept.value} from {kept.source} stands" if kept else
            "the driver JVM was already running (give it to spark-submit, e.g. --driver-memory)",
        )
    _logger.info(
        "Spark %s, application %s, master %s (chosen by %s)",
        spark.version, spark.sparkContext.applicationId, spark.sparkContext.master,
        res.master.source,
    )
    return spark


_T = TypeVar("_T")
_R = TypeVar("_R")


def map_in_pools(spark: SparkSession, fn: Callable[[_T], _R], items: Sequence[_T], *,
                 parallel: int, pool: str) -> list[_R]:
    """``[fn(item) for item in items]``, ``parallel`` calls at a time from a thread pool;
    the Spark jobs of the i-th call go to scheduler pool ``f"{pool}{i % parallel}"`` (fair
    between calls when ``spark.scheduler.mode=FAIR``), named as the caller's jobs are (its
    :func:`recspark.log.stage`). Results in the order of ``items``; the first exception
    raised by a call is raised here."""
    parallel = max(1, min(parallel, len(items)))
    names = job_names(spark)  # the caller's stage names the calls' jobs too

    def call(indexed: tuple[int, _T]) -> _R:
        i, item = indexed
        named_jobs(spark, names)
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", f"{pool}{i % parallel}")
        return fn(item)

    with ThreadPoolExecutor(max_workers=parallel) as threads:
        return list(threads.map(call, enumerate(items)))


@contextlib.contextmanager
def sql_settings(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Runtime SQL ``settings`` for the duration of the block, then the previous values.

    A setting the user gave Spark (spark-submit ``--conf``, ``spark-defaults.conf`` or the
    config's ``spark.extra``: anything in the SparkConf) is left alone: theirs wins.
    """
    given = spark.sparkContext.getConf()
    changed = {k: spark.conf.get(k, None) for k in settings if not given.contains(k)}
    for key in changed:
        spark.conf.set(key, settings[key])
    try:
        yield
    finally:
        for key, old in changed.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)
