"""The cluster test's commands, run in the background while the rest of the suite runs.

The cluster test (:mod:`tests.scripts.test_cluster`) starts a Spark standalone cluster
(``scripts/cluster.sh start``) and submits four applications through ``scripts/submit.sh``.
Most of its six minutes is latency (JVM starts, the packed environment unpacked by each
driver and executor, one-core executors): it keeps about a third of the two cores busy.
:class:`ClusterRun` starts those commands in a thread when the test session begins (the
``cluster_run`` fixture of ``tests/conftest.py``), so the other tests use the idle time;
the test then waits for the result and checks it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.pipeline.test_train_reference import SETTINGS

REPO = Path(__file__).resolve().parent.parent.parent


def job_args(sample_dir: Path, out: Path) -> list[str]:
    """The reference run's settings for bias and mllib_als on ml-latest-small (see
    :mod:`tests.pipeline.test_train_reference`), every output under ``out``."""
    sets = {
        "data.dir": sample_dir, "data.dataset": "ml-latest-small",
        "ingest.output_dir": out / "ingest",
        "train.output_dir": out / "runs", "train.run_id": "same", "train.models": "bias,mllib_als",
        **dict(setting.split("=", 1) for setting in SETTINGS), "spark.checkpoint_dir": "",
        "segment.model": "mllib_als", "segment.source": "run", "segment.k": 2,
        "segment.output_dir": out / "segments",
        "rescore.model": "mllib_als", "rescore.output_dir": out / "scores",
        "rescore.score_date": '"2025-01-01"',
    }
    return [word for key, value in sets.items() for word in ("--set", f"{key}={value}")]


@dataclass(frozen=True)
class Finished:
    """What the run left: the master URL (None when the cluster did not start), the cluster's
    state folder, the jobs' output folder, and submit.sh's exit code and output."""

    master: str | None
    state: Path
    out: Path
    returncode: int
    stdout: str
    stderr: str


class ClusterRun:
    """``scripts/cluster.sh start``, then ``scripts/submit.sh MASTER`` with :func:`job_args`
    (state under ``folder/cluster``, outputs under ``folder/out``) in a background thread;
    :meth:`wait` gives a :class:`Finished`, :meth:`close` kills what still runs and stops
    the cluster. submit.sh runs without this process's PYTHONPATH or PYSPARK_PYTHON (the
    jobs get their library and Python only from what spark-submit ships), in its own
    process group."""

    def __init__(self, folder: Path, sample_dir: Path) -> None:
        self.state, self.out = folder / "cluster", folder / "out"
        self._log = (folder / "submit.out", folder / "submit.err")
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYSPARK_SUBMIT_ARGS")}
        env.update(RECSPARK_CLUSTER_DIR=str(self.state), PYTHON=sys.executable,
                   PACK_VENV=sys.prefix, DRIVER_PYTHON=sys.executable,
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
        self._env, self._args = env, job_args(sample_dir, self.out)
        self._lock = threading.Lock()
        self._closed = False
        self._submit: subprocess.Popen | None = None
        self._result: Finished | None = None
        self._thread = threading.Thread(target=self._run, name="cluster-run", daemon=True)
        self._thread.start()

    def _script(self, *argv: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([str(REPO / "scripts" / "cluster.sh"), *argv], env=self._env,
                              capture_output=True, text=True, timeout=timeout)

    def _run(self) -> None:
        master = None
        try:
            started = self._script("start", timeout=600)
            code, out, err = started.returncode, started.stdout, started.stderr
            if code == 0:
                master = started.stdout.split()[-1]
                code, out, err = self._submit_jobs(master)
        except Exception as exc:  # e.g. a start that timed out: the test reports it
            code, out, err = -1, "", repr(exc)
        self._result = Finished(master, self.state, self.out, code, out, err)

    def _submit_jobs(self, master: str) -> tuple[int, str, str]:
        with open(self._log[0], "w") as out, open(self._log[1], "w") as err:
            with self._lock:
                if self._closed:
                    return -signal.SIGKILL, "", "closed before submit.sh started"
                self._submit = subprocess.Popen(
                    [str(REPO / "scripts" / "submit.sh"), master, *self._args],
                    env=self._env, stdout=out, stderr=err, start_new_session=True,
                )
            code = self._submit.wait()
        return code, self._log[0].read_text(), self._log[1].read_text()

    def wait(self, timeout: float) -> Finished:
        """The finished run; raises TimeoutError when it is still running after ``timeout`` s."""
        self._thread.join(timeout)
        if self._result is None:
            raise TimeoutError(f"the cluster run did not finish in {timeout:.0f} s")
        return self._result

    def close(self) -> None:
        """Kill submit.sh's process group if it still runs, then stop the cluster."""
        with self._lock:
            self._closed = True
            if self._submit is not None and self._submit.poll() is None:
                os.killpg(self._submit.pid, signal.SIGKILL)
        self._thread.join(700)  # a cluster start under way ends within its own timeout
        if (self.state / "master.pid").exists():
            self._script("stop", timeout=300)
