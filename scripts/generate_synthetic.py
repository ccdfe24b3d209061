"""Generate a synthetic MovieLens data set in the ml-32m CSV layout (see the package
recspark/synthetic/, entry point recspark.synthetic.generate_movielens).

    python scripts/generate_synthetic.py                       # the full ml-32m shape
    python scripts/generate_synthetic.py --set generate.ratings=2000000 \\
        --set generate.users=12560 --set generate.movies=21896 \\
        --set generate.output_dir=out/synthetic/small
    spark-submit --py-files dist/recspark.zip scripts/generate_synthetic.py [same options]

Writes ratings.csv, movies.csv, tags.csv, links.csv and the planted parameters in _truth/
under generate.output_dir, atomically (a staging folder renamed into place).
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import SparkSession

from recspark.cli import run_job
from recspark.config import Config
from recspark.synthetic import generate_movielens


def _pipeline(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
    s = generate_movielens(spark, cfg=cfg)
    print(
        f"\n{s.ratings} ratings, {s.users} users, {s.movies} movies, ~{s.tags_planned} tags "
        f"in {s.seconds:.1f} s ({s.rate():,.0f} ratings/s) -> {s.output}\n"
    )


def main(argv: list[str] | None = None) -> int:
    return run_job("Generate a synthetic MovieLens data set (ml-32m layout).", _pipeline, argv)


if __name__ == "__main__":
    sys.exit(main())
