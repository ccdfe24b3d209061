"""scripts/cluster.sh and scripts/submit.sh on a real Spark standalone cluster.

The README's cluster commands are ``scripts/submit.sh MASTER ...``: this test starts a master
and two 1-core workers on 127.0.0.1 (``scripts/cluster.sh start``), runs ingest → train →
segment → rescore through ``scripts/submit.sh`` (spark-submit with ``--py-files
dist/recspark.zip`` and the packed environment in ``--archives``), without this test's
PYTHONPATH or PYSPARK_PYTHON. Those commands start in the background as the test session
begins (:mod:`tests.scripts.cluster_run`), beside the other tests; this test waits for them
and checks that

- each job logged the master spark-submit gave it, chosen by spark-submit;
- the master lists each job's application as completed, and the workers ran its executors;
- the train run's metrics equal local mode's: the jobs run with the settings of
  ``tests/pipeline/test_train_reference.py`` (bias and mllib_als), whose REFERENCE metrics
  the same suite requires of a local-mode run.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline.test_train_reference import REFERENCE, expected, reference_rows

JOBS = ("ingest", "train", "segment", "rescore")


def _json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.mark.slow
def test_the_readme_commands_run_on_a_standalone_cluster_as_in_local_mode(cluster_run):
    run = cluster_run.wait(timeout=2400)
    assert run.master is not None, f"the cluster did not start: {run.stderr[-2000:]}"
    assert re.fullmatch(r"spark://127\.0\.0\.1:\d+", run.master)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    # spark-submit's PythonRunner merges the driver's stderr (recspark's log) into stdout
    chosen = re.findall(r"application (\S+), master (\S+) \(chosen by ([^)]+)\)", run.stdout + run.stderr)
    assert [(m, who) for _, m, who in chosen] == [(run.master, "spark-submit")] * len(JOBS), chosen
    app_ids = [app for app, _, _ in chosen]

    status = _json(Path(run.state, "master.json_url").read_text().strip())
    completed = {app["id"]: app for app in status["completedapps"]}
    assert [completed[a]["name"] for a in app_ids] == [f"{job}.py" for job in JOBS]
    assert all(completed[a]["state"] == "FINISHED" for a in app_ids)
    executors = {}
    for url in Path(run.state, "workers.ui").read_text().split():
        worker = _json(url)
        for ex in worker["finishedexecutors"] + worker["executors"]:
            executors.setdefault(ex["appid"], set()).add(worker["id"])
    for app in app_ids:
        assert executors.get(app), f"{app} ran no executor on the workers"
    assert len(set().union(*executors.values())) == 2  # both workers took part

    assert (run.out / "scores" / "score_date=2025-01-01").is_dir()
    assert list((run.out / "segments").iterdir())
    on_cluster = reference_rows(pd.read_parquet(run.out / "runs" / "same" / "metrics"))
    assert on_cluster == pytest.approx(
        expected({m: REFERENCE[m] for m in ("bias", "mllib_als")}), rel=1e-6
    )
