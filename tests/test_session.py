"""Who chooses a Spark setting: the launcher (spark-submit, the environment) before the config."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest

from recspark.config import SparkConfig
from recspark.log import job_description
from recspark.session import (
    DEFAULTS_FILE,
    MASTER_ENV,
    RECSPARK,
    SPARK_SUBMIT,
    SUBMIT_ARGS,
    Setting,
    map_in_pools,
    parse_submit_args,
    python_launch_settings,
    read_properties,
    resolve,
    sql_settings,
    wanted_settings,
)
from tests.conftest import REPO

WANTED = {"spark.master": "local[2]", "spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "8"}


def test_the_launchers_settings_win_and_the_config_fills_the_rest():
    preset = {
        "spark.master": Setting("spark://h:7077", SPARK_SUBMIT),
        "spark.sql.shuffle.partitions": Setting("8", SPARK_SUBMIT),  # same value: no conflict
        "spark.executor.memory": Setting("2g", SPARK_SUBMIT),
    }
    res = resolve(preset, WANTED, jvm_running=False)
    assert res.master == Setting("spark://h:7077", SPARK_SUBMIT)
    assert res.apply == {"spark.driver.memory": "4g"}
    assert res.overruled == {"spark.master": "local[2]"}
    assert res.settings["spark.driver.memory"] == Setting("4g", RECSPARK)
    assert res.settings["spark.executor.memory"] == Setting("2g", SPARK_SUBMIT)


def test_with_nothing_preset_the_config_sets_everything():
    res = resolve({}, WANTED, jvm_running=False)
    assert res.apply == WANTED and not res.overruled
    assert res.master == Setting("local[2]", RECSPARK)


def test_driver_memory_is_not_applied_once_the_driver_jvm_runs():
    res = resolve({"spark.master": Setting("yarn", SPARK_SUBMIT)}, WANTED, jvm_running=True)
    assert "spark.driver.memory" not in res.apply and "spark.driver.memory" not in res.settings
    assert res.overruled == {"spark.master": "local[2]", "spark.driver.memory": "4g"}
    assert res.apply == {"spark.sql.shuffle.partitions": "8"}


def test_a_master_is_required():
    with pytest.raises(ValueError, match="no master"):
        resolve({}, {"spark.driver.memory": "1g"}, jvm_running=False)


def test_wanted_settings_hold_the_config_section_and_extra_keys():
    cfg = SparkConfig(master="local[3]", shuffle_partitions=5, extra={"spark.executor.memory": "3g"})
    wanted = wanted_settings(cfg)
    assert wanted["spark.master"] == "local[3]"
    assert wanted["spark.sql.shuffle.partitions"] == "5"
    assert wanted["spark.executor.memory"] == "3g"
    assert wanted["spark.sql.session.timeZone"] == "UTC"
    assert wanted["spark.sql.inMemoryColumnarStorage.compressed"] == "false"
    assert wanted["spark.python.unix.domain.socket.enabled"] == "true"
    # exactly Int.MaxValue: the one value that turns Spark's per-row byte count off
    assert wanted["spark.sql.execution.arrow.maxBytesPerBatch"] == str(2**31 - 1)
    assert wanted["spark.task.maxDirectResultSize"] == "32m"


def _batch_sizes(batches):
    for batch in batches:
        yield pa.RecordBatch.from_pydict({"rows": [batch.num_rows]})


def test_arrow_batches_to_python_are_still_cut_at_max_records_per_batch(spark):
    assert spark.conf.get("spark.sql.execution.arrow.maxBytesPerBatch") == str(2**31 - 1)
    one_task = spark.range(0, 25_000, numPartitions=1)
    sizes = sorted(r.rows for r in one_task.mapInArrow(_batch_sizes, "rows long").collect())
    assert sizes == [5_000, 10_000, 10_000]


def test_properties_files_are_read_like_spark_submit_reads_them():
    text = """
    # a comment
    ! another
    spark.master            spark://a:7077
    spark.driver.memory=2g
    spark.executor.memory : 3g
    spark.empty
    not.spark.key  x
    """
    assert read_properties(text) == {
        "spark.master": "spark://a:7077",
        "spark.driver.memory": "2g",
        "spark.executor.memory": "3g",
        "spark.empty": "",
    }


def test_submit_args_options_confs_and_properties_file():
    options, confs, props, load = parse_submit_args(
        "--master=yarn --driver-memory 6g --conf spark.sql.shuffle.partitions=64 "
        "-c 'spark.executorEnv.X=a b' --class Foo --verbose --properties-file /p.conf pyspark-shell"
    )
    assert options == {"spark.master": "yarn", "spark.driver.memory": "6g"}
    assert confs == {"spark.sql.shuffle.partitions": "64", "spark.executorEnv.X": "a b"}
    assert props == "/p.conf" and not load


def test_the_environment_in_spark_submits_order(tmp_path):
    (tmp_path / DEFAULTS_FILE).write_text(
        "spark.master local[1]\nspark.driver.memory 1g\nspark.executor.memory 1g\n"
    )
    env = {
        "SPARK_CONF_DIR": str(tmp_path),
        "MASTER": "local[4]",
        "PYSPARK_SUBMIT_ARGS": "--driver-memory 5g --conf spark.driver.memory=2g "
        "--conf spark.executor.memory=2g pyspark-shell",
    }
    got = python_launch_settings(env)
    # the file beats $MASTER, --conf beats the file, an option beats --conf
    assert got["spark.master"] == Setting("local[1]", DEFAULTS_FILE)
    assert got["spark.executor.memory"] == Setting("2g", SUBMIT_ARGS)
    assert got["spark.driver.memory"] == Setting("5g", SUBMIT_ARGS)
    del env["SPARK_CONF_DIR"]
    env["SPARK_HOME"] = str(tmp_path / "nowhere")  # no defaults file there: skipped
    assert python_launch_settings(env)["spark.master"] == Setting("local[4]", MASTER_ENV)


def test_a_properties_file_replaces_the_defaults_file(tmp_path):
    (tmp_path / DEFAULTS_FILE).write_text("spark.master local[1]\nspark.executor.cores 2\n")
    (tmp_path / "mine.conf").write_text("spark.master local[3]\n")
    env = {"SPARK_CONF_DIR": str(tmp_path),
           "PYSPARK_SUBMIT_ARGS": f"--properties-file {tmp_path / 'mine.conf'} pyspark-shell"}
    got = python_launch_settings(env)
    assert got["spark.master"].value == "local[3]" and "spark.executor.cores" not in got
    env["PYSPARK_SUBMIT_ARGS"] += " --load-spark-defaults"
    got = python_launch_settings(env)
    assert got["spark.master"].value == "local[3]" and got["spark.executor.cores"].value == "2"
    env["PYSPARK_SUBMIT_ARGS"] = "--properties-file /does/not/exist pyspark-shell"
    with pytest.raises(FileNotFoundError):
        python_launch_settings(env)


_PROBE = """
import logging, sys
from recspark.config import SparkConfig
from recspark.session import build_session
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
spark = build_session(SparkConfig(master="local[2]", shuffle_partitions=8))
print("RESULT", spark.sparkContext.master, spark.conf.get("spark.sql.shuffle.partitions"),
      spark.conf.get("spark.sql.session.timeZone"))
spark.stop()
"""


@pytest.mark.slow
@pytest.mark.parametrize("launch", ["spark-submit", "python"])
def test_spark_submits_master_and_conf_win_over_the_config(tmp_path, launch):
    probe = tmp_path / "probe.py"
    probe.write_text(_PROBE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPARK_CONF_DIR": str(tmp_path)}
    if launch == "spark-submit":
        bin_dir = os.path.dirname(sys.executable)
        cmd = [os.path.join(bin_dir, "spark-submit"), "--master", "local[1]",
               "--conf", "spark.sql.shuffle.partitions=3", str(probe)]
        env["PYSPARK_DRIVER_PYTHON"] = env["PYSPARK_PYTHON"] = sys.executable
    else:
        cmd = [sys.executable, str(probe)]
        (tmp_path / DEFAULTS_FILE).write_text("spark.master local[1]\n")
        env["PYSPARK_SUBMIT_ARGS"] = "--conf spark.sql.shuffle.partitions=3 pyspark-shell"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RESULT local[1] 3 UTC" in done.stdout
    who = SPARK_SUBMIT if launch == "spark-submit" else DEFAULTS_FILE
    assert f"master local[1] (chosen by {who})" in done.stdout
    assert "spark.master: the recspark config's local[2] is not applied" in done.stdout


def test_sql_settings_apply_for_the_block_and_leave_the_users_alone(spark) -> None:
    key, users = "spark.sql.inMemoryColumnarStorage.batchSize", "spark.sql.shuffle.partitions"
    assert spark.sparkContext.getConf().contains(users)  # given at start-up: the user's
    before = spark.conf.get(users)
    assert spark.conf.get(key) != "77"
    default = spark.conf.get(key)
    with sql_settings(spark, {key: "77", users: "3"}):
        assert (spark.conf.get(key), spark.conf.get(users)) == ("77", before)
    assert (spark.conf.get(key), spark.conf.get(users)) == (default, before)


def test_map_in_pools_keeps_order_and_names_the_calls_jobs_as_the_callers(spark) -> None:
    sc = spark.sparkContext
    with job_description("pools test", spark):
        got = map_in_pools(
            spark, lambda n: sc.parallelize(range(n), 2).sum(), [3, 5, 7], parallel=2, pool="t"
        )
    assert got == [3, 10, 21]
    assert len(sc.statusTracker().getJobIdsForGroup("pools test")) == 3
