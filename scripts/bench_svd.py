"""Benchmark truncated and iterative SVD at the ml-32m matrix shape; prints figures.

    python scripts/bench_svd.py --ratings 2000000              # ml-32m shape, 2M ratings
    python scripts/bench_svd.py --ratings 32000204 --driver-memory 8g   # the full size

Synthetic ratings over the full ml-32m index space (200,948 users x 87,585 movies by
default, skewed user activity and movie popularity, duplicates dropped) are generated in
Spark, so the driver-side structures (which scale with users, movies and k) have their
real size while the number of ratings can be scaled down. A :class:`memwatch.TreeMemory`
thread records the peak resident memory of this process and all its children (the JVM and
the Python workers) every 0.2 s, in all and per role. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import psutil
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.models.bias import BiasConfig
from recspark.models.svd import SvdConfig
from recspark.log import setup_logging, stage
from recspark.models.bias import fit_bias
from recspark.models.svd.iterative import fit_iterative_svd
from recspark.models.svd.truncated import fit_truncated_svd
from recspark.schema import MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX

from memwatch import TreeMemory  # scripts/memwatch.py, beside this script

_logger = logging.getLogger("bench_svd")


def _role(proc: psutil.Process) -> str:
    """This process is the "driver", its JVM "jvm", every other descendant "workers"."""
    if proc.pid == os.getpid():
        return "driver"
    return "jvm" if proc.name() == "java" else "workers"


def synthetic(spark: SparkSession, *, users: int, movies: int, ratings: int, seed: int):
    """(user_id, movie_id, user_idx, movie_idx, rating) with skewed activity and popularity."""
    u = F.rand(seed)
    v = F.rand(seed + 1)
    df = spark.range(ratings).select(
        F.floor(F.pow(u, F.lit(2.0)) * users).cast("int").alias(USER_IDX),
        F.floor(F.pow(v, F.lit(3.0)) * movies).cast("int").alias(MOVIE_IDX),
    ).dropDuplicates([USER_IDX, MOVIE_IDX])
    noise = F.randn(seed + 2) * 0.8
    user_effect = (F.pmod(F.xxhash64(USER_IDX), F.lit(1000)) / 1000.0 - 0.5)
    movie_effect = (F.pmod(F.xxhash64(MOVIE_IDX), F.lit(1000)) / 1000.0 - 0.5) * 1.5
    rating = F.least(F.greatest(F.round((3.5 + user_effect + movie_effect + noise) * 2) / 2, F.lit(0.5)), F.lit(5.0))
    return df.select(
        F.col(USER_IDX).cast("long").alias(USER_ID),
        F.col(MOVIE_IDX).cast("long").alias(MOVIE_ID),
        USER_IDX,
        MOVIE_IDX,
        rating.alias(RATING),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_948)
    parser.add_argument("--movies", type=int, default=87_585)
    parser.add_argument("--ratings", type=int, default=2_000_000)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--skip-truncated", action="store_true")
    args = parser.parse_args()
    setup_logging("INFO")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bench_svd")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.sql.shuffle.partitions", str(args.blocks))
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # RSS only (pss_every=0): this benchmark has always reported the upper bound, per role.
    sampler = TreeMemory(os.getpid(), role=_role, pss_every=0)
    sampler.start()
    try:
        with stage("generate", spark):
            ratings = synthetic(
                spark, users=args.users, movies=args.movies, ratings=args.ratings, seed=42
            ).cache()
            n = ratings.count()
        _logger.info("%d ratings after dropping duplicates", n)
        bias = fit_bias(ratings, cfg=BiasConfig())
        cfg = SvdConfig(rank=args.rank, blocks=args.blocks, max_rounds=args.rounds, tol=0.0)
        figures = []
        if not args.skip_truncated:
            sampler.reset()
            start = time.perf_counter()
            model = fit_truncated_svd(ratings, cfg=cfg, bias=bias)
            figures.append(("truncated SVD", time.perf_counter() - start, sampler.peak_rss, dict(sampler.peak_parts), model))
        sampler.reset()
        start = time.perf_counter()
        model = fit_iterative_svd(ratings, cfg=cfg, bias=bias, seed=1)
        figures.append(
            (f"iterative SVD, {args.rounds} rounds", time.perf_counter() - start, sampler.peak_rss, dict(sampler.peak_parts), model)
        )
        print(f"\n{n:,} ratings, {args.users:,} x {args.movies:,}, k = {args.rank}, {args.blocks} blocks")
        for name, seconds, peak, parts, fitted in figures:
            detail = ", ".join(f"{k} {v / 2**30:.2f}" for k, v in parts.items())
            print(f"{name:28s} {seconds:8.1f} s   peak RSS {peak / 2**30:6.2f} GB ({detail} GB)")
            if fitted.history is not None:
                print(fitted.history.to_string(index=False))
    finally:
        sampler.finish()
        spark.stop()


if __name__ == "__main__":
    main()
