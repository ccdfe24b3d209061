"""Build the SparkSession from :class:`~recspark.config.SparkConfig`."""

from __future__ import annotations

import logging
import os
import sys

from pyspark import SparkConf
from pyspark.sql import SparkSession

from recspark.config import SparkConfig, expand

_logger = logging.getLogger(__name__)


def build_session(cfg: SparkConfig) -> SparkSession:
    """Create (or reuse) the SparkSession.

    ``cfg.master`` is used only when nothing set ``spark.master`` already, so the same job
    runs in local mode by default and on a cluster unchanged under ``spark-submit --master``.
    The checkpoint directory is set here because iterative algorithms need it. In local
    mode the Python workers run the driver's interpreter unless ``PYSPARK_PYTHON`` says
    otherwise.
    """
    builder = SparkSession.builder.appName(cfg.app_name)
    conf = SparkConf()
    if not conf.contains("spark.master"):
        builder = builder.master(cfg.master)
    settings = {
        "spark.driver.memory": cfg.driver_memory,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # progress bars garble the log lines the jobs print; the UI still shows stages.
        "spark.ui.showConsoleProgress": "false",
        # Arrow moves batches between the JVM and the vectorised Python stages.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **dict(cfg.extra),
    }
    if (conf.get("spark.master") or cfg.master).startswith("local"):
        # Local workers run this interpreter (with NumPy and pyarrow), not whatever
        # "python3" is first on PATH (PySpark reads only the environment variable; under
        # spark-submit, spark.pyspark.python sets it). On a cluster the cluster's setting rules.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Local mode needs no routable address; without this Spark warns twice at start-up
        # that the host name resolves to a loopback address.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level)
    if cfg.checkpoint_dir:
        spark.sparkContext.setCheckpointDir(expand(cfg.checkpoint_dir))
    _logger.info("Spark %s, master %s", spark.version, spark.sparkContext.master)
    return spark
