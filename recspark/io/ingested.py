"""The ingested data set on disk: folder names, the writers the ingest job uses, every reader.

``jobs/ingest.py`` (:mod:`recspark.pipeline.ingest`) writes one folder per data set, and the
other jobs read it back through the ``read_*`` functions here:

- ``ratings/``: user_id, movie_id, rating, timestamp, user_idx, movie_idx (Parquet,
  partitioned by ``user_block = user_idx % ingest.user_blocks``, sorted by (user_idx,
  movie_idx) inside each block);
- ``movies/``, ``tags/``, ``links/``: the parsed side tables (empty when the layout has none);
- ``user_index/``, ``movie_index/``: id -> dense 0-based index (one file each);
- ``quarantine/``: every malformed row (source_file, line_number, raw_line, reason);
- ``latin1_fallback/``: every line of a UTF-8 file that was not valid UTF-8 and was decoded
  as latin-1 (source_file, line_number, raw_line as decoded; counted per file in the report);
- ``stats/summary``, ``stats/rating_histogram``, ``stats/user_rank_frequency``,
  ``stats/movie_rank_frequency`` (one Parquet file each) and ``plots/*.png``;
- ``report.json`` (counts per file, statistics) and ``config.toml`` (the resolved config).

A run rejected by the quarantine threshold writes only ``quarantine/`` and ``report.json``,
to the sibling folder :func:`failed_dir`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Config, expand
from recspark.errors import DataNotFoundError
from recspark.io import storage
from recspark.io.layouts import LAYOUTS, RatingScale
from recspark.schema import (
    GENOME_SCORES_SCHEMA,
    GENOME_TAGS_SCHEMA,
    INGESTED_RATINGS_SCHEMA,
    ML_GENOME_SCORES_HEADER,
    ML_GENOME_TAGS_HEADER,
    LINKS_SCHEMA,
    MOVIE_ID,
    MOVIE_IDX,
    MOVIE_INDEX_SCHEMA,
    MOVIES_SCHEMA,
    QUARANTINE_SCHEMA,
    RATING,
    TAGS_SCHEMA,
    TIMESTAMP,
    USER_BLOCK,
    USER_ID,
    USER_IDX,
    USER_INDEX_SCHEMA,
)

_logger = logging.getLogger(__name__)

# Sub-folders and files of an ingested data set's folder.
RATINGS_DIR = "ratings"
MOVIES_DIR = "movies"
TAGS_DIR = "tags"
LINKS_DIR = "links"
USER_INDEX_DIR = "user_index"
MOVIE_INDEX_DIR = "movie_index"
QUARANTINE_DIR = "quarantine"
LATIN1_FALLBACK_DIR = "latin1_fallback"
STATS_DIR = "stats"
PLOTS_DIR = "plots"
REPORT_FILE = "report.json"
CONFIG_FILE = "config.toml"

# Statistics tables and plots, relative to the ingested folder.
SUMMARY_TABLE = f"{STATS_DIR}/summary"
RATING_HISTOGRAM_TABLE = f"{STATS_DIR}/rating_histogram"
USER_RANK_FREQUENCY_TABLE = f"{STATS_DIR}/user_rank_frequency"
MOVIE_RANK_FREQUENCY_TABLE = f"{STATS_DIR}/movie_rank_frequency"
RATING_HISTOGRAM_PLOT = f"{PLOTS_DIR}/rating_histogram.png"
RANK_FREQUENCY_PLOT = f"{PLOTS_DIR}/rank_frequency.png"


def path(folder: str, sub: str) -> str:
    """``<folder>/<sub>``: an entry of the ingested folder ``folder``."""
    return f"{folder.rstrip('/')}/{sub}"


def failed_dir(target: str) -> str:
    """Where the quarantine and report of a run rejected by the quarantine threshold go."""
    return f"{target.rstrip('/')}.failed"


# --------------------------------------------------------------------------- writers


def write_table(df: DataFrame, folder: str, sub: str, *, single_file: bool = False) -> None:
    """Write ``df`` as Parquet to ``<folder>/<sub>`` (one file when ``single_file``)."""
    (df.coalesce(1) if single_file else df).write.mode("overwrite").parquet(path(folder, sub))


def write_small(
    spark: SparkSession, pdf: pd.DataFrame, schema: T.StructType, folder: str, sub: str
) -> None:
    """Write a small pandas frame (statistics) as one Parquet file with ``schema``."""
    frame = spark.createDataFrame(pdf[schema.fieldNames()], schema)
    write_table(frame, folder, sub, single_file=True)


def write_ratings(
    indexed: DataFrame, folder: str, *, user_blocks: int, partitioned: bool = False
) -> None:
    """Write indexed ratings to ``<folder>/ratings``, one Parquet partition per user block.

    Input: the columns of schema.INGESTED_RATINGS_SCHEMA. Each block is sorted by
    (user_idx, movie_idx), so a reader of one block gets each user's ratings together.
    ``partitioned``: the caller has already put each user block in a single Spark
    partition (e.g. ``repartitionByRange(user_blocks, user_block)``), so no shuffle is added;
    otherwise the rows are range-partitioned by block (one sampling pass, one shuffle).
    """
    frame = indexed.select(*INGESTED_RATINGS_SCHEMA.fieldNames())
    if not partitioned:
        frame = frame.repartitionByRange(user_blocks, USER_BLOCK)
    (
        frame.sortWithinPartitions(USER_BLOCK, USER_IDX, MOVIE_IDX)
        .write.mode("overwrite")
        .partitionBy(USER_BLOCK)
        .parquet(path(folder, RATINGS_DIR))
    )


def write_report(spark: SparkSession, folder: str, report: dict[str, Any]) -> None:
    """Write the ingest report as indented JSON to ``<folder>/report.json``."""
    storage.write_text(spark, path(folder, REPORT_FILE), json.dumps(report, indent=2) + "\n")


def write_config(spark: SparkSession, folder: str, toml: str) -> None:
    """Write the resolved config (TOML text) to ``<folder>/config.toml``."""
    storage.write_text(spark, path(folder, CONFIG_FILE), toml)


# --------------------------------------------------------------------------- readers


def _require(spark: SparkSession, ingest_dir: str, sub: str) -> str:
    where = path(ingest_dir, sub)
    if not storage.exists(spark, where):
        raise DataNotFoundError(
            f"no ingested {sub} at {where}. Run the ingest job first (python jobs/ingest.py, with "
            f"the same data.dataset and ingest.output_dir), or point to the right ingest folder."
        )
    return where


def read_ratings(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """The ingested ratings: ``user_id``, ``movie_id``, ``rating``, ``timestamp``, ``user_idx``,
    ``movie_idx``, ``user_block`` (schema.INGESTED_RATINGS_SCHEMA; Parquet partitioned by
    ``user_block``, so filtering on it reads only those blocks)."""
    where = _require(spark, ingest_dir, RATINGS_DIR)
    return spark.read.schema(INGESTED_RATINGS_SCHEMA).parquet(where)


def read_ratings_csv(spark: SparkSession, data_dir: str) -> DataFrame:
    """``user_id``, ``movie_id``, ``rating``, ``timestamp`` straight from a trusted
    ml-latest-layout ``<data_dir>/ratings.csv`` (explicit schema, no validation or
    quarantine: for benchmarks and tests on known-good files; jobs go through ingest)."""
    spec = LAYOUTS["csv"].ratings
    assert spec.header is not None
    names = (USER_ID, MOVIE_ID, RATING, TIMESTAMP)
    types = (T.LongType(), T.LongType(), T.DoubleType(), T.LongType())
    schema = T.StructType([T.StructField(n, t, False) for n, t in zip(spec.header, types)])
    raw = spark.read.csv(path(data_dir, spec.name), header=True, schema=schema, sep=spec.separator)
    return raw.select(*(F.col(src).alias(dst) for src, dst in zip(spec.header, names)))


GENOME_SCORES_FILE = "genome-scores.csv"
GENOME_TAGS_FILE = "genome-tags.csv"


def _raw_csv(spark: SparkSession, where: str, header: tuple[str, ...], schema: T.StructType) -> DataFrame:
    """A headed, RFC 4180 CSV file read with the explicit ``schema`` (its columns renamed
    from the file's ``header`` to the schema's names, in order)."""
    raw = T.StructType([T.StructField(h, f.dataType, f.nullable) for h, f in zip(header, schema.fields)])
    df = spark.read.csv(where, header=True, schema=raw, escape='"', mode="FAILFAST")
    return df.select(*(F.col(h).alias(f.name) for h, f in zip(header, schema.fields)))


def read_genome(spark: SparkSession, data_dir: str) -> tuple[DataFrame, DataFrame] | None:
    """The tag genome of a raw data set folder (ml-25m / ml-32m layout), or None when
    ``<data_dir>/genome-scores.csv`` is absent: (scores: ``movie_id``, ``tag_id``,
    ``relevance`` in [0, 1]; tags: ``tag_id``, ``tag``), explicit schemas
    (schema.GENOME_SCORES_SCHEMA, GENOME_TAGS_SCHEMA). A malformed row fails the read
    (FAILFAST): ingest does not validate these files, so they must be trusted ones."""
    scores = path(data_dir, GENOME_SCORES_FILE)
    if not storage.exists(spark, scores):
        return None
    return (
        _raw_csv(spark, scores, ML_GENOME_SCORES_HEADER, GENOME_SCORES_SCHEMA),
        _raw_csv(spark, path(data_dir, GENOME_TAGS_FILE), ML_GENOME_TAGS_HEADER, GENOME_TAGS_SCHEMA),
    )


def read_movies(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """The ingested movies: ``movie_id``, ``title``, ``genres`` (empty for layouts without one)."""
    return spark.read.schema(MOVIES_SCHEMA).parquet(_require(spark, ingest_dir, MOVIES_DIR))


def read_tags(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """The ingested tags: ``user_id``, ``movie_id``, ``tag``, ``timestamp``."""
    return spark.read.schema(TAGS_SCHEMA).parquet(_require(spark, ingest_dir, TAGS_DIR))


def read_links(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """The ingested links: ``movie_id``, ``imdb_id``, ``tmdb_id``."""
    return spark.read.schema(LINKS_SCHEMA).parquet(_require(spark, ingest_dir, LINKS_DIR))


def read_user_index(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """``user_id`` -> dense 0-based ``user_idx`` (ordered by id)."""
    return spark.read.schema(USER_INDEX_SCHEMA).parquet(_require(spark, ingest_dir, USER_INDEX_DIR))


def read_movie_index(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """``movie_id`` -> dense 0-based ``movie_idx`` (ordered by id; rated movies only)."""
    return spark.read.schema(MOVIE_INDEX_SCHEMA).parquet(
        _require(spark, ingest_dir, MOVIE_INDEX_DIR)
    )


def read_quarantine(spark: SparkSession, ingest_dir: str) -> DataFrame:
    """Every malformed input row: ``source_file``, ``line_number``, ``raw_line``, ``reason``."""
    return spark.read.schema(QUARANTINE_SCHEMA).parquet(_require(spark, ingest_dir, QUARANTINE_DIR))


def read_report(spark: SparkSession, ingest_dir: str) -> dict:
    """The ingest report (counts per file, statistics summary) as a dict."""
    return json.loads(storage.read_text(spark, _require(spark, ingest_dir, REPORT_FILE)))


def scale_entry(scale: RatingScale) -> dict[str, float]:
    """The report's ``scale``: ``{"min": .., "max": .., "step": ..}``."""
    return asdict(scale)


def read_scale(spark: SparkSession, ingest_dir: str) -> RatingScale:
    """The rating scale of the ingested data set: the report's ``scale``, or (for an ingest
    written before the report held it) the scale of the report's layout."""
    report = read_report(spark, ingest_dir)
    if "scale" in report:
        return RatingScale(**{k: float(v) for k, v in report["scale"].items()})
    return LAYOUTS[report["layout"]].scale


def with_data_scale(spark: SparkSession, cfg: Config) -> Config:
    """``cfg`` with ``train.rating_min/max/step`` set to the ingested data set's scale when
    ``train.rating_scale = "data"`` (unchanged with ``"config"``, or when the ingested folder
    has no report, e.g. a rescore of a plain ratings table). Every model clips its
    predictions to [rating_min, rating_max] and saves them, so a whole-star data set never
    gets a prediction outside [1, 5]."""
    ingest_dir = expand(cfg.ingest_dir())
    if cfg.train.rating_scale != "data" or not storage.exists(spark, path(ingest_dir, REPORT_FILE)):
        return cfg
    scale = read_scale(spark, ingest_dir)
    _logger.info(
        "rating scale %g..%g in steps of %g from the ingested data set (train.rating_scale = data)",
        scale.min,
        scale.max,
        scale.step,
    )
    train = cfg.train.replace(rating_min=scale.min, rating_max=scale.max, rating_step=scale.step)
    return cfg.replace(train=train)
