"""The generator job: plan on the driver, tables drawn in Spark tasks, written in the
MovieLens CSV layout plus ``_truth/``, published atomically.

Layout (as ml-32m): ``ratings.csv`` (``userId,movieId,rating,timestamp``), ``movies.csv``
(``movieId,title,genres``), ``tags.csv`` (``userId,movieId,tag,timestamp``) and
``links.csv`` (``movieId,imdbId,tmdbId``), and the tag genome in ml-25m's layout,
``genome-scores.csv`` (``movieId,tagId,relevance``) and ``genome-tags.csv`` (``tagId,tag``)
(:mod:`~recspark.synthetic.genome`; none when ``genome_tags`` is 0), RFC 4180 quoting, one
header line. A new file of the layout is one more :class:`CsvOutput` in :func:`csv_outputs`.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from pyspark.broadcast import Broadcast
from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config, GenerateConfig, expand
from recspark.io.storage import staged
from recspark.log import stage
from recspark.schema import (
    ML_GENOME_SCORES_HEADER,
    ML_GENOME_TAGS_HEADER,
    ML_LINKS_HEADER,
    ML_MOVIES_HEADER,
    ML_RATINGS_HEADER,
    ML_TAGS_HEADER,
)
from recspark.synthetic.genome import genome_frame, genome_movies, genome_tags_table
from recspark.synthetic.movies import link_table, movie_table
from recspark.synthetic.plan import SyntheticPlan, plan_synthetic
from recspark.synthetic.ratings import ratings_frame
from recspark.synthetic.tags import tags_frame
from recspark.synthetic.truth import write_truth

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticSummary:
    """What :func:`generate_movielens` wrote."""

    output: str
    users: int
    movies: int
    ratings: int
    tags_planned: int
    seconds: float
    single_files: bool

    def rate(self) -> float:
        """Ratings written per second of wall time (whole run)."""
        return self.ratings / self.seconds if self.seconds > 0 else float("nan")


@dataclass(frozen=True)
class CsvOutput:
    """One CSV file of the data set: file name, MovieLens header, a few words on its size for
    the progress line, and its DataFrame (built lazily, columns in header order)."""

    name: str
    header: Sequence[str]
    size: str
    frame: Callable[[], DataFrame]


def csv_outputs(
    spark: SparkSession, plan: Broadcast, *, seed: int, partitions: int,
    gcfg: GenerateConfig | None = None,
) -> list[CsvOutput]:
    """The CSV files of the data set, in the order they are written, from the broadcast plan
    (the genome files too when ``gcfg.genome_tags`` > 0)."""
    p: SyntheticPlan = plan.value

    def driver_table(make: Callable[..., object]) -> Callable[[], DataFrame]:
        return lambda: spark.createDataFrame(make(p, seed=seed)).coalesce(1)

    outputs = [
        CsvOutput("ratings.csv", ML_RATINGS_HEADER, f"{p.ratings} ratings",
                  lambda: ratings_frame(spark, plan, seed=seed, partitions=partitions)),
        CsvOutput("tags.csv", ML_TAGS_HEADER, f"~{int(p.tag_counts.sum())} tags",
                  lambda: tags_frame(spark, plan, seed=seed, partitions=partitions)),
        CsvOutput("movies.csv", ML_MOVIES_HEADER, f"{p.movies} movies", driver_table(movie_table)),
        CsvOutput("links.csv", ML_LINKS_HEADER, f"{p.movies} movies", driver_table(link_table)),
    ]
    if gcfg is not None and gcfg.genome_tags > 0:
        tags, least = gcfg.genome_tags, gcfg.genome_min_ratings
        n = genome_movies(p, least).size
        outputs += [
            CsvOutput("genome-scores.csv", ML_GENOME_SCORES_HEADER, f"{n} movies × {tags} tags",
                      lambda: genome_frame(spark, plan, seed=seed, tags=tags, min_ratings=least,
                                           chunk_rows=gcfg.chunk_ratings, partitions=partitions)),
            CsvOutput("genome-tags.csv", ML_GENOME_TAGS_HEADER, f"{tags} tags",
                      lambda: spark.createDataFrame(genome_tags_table(tags)).coalesce(1)),
        ]
    return outputs


def _local_path(spark: SparkSession, path: str) -> Path | None:
    """The local file-system path of ``path``, or None when it lives on another file system."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if str(fs.getScheme()) != "file":
        return None
    return Path(str(fs.makeQualified(hpath).toUri().getPath()))


def concat_parts(parts_dir: Path, target: Path, header: Sequence[str]) -> int:
    """Stream Spark's ``part-*`` files (in name, i.e. partition, order) into one CSV file
    with one header line; return the bytes written. Memory use is one 16 MB buffer."""
    parts = sorted(p for p in parts_dir.iterdir() if p.name.startswith("part-"))
    with open(target, "wb") as out:
        out.write((",".join(header) + "\n").encode("utf-8"))
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 16 << 20)
        return out.tell()


def write_csv(
    spark: SparkSession, df: DataFrame, *, folder: str, name: str, header: Sequence[str]
) -> None:
    """Write ``df`` as ``<folder>/<name>`` in the MovieLens CSV dialect (RFC 4180 quoting).

    On the local file system the result is one file (parts concatenated, header once); on
    others (HDFS, object stores) ``<name>`` is a folder of part files each with the header,
    which Spark's CSV reader reads as one data set. Action: one Spark job.
    """
    out = df.toDF(*header).write.option("escape", '"').option("quote", '"')
    local = _local_path(spark, folder)
    if local is None:
        out.option("header", True).csv(f"{folder}/{name}")
        return
    parts = f"{folder}/_parts/{name}"
    out.option("header", False).csv(parts)
    local_parts = _local_path(spark, parts)
    concat_parts(local_parts, local / name, header)
    shutil.rmtree(local_parts)
    if not any((local / "_parts").iterdir()):
        (local / "_parts").rmdir()


def _log_plan(plan: SyntheticPlan) -> None:
    heavy = plan.user_counts > np.interp(plan.exact_above, plan.draw_counts, plan.draw_distinct)
    _logger.info(
        "plan: max user %d ratings, median %d, %d heavy users (Gumbel top-k), %d chunks, "
        "%d tagging users",
        plan.user_counts.max(), np.median(plan.user_counts), int(heavy.sum()),
        len(plan.chunk_bounds) - 1, plan.taggers.size,
    )


def generate_movielens(
    spark: SparkSession, *, cfg: Config, output: str | None = None
) -> SyntheticSummary:
    """Generate the data set described by ``cfg.generate`` (seed ``cfg.seed``) and publish it
    at ``output`` (default ``cfg.generate.output_dir``) atomically.

    Writes the CSV files of :func:`csv_outputs` and ``_truth/``
    (:func:`~recspark.synthetic.truth.write_truth`). Actions: one Spark job per file;
    nothing but the driver-side plan is held in driver memory. The same seed and settings
    give the same bytes, whatever the number of partitions or the task schedule.
    """
    gcfg, seed = cfg.generate, cfg.seed
    target = expand(output or gcfg.output_dir)
    begin = time.perf_counter()
    with stage(f"generate: plan {gcfg.users} users, {gcfg.movies} movies, {gcfg.ratings} ratings", spark):
        plan = plan_synthetic(gcfg, seed=seed)
    _log_plan(plan)
    bc = spark.sparkContext.broadcast(plan)
    try:
        with staged(spark, target) as staging:
            local = _local_path(spark, staging) is not None
            for out in csv_outputs(spark, bc, seed=seed, partitions=gcfg.partitions, gcfg=gcfg):
                with stage(f"generate: {out.name} ({out.size})", spark):
                    write_csv(spark, out.frame(), folder=staging, name=out.name, header=out.header)
            with stage("generate: ground truth", spark):
                write_truth(spark, plan, cfg, f"{staging}/_truth")
    finally:
        bc.unpersist()
    seconds = time.perf_counter() - begin
    summary = SyntheticSummary(
        output=target, users=plan.users, movies=plan.movies, ratings=plan.ratings,
        tags_planned=int(plan.tag_counts.sum()), seconds=seconds, single_files=local,
    )
    _logger.info(
        "generated %d ratings in %.1f s (%.0f ratings/s) -> %s",
        summary.ratings, seconds, summary.rate(), target,
    )
    return summary
