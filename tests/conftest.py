"""One session-scoped local SparkSession shared by every test."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from recspark.session import FIXED_SETTINGS

#: The real ml-latest-small sample, beside the repo (CI) or where $RECSPARK_DATA points.
REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = Path(os.environ.get("RECSPARK_DATA", REPO.parent / "shared" / "data")) / "ml-latest-small"


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> SparkSession:
    tmp = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("recspark-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config(map=FIXED_SETTINGS)  # as jobs run
        .config("spark.driver.memory", "3g")
        .config("spark.sql.warehouse.dir", str(tmp / "warehouse"))
        .config("spark.local.dir", str(tmp / "local"))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    session.sparkContext.setCheckpointDir(str(tmp / "checkpoints"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The ml-latest-small folder; tests that need it fail loudly if it is missing."""
    if not (SAMPLE_DIR / "ratings.csv").is_file():
        pytest.fail(
            f"ml-latest-small not found at {SAMPLE_DIR}; set RECSPARK_DATA to the folder holding it"
        )
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def cluster_run(sample_dir, tmp_path_factory):
    """The cluster test's commands running in the background (a
    :class:`tests.scripts.cluster_run.ClusterRun`), stopped when the session ends."""
    from tests.scripts.cluster_run import ClusterRun

    run = ClusterRun(tmp_path_factory.mktemp("cluster_run"), sample_dir)
    try:
        yield run
    finally:
        run.close()


@pytest.fixture(scope="session", autouse=True)
def _start_cluster_run_early(request):
    """Starts ``cluster_run`` as the session begins when a selected test uses it, so that its
    commands run beside the other tests. Without the sample, nothing starts early: the test
    that needs it fails on its own."""
    if (SAMPLE_DIR / "ratings.csv").is_file() and any(
        "cluster_run" in item.fixturenames for item in request.session.items
    ):
        request.getfixturevalue("cluster_run")


class _Lent:
    """The test session lent to a job; the job's ``spark.stop()`` leaves it running."""

    def __init__(self, session: SparkSession) -> None:
        self._session = session

    def __getattr__(self, name):
        return getattr(self._session, name)

    def stop(self) -> None:
        pass


@pytest.fixture
def run_job_script(spark):
    """Run ``<folder>/<name>.py``'s ``main(argv)`` (``jobs/`` unless ``folder`` says, e.g.
    ``scripts``) on the shared session; returns its exit code."""
    import importlib.util

    def run(name: str, argv: list[str], *, folder: str = "jobs") -> int:
        spec = importlib.util.spec_from_file_location(f"job_{name}", REPO / folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main(argv)

    with _lent_to_commands(spark):
        yield run


class JobWatch:
    """The Spark jobs started inside a ``with JobWatch(spark, groups) as jobs:`` block:
    ``jobs.unnamed`` lists the call sites of those that ran outside every stage
    (:func:`recspark.log.stage` puts each job into a group named after its stage), e.g.
    ``job 98: parquet at NativeMethodAccessorImpl.java:0``, and ``jobs.in_group[g]`` the
    ids of those in each stage group of ``groups``. Spark's status tracker keeps the last
    ``spark.ui.retainedJobs`` (1,000) jobs."""

    def __init__(self, spark: SparkSession, groups: tuple[str, ...] = ()) -> None:
        self.tracker = spark.sparkContext.statusTracker()
        self.groups = groups
        self.unnamed: list[str] = []
        self.in_group: dict[str, set[int]] = {}

    def _ids(self) -> dict[str | None, set[int]]:
        return {g: set(self.tracker.getJobIdsForGroup(g)) for g in (None, *self.groups)}

    def __enter__(self) -> "JobWatch":
        self._before = self._ids()
        return self

    def __exit__(self, *exc) -> None:
        new = {g: ids - self._before[g] for g, ids in self._ids().items()}
        for job in sorted(new.pop(None)):
            info = self.tracker.getJobInfo(job)
            stages = [self.tracker.getStageInfo(s) for s in (info.stageIds if info else [])]
            self.unnamed.append(f"job {job}: " + ", ".join(s.name for s in stages if s is not None))
        self.in_group = new


@dataclass(frozen=True)
class SampleIngest:
    """What :func:`sample_ingest` made: the ``--set`` arguments that point a job at
    ml-latest-small and its ingest output (``ingest_dir``), and the ingest's jobs."""

    args: list[str]
    ingest_dir: str
    jobs: JobWatch


@pytest.fixture(scope="session")
def sample_ingest(spark, sample_dir, tmp_path_factory) -> SampleIngest:
    """ml-latest-small ingested once, through the ``recspark ingest`` command with the
    default settings, for the tests that train or segment on it. The ingest output does not
    depend on the session's shuffle partitions (2 and 8 wrote identical files), so the
    reference-metrics test shares it too; the ingest tests make their own."""
    from recspark import cli

    tmp = tmp_path_factory.mktemp("sample_ingest")
    args = ["--set", f"data.dir={sample_dir}", "--set", f"ingest.output_dir={tmp}/ingest"]
    with _lent_to_commands(spark), JobWatch(spark, SAMPLE_INGEST_GROUPS) as jobs:
        assert cli.run_command("ingest", args) == 0
    return SampleIngest(args, f"{tmp}/ingest", jobs)


@dataclass(frozen=True)
class SmallRun:
    """What :func:`small_run` made: the train output folder, the run folder, the common
    ``--set`` arguments, and the jobs of its train and segment (a :class:`JobWatch` of the
    stage groups in :data:`SMALL_RUN_GROUPS`)."""

    runs_dir: str
    run_dir: str
    common: list[str]
    jobs: JobWatch


#: Stage groups whose jobs :func:`sample_ingest` and :func:`small_run` record (the
#: job-naming test requires them).
SAMPLE_INGEST_GROUPS = ("ingest: deduplicate and write indexed ratings",)
SMALL_RUN_GROUPS = ("fit als", "top-10 recommendations of als", "train: write metrics",
                    "segment: k-means")


@contextmanager
def _lent_to_commands(spark):
    """The ``recspark`` commands and job scripts run on the test session inside the block."""
    from recspark import cli

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "build_session", lambda _cfg: _Lent(spark))
        yield


@pytest.fixture(scope="session")
def small_run(spark, sample_ingest, tmp_path_factory) -> SmallRun:
    """A real ml-latest-small run, made once for the report, notebook-API and job-naming
    tests: train (bias, popularity, als with 4 iterations and a validation set, svd with a
    rank sweep) on :func:`sample_ingest` and segment (als, k = 3), through the ``recspark``
    commands."""
    from recspark import cli

    tmp = tmp_path_factory.mktemp("small_run")
    common = sample_ingest.args + [
        "--set", f"train.output_dir={tmp}/runs", "--set", f"segment.output_dir={tmp}/segments",
        "--set", f"rescore.output_dir={tmp}/rescore",
    ]
    with _lent_to_commands(spark), JobWatch(spark, SMALL_RUN_GROUPS) as jobs:
        assert cli.run_command("train", common + [
            "--set", "train.run_id=small", "--set", "train.models=bias,popularity,als,svd",
            "--set", "als.max_iter=4", "--set", "als.rank=8", "--set", "svd.sweep=[4,8,12]",
            "--set", "svd.rank=8", "--set", "train.validation_fraction=0.05",
            "--set", "recommend.extra_splits=[]",
        ]) == 0
        assert cli.run_command("segment", common + [
            "--set", "segment.run_id=small", "--set", "segment.k=3",
            "--set", "segment.plot_points=2000",
        ]) == 0
    return SmallRun(f"{tmp}/runs", f"{tmp}/runs/small", common, jobs)
