"""recspark ingest against a bare Spark CSV -> Parquet of the same ratings.csv, in one run.

    python scripts/bench_ingest.py /tmp/ingest/gen                 # a generated ml-32m-shape folder
    python scripts/bench_ingest.py /work/shared/data/ml-latest-small --set spark.driver_memory=8g

The anchor is the ten-line PySpark job a user would write: read ``ratings.csv`` with an
explicit schema and write it as Parquet. recspark's ingest then runs on the same folder in
the same session (the bare job first, so both see a warm page cache after the first read),
and the script prints both wall times, their ratio (issue 15 asks for at most 1.5) and the
load average before and after, since the machine is shared. Outputs go to a temporary
folder that is removed. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

try:
    import recspark  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import types as T  # noqa: E402

from recspark.config import load_config  # noqa: E402
from recspark.log import setup_logging  # noqa: E402
from recspark.pipeline.ingest import run_ingest  # noqa: E402
from recspark.session import build_session  # noqa: E402

_logger = logging.getLogger("bench_ingest")

BARE_SCHEMA = T.StructType(
    [
        T.StructField("userId", T.LongType()),
        T.StructField("movieId", T.LongType()),
        T.StructField("rating", T.DoubleType()),
        T.StructField("timestamp", T.LongType()),
    ]
)


def bare_csv_to_parquet(spark: SparkSession, ratings_csv: str, out: str) -> float:
    """Seconds for the anchor: ratings.csv (explicit schema, header) -> Parquet."""
    start = time.perf_counter()
    spark.read.csv(ratings_csv, header=True, schema=BARE_SCHEMA).write.mode("overwrite").parquet(
        out
    )
    return time.perf_counter() - start


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    """Run the anchor then the ingest on ``folder``; print seconds, the ratio and the load."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", help="a MovieLens folder holding ratings.csv (csv layout)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    setup_logging("INFO")
    work = tempfile.mkdtemp(prefix="bench_ingest-")
    cfg = load_config(
        overrides=[
            f"data.dir={args.folder}",
            "data.dataset=bench",
            f"ingest.output_dir={work}/ingest/{{dataset}}",
            *args.overrides,
        ]
    )
    spark = build_session(cfg.spark)
    try:
        load_before = _load()
        bare = bare_csv_to_parquet(spark, f"{args.folder.rstrip('/')}/ratings.csv", f"{work}/bare")
        start = time.perf_counter()
        report = run_ingest(spark, cfg)
        ingest = time.perf_counter() - start
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows = report["files"]["ratings.csv"]["rows_read"]
    print(f"ratings rows          {rows:,}")
    print(f"bare CSV -> Parquet   {bare:8.1f} s")
    print(f"recspark ingest       {ingest:8.1f} s")
    print(f"ratio                 {ingest / bare:8.2f} x  (issue 15: at most 1.5)")
    print(f"load average          before {load_before}; after {_load()} (2 cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
