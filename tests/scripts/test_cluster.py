"""scripts/cluster.sh and scripts/submit.sh on a real Spark standalone cluster.

The README's cluster commands are ``scripts/submit.sh MASTER ...``: this test starts a master
and two 1-core workers on 127.0.0.1 (``scripts/cluster.sh start``), runs ingest → train →
segment → rescore through ``scripts/submit.sh`` (spark-submit with ``--py-files
dist/recspark.zip`` and the packed environment in ``--archives``), without this test's
PYTHONPATH or PYSPARK_PYTHON, and checks that

- each job logged the master spark-submit gave it, chosen by spark-submit;
- the master lists each job's application as completed, and the workers ran its executors;
- the train run's metrics equal local mode's: the jobs run with the settings of
  ``tests/pipeline/test_train_reference.py`` (bias and mllib_als), whose REFERENCE metrics
  the same suite requires of a local-mode run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline.test_train_reference import REFERENCE, SETTINGS, expected, reference_rows

REPO = Path(__file__).resolve().parent.parent.parent
JOBS = ("ingest", "train", "segment", "rescore")


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def cluster(tmp_path):
    """(master URL, state folder) of a cluster this test starts and stops."""
    state = tmp_path / "cluster"
    env = {**os.environ, "RECSPARK_CLUSTER_DIR": str(state), "PYTHON": sys.executable}
    script = str(REPO / "scripts" / "cluster.sh")
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert started.returncode == 0, started.stderr
        yield started.stdout.split()[-1], state
    finally:
        subprocess.run([script, "stop"], env=env, timeout=300, check=False)


def _args(sample_dir: Path, out: Path) -> list[str]:
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


@pytest.mark.slow
def test_the_readme_commands_run_on_a_standalone_cluster_as_in_local_mode(
    cluster, tmp_path, sample_dir
):
    master, state = cluster
    assert re.fullmatch(r"spark://127\.0\.0\.1:\d+", master)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYSPARK_SUBMIT_ARGS")}
    env["PACK_VENV"] = sys.prefix
    env["DRIVER_PYTHON"] = sys.executable
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # its own process group: on a timeout the spark-submit JVMs go too, not only submit.sh
    submit = subprocess.Popen(
        [str(REPO / "scripts" / "submit.sh"), master, *_args(sample_dir, tmp_path / "cluster_out")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = submit.communicate(timeout=2400)
    finally:
        if submit.poll() is None:
            os.killpg(submit.pid, signal.SIGKILL)
            submit.wait()
    assert submit.returncode == 0, stdout[-3000:] + stderr[-2000:]
    # spark-submit's PythonRunner merges the driver's stderr (recspark's log) into stdout
    chosen = re.findall(r"application (\S+), master (\S+) \(chosen by ([^)]+)\)", stdout + stderr)
    assert [(m, who) for _, m, who in chosen] == [(master, "spark-submit")] * len(JOBS), chosen
    app_ids = [app for app, _, _ in chosen]

    status = _json(Path(state, "master.json_url").read_text().strip())
    completed = {app["id"]: app for app in status["completedapps"]}
    assert [completed[a]["name"] for a in app_ids] == [f"{job}.py" for job in JOBS]
    assert all(completed[a]["state"] == "FINISHED" for a in app_ids)
    executors = {}
    for url in Path(state, "workers.ui").read_text().split():
        worker = _json(url)
        for ex in worker["finishedexecutors"] + worker["executors"]:
            executors.setdefault(ex["appid"], set()).add(worker["id"])
    for app in app_ids:
        assert executors.get(app), f"{app} ran no executor on the workers"
    assert len(set().union(*executors.values())) == 2  # both workers took part

    cluster_out = tmp_path / "cluster_out"
    assert (cluster_out / "scores" / "score_date=2025-01-01").is_dir()
    assert list((cluster_out / "segments").iterdir())
    on_cluster = reference_rows(pd.read_parquet(cluster_out / "runs" / "same" / "metrics"))
    assert on_cluster == pytest.approx(
        expected({m: REFERENCE[m] for m in ("bias", "mllib_als")}), rel=1e-6
    )
