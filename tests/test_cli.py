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


def _no_spark(monkeypatch):
    def no_spark(_cfg):
        raise AssertionError("the SparkSession must not be built")

    monkeypatch.setattr(cli, "build_session", no_spark)


@pytest.mark.parametrize("name", ["ingest", "train", "segment", "rescore", "tune", "report", "generate"])
def test_every_command_has_its_own_help(capsys, name):
    with pytest.raises(SystemExit) as stop:
        cli.main([name, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: recspark {name}")
    assert "config sections read: spark" in out and "examples:\n  recspark " + name in out
    assert "outputs: " in out and "--dry-run" in out


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in ("ingest", "train", "segment", "rescore", "tune", "report", "generate"):
        assert f"\n  {name} " in out


def test_dry_run_prints_config_and_plan_without_spark(monkeypatch, capsys):
    _no_spark(monkeypatch)
    assert cli.main(["train", "--dry-run", "--set", "train.models=bias,popularity,als",
                     "--set", "train.run_id=x"]) == 0
    out = capsys.readouterr().out
    assert 'models = ["bias", "popularity", "als"]' in out
    plan = [line for line in out.splitlines() if line.startswith("# ")]
    assert "# 5. fit popularity [SAVE, TOP_N]" in plan
    assert any("top-10 lists and ranking metrics@10: popularity, als" in p for p in plan)
    assert plan[-2].endswith("/x/") and plan[-1].endswith("write report.html")


def test_dry_run_still_rejects_a_bad_value(monkeypatch, caplog):
    _no_spark(monkeypatch)
    assert cli.main(["segment", "--dry-run", "--set", "als.rank=0"]) == 2
    assert "als.rank" in caplog.text


def test_tune_dry_run_plans_the_search_without_spark(monkeypatch, capsys):
    _no_spark(monkeypatch)
    assert cli.main(["tune", "--dry-run", "--model", "als", "--grid", "als.rank=[10,20]"]) == 0
    plan = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# ")]
    assert any("the test part is never read" in p for p in plan)
