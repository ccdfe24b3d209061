import logging
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from recspark.io import storage


def test_staged_publish_replaces_and_failure_keeps_the_old_output(spark, tmp_path):
    target = str(tmp_path / "out")
    with storage.staged(spark, target) as staging:
        spark.range(3).write.parquet(f"{staging}/t")
    assert spark.read.parquet(f"{target}/t").count() == 3

    with pytest.raises(RuntimeError):
        with storage.staged(spark, target) as staging:
            spark.range(10).write.parquet(f"{staging}/t")
            raise RuntimeError("killed half-way")
    assert spark.read.parquet(f"{target}/t").count() == 3
    assert storage.list_dir(spark, str(tmp_path)) == ["out"]  # staging cleaned up

    with storage.staged(spark, target) as staging:
        spark.range(5).write.parquet(f"{staging}/t")
    assert spark.read.parquet(f"{target}/t").count() == 5
    assert storage.list_dir(spark, str(tmp_path)) == ["out"]


def test_text_round_trip(spark, tmp_path):
    path = str(tmp_path / "a.toml")
    storage.write_text(spark, path, "seed = 42\nnamé = 'ü'\n")
    assert storage.read_text(spark, path) == "seed = 42\nnamé = 'ü'\n"
    assert storage.exists(spark, path)


def _gone_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _age(path: Path, hours: float) -> None:
    when = time.time() - hours * 3600
    for p in [*path.rglob("*"), path]:
        os.utime(p, (when, when))


def test_staging_names_carry_this_process_as_owner(spark, tmp_path):
    with storage.staged(spark, str(tmp_path / "out")) as staging:
        name = staging.rsplit("/", 1)[-1]
        assert re.fullmatch(rf"out\._staging-{re.escape(socket.gethostname())}-{os.getpid()}-[0-9a-f]{{8}}", name)
        os.makedirs(staging)
        with storage.staged(spark, str(tmp_path / "other"), under=str(tmp_path / "_staging")) as inner:
            assert inner.startswith(f"{tmp_path}/_staging/other._staging-")
            os.makedirs(inner)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_staging", "other", "out"]


def test_clean_scratch_removes_what_dead_or_long_silent_owners_left(spark, tmp_path, caplog):
    host, dead = socket.gethostname(), _gone_pid()
    names = {
        "dead": f"r1._staging-{host}-{dead}-0123abcd",  # this host, process gone: removed
        "alive": f"r2._staging-{host}-{os.getpid()}-0123abcd",  # this very process: kept
        "far_old": "r3._checkpoints-elsewhere-12-0123abcd",  # another host, 30 h silent: removed
        "far_new": "r4._staging-elsewhere-12-0123abcd",  # another host, 2 h silent: kept
        "legacy_old": "r5._staging-0123abcd",  # no owner (older recspark), 30 h: removed
        "run": "r6",  # a published run: never touched
    }
    for key, name in names.items():
        (tmp_path / name / "part").mkdir(parents=True)
        _age(tmp_path / name, 30 if key.endswith("old") else 2)
    caplog.set_level(logging.INFO, logger="recspark.io.storage")
    removed = storage.clean_scratch(spark, str(tmp_path))
    assert sorted(removed) == sorted(names[k] for k in ("dead", "far_old", "legacy_old"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[k] for k in ("alive", "far_new", "run"))
    assert f"process {dead} of this host is gone" in caplog.text
    assert "left by host elsewhere, untouched for 30.0 h" in caplog.text
    assert "untouched for 2.0 h only; removed after 24 h" in caplog.text


def test_an_old_copy_comes_back_when_the_kill_came_between_the_renames(spark, tmp_path):
    dead = _gone_pid()
    old = tmp_path / f"out._old-{socket.gethostname()}-{dead}-0123abcd"
    (old / "t").mkdir(parents=True)
    storage.clean_scratch(spark, str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (tmp_path / "out" / "t").is_dir()
    old.mkdir()  # the new output was published, only the delete of the old copy was missed
    storage.clean_scratch(spark, str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_checkpoints_go_to_a_run_folder_that_is_removed_and_the_old_dir_restored(spark, tmp_path):
    sc = spark.sparkContext
    before = sc.getCheckpointDir()
    with storage.checkpoints(spark, "", work_dir=str(tmp_path), name="r1") as folder:
        assert folder.startswith(f"{tmp_path}/r1._checkpoints-")
        assert sc.getCheckpointDir().startswith(f"file:{folder}/")
        rdd = sc.parallelize(range(10), 2)
        rdd.checkpoint()
        assert rdd.sum() == 45 and rdd.getCheckpointFile()
        assert list(Path(folder).rglob("rdd-*"))
    assert sc.getCheckpointDir() == before
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with storage.checkpoints(spark, str(tmp_path / "cp"), work_dir="/unused", name="r2") as folder:
            assert folder.startswith(f"{tmp_path}/cp/r2._checkpoints-")
            raise RuntimeError("failed run")
    assert sc.getCheckpointDir() == before and list((tmp_path / "cp").iterdir()) == []
