"""The shared job command line: bad settings stop a job before any Spark work."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from recspark import cli
from tests.conftest import REPO


@pytest.mark.parametrize(
    "override, message",
    [
        ("als.rank=-3", "als.rank: input should be greater than or equal to 1 (got -3)"),
        ("split.test_fraction=1.5", "split.test_fraction: input should be less than 1 (got 1.5)"),
        ("train.models=bias,foo", "train.models: unknown model 'foo'"),
    ],
)
def test_a_bad_value_fails_with_exit_2_before_spark_starts(
    monkeypatch, caplog, run_job_script, override, message
):
    def no_spark(_cfg):
        raise AssertionError("the SparkSession must not be built for a bad config")

    monkeypatch.setattr(cli, "build_session", no_spark)
    caplog.set_level(logging.ERROR)
    assert run_job_script("train", ["--set", override]) == 2
    assert message in caplog.text


def _job(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / "train.py"), *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )


def test_a_bad_value_gives_a_message_not_a_traceback_and_no_jvm():
    done = _job("--set", "als.rank=-3")
    assert done.returncode == 2
    assert "als.rank: input should be greater than or equal to 1" in done.stderr
    assert "Traceback" not in done.stderr
    assert "log4j" not in done.stderr and "SparkContext" not in done.stderr  # no JVM started


def test_a_bad_log_level_is_a_usage_error():
    done = _job("--log-level", "foo")
    assert done.returncode == 2
    assert "invalid choice: 'FOO'" in done.stderr
    assert "Traceback" not in done.stderr
