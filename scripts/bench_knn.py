"""Top-K item neighbours of every movie at the ml-32m shape: wall time and peak memory.

    python scripts/bench_knn.py --ratings 4000000            # 1/8 of ml-32m, full index space
    python scripts/bench_knn.py --ratings 32000204 --driver-memory 8g   # the full size
    python scripts/bench_knn.py --ratings-csv out/synthetic/ml-32m/ratings.csv   # generated files

Ratings are either the synthetic ones of ``bench_svd.synthetic`` (skewed activity and
popularity over 200,948 users × 87,585 movies, duplicates dropped) or a MovieLens-layout
``ratings.csv`` (e.g. written by ``scripts/generate_synthetic.py``). The item-item
similarities (``--measure``, on baseline residuals, shrinkage 100) of every movie against
every movie are computed block by block exactly as ``item_knn`` fits
(:func:`recspark.models.neighbours.knn.neighbour_table`), users capped at
``--max-user-ratings`` sampled ratings, and the top ``--k`` kept; the table is written to
``--output`` (Parquet). Peak memory is the Σ RSS of this process tree (an upper bound) and
its Σ PSS sampled every 5 s (``memwatch``); CPU is the tree's user + system seconds.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.io.ingested import read_ratings_csv
from recspark.log import setup_logging, stage
from recspark.models.bias import BiasConfig, fit_bias
from recspark.models.neighbours.knn import ITEM, KnnConfig, neighbour_table
from recspark.schema import BIAS_PREDICTION, MOVIE_ID, RATING, RESIDUAL, USER_ID

from bench_svd import synthetic  # scripts/bench_svd.py, beside this script
from memwatch import TreeMemory, tree_cpu_seconds  # scripts/memwatch.py

_logger = logging.getLogger("bench_knn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", type=int, default=4_000_000)
    p.add_argument("--ratings-csv", default="", help="a ratings.csv (its folder is read)")
    p.add_argument("--users", type=int, default=200_948)
    p.add_argument("--movies", type=int, default=87_585)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--measure", default="cosine")
    p.add_argument("--max-user-ratings", type=int, default=1000)
    p.add_argument("--max-cells", type=int, default=2_000_000)
    p.add_argument("--driver-memory", default="6g")
    p.add_argument("--output", default="/tmp/bench_knn/neighbours")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    setup_logging()
    watch = TreeMemory(os.getpid())
    watch.start()
    spark = (
        SparkSession.builder.master("local[2]").appName("bench_knn")
        .config("spark.driver.memory", args.driver_memory)
        .config("spark.driver.maxResultSize", "4g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    start = time.perf_counter()
    try:
        if args.ratings_csv:
            ratings = read_ratings_csv(spark, os.path.dirname(args.ratings_csv))
        else:
            ratings = synthetic(spark, users=args.users, movies=args.movies, ratings=args.ratings, seed=args.seed)
        ratings = ratings.select(USER_ID, MOVIE_ID, RATING).cache()
        with stage("bias", spark):
            bias = fit_bias(ratings, cfg=BiasConfig())
            residuals = bias.annotate(ratings).select(
                USER_ID, MOVIE_ID, (F.col(RATING) - F.col(BIAS_PREDICTION)).alias(RESIDUAL)
            ).localCheckpoint()
            n = residuals.count()
        cfg = KnnConfig(measure=args.measure, k=args.k, neighbours=args.k, max_row_entries=args.max_user_ratings,
                        max_cells=args.max_cells)
        with stage(f"top-{args.k} neighbours of every movie", spark):
            table = neighbour_table(residuals, side=ITEM, cfg=cfg, value_col=RESIDUAL, seed=args.seed)
            table.write.mode("overwrite").parquet(args.output)
        rows = spark.read.parquet(args.output)
        movies = rows.select(MOVIE_ID).distinct().count()
        _logger.info(
            "%d ratings; %d movies with neighbours, %d rows; wall %.0f s; CPU %.0f s; peak Σ RSS "
            "%.2f GiB, Σ PSS %.2f GiB", n, movies, rows.count(), time.perf_counter() - start,
            tree_cpu_seconds(os.getpid()), watch.peak_rss / 2**30, watch.peak_pss / 2**30,
        )
    finally:
        spark.stop()
        watch.finish()


if __name__ == "__main__":
    main()
