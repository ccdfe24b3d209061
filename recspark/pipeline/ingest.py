"""The ingest job: raw MovieLens files -> validated, indexed Parquet tables, statistics, report.

``run_ingest(spark, cfg)`` resolves (and if needed downloads) the data folder, detects its
layout, and writes the whole output folder ``cfg.ingest_dir()`` through a staging folder
published with one rename (:func:`recspark.io.storage.staged`): a killed run leaves the
previous output untouched, a finished one replaces it. The folder holds

- ``ratings/``: user_id, movie_id, rating, timestamp, user_idx, movie_idx, Parquet
  partitioned by ``user_block = user_idx % ingest.user_blocks``, sorted by (user_idx,
  movie_idx) inside each block; one rating per (user, movie), the latest;
- ``movies/``, ``tags/``, ``links/``: the parsed side tables (empty when the layout has none);
- ``user_index/``, ``movie_index/``: id -> dense 0-based index;
- ``quarantine/``: every malformed row of every file (source_file, line_number, raw_line,
  reason);
- ``stats/summary``, ``stats/rating_histogram``, ``stats/user_rank_frequency``,
  ``stats/movie_rank_frequency`` (Parquet) and ``plots/*.png``;
- ``report.json`` (rows read / accepted / quarantined / duplicates per file, reasons,
  statistics) and ``config.toml`` (the resolved config).

Counts reconcile per file: rows read (data lines, header excluded) = accepted + quarantined
+ duplicates collapsed; the job fails loudly if they do not. When the quarantined share of
the ratings rows exceeds ``ingest.max_quarantine_share`` nothing is published; the
quarantine and the report go to ``<output>.failed/`` instead and a DataQualityError says so.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import stats as st
from recspark.config import Config, expand, to_toml
from recspark.errors import DataQualityError
from recspark.index import add_indices, movie_index, user_index
from recspark.io import storage
from recspark.io.download import resolve_data_dir
from recspark.io.movielens import (
    LINKS_DIR,
    MOVIE_INDEX_DIR,
    MOVIES_DIR,
    PLOTS_DIR,
    QUARANTINE_DIR,
    RATINGS_DIR,
    REPORT_FILE,
    STATS_DIR,
    TAGS_DIR,
    USER_INDEX_DIR,
    Layout,
    accepted,
    dedupe_ratings,
    detect_layout,
    quarantined,
    read_lines,
    read_ratings,
    validate_links,
    validate_movies,
    validate_ratings,
    validate_tags,
)
from recspark.log import stage
from recspark.schema import (
    COPIES,
    INGESTED_RATINGS_SCHEMA,
    LINKS_SCHEMA,
    METRIC,
    MOVIE_ID,
    MOVIE_IDX,
    MOVIE_INDEX_SCHEMA,
    MOVIES_SCHEMA,
    N_RATINGS,
    RANK_FREQUENCY_SCHEMA,
    RATING,
    RATING_HISTOGRAM_SCHEMA,
    RATINGS_SCHEMA,
    RAW_LINE,
    REASON,
    SOURCE_FILE,
    SUMMARY_SCHEMA,
    TAGS_SCHEMA,
    USER_BLOCK,
    USER_ID,
    USER_IDX,
    USER_INDEX_SCHEMA,
    VALUE,
)

_logger = logging.getLogger(__name__)

ACCEPTED_REASON = "accepted"  # report key for rows without a quarantine reason


def run_ingest(spark: SparkSession, cfg: Config, *, now: int | None = None) -> dict[str, Any]:
    """Ingest ``cfg.data.dataset`` into ``cfg.ingest_dir()``; return the report (also saved).

    ``now`` (epoch seconds, default the current time) bounds valid timestamps. Raises
    DataNotFoundError / DownloadError when the data cannot be found or fetched, ConfigError
    for a bad layout, DataQualityError when too many ratings rows are malformed.
    Actions: a handful of small counts plus one write per output table.
    """
    target = expand(cfg.ingest_dir()).rstrip("/")
    now = int(time.time()) if now is None else int(now)
    with stage("ingest: resolve data folder"):
        data_dir = resolve_data_dir(cfg.data)
    layout = detect_layout(spark, data_dir, cfg.data.layout)
    _logger.info(
        "ingesting %s (%s layout) from %s into %s", cfg.data.dataset, layout.name, data_dir, target
    )
    with storage.staged(spark, target) as out:
        report = _ingest(
            spark, cfg, data_dir=data_dir, layout=layout, out=out, target=target, now=now
        )
    storage.delete(spark, failed_dir(target))  # a rejection left by an earlier run is stale now
    return report


def failed_dir(target: str) -> str:
    """Where the quarantine and report of a run rejected by the quarantine threshold go."""
    return f"{target.rstrip('/')}.failed"


# --------------------------------------------------------------------------- steps


def _file_name(source_file: str) -> str:
    return source_file.rstrip("/").rsplit("/", 1)[-1]


def _count_reasons(frames: dict[str, DataFrame]) -> dict[str, dict[str, int]]:
    """Rows per (file name, reason) of the validated frames (``accepted`` for good rows).

    One aggregation action over all files; a file without rows gets an empty dict.
    """
    parts = [df.select(SOURCE_FILE, REASON) for df in frames.values()]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    counts: dict[str, dict[str, int]] = {name: {} for name in frames}
    for row in union.groupBy(SOURCE_FILE, REASON).agg(F.count(F.lit(1)).alias("n")).collect():
        by_reason = counts.setdefault(_file_name(row[SOURCE_FILE]), {})
        key = row[REASON] or ACCEPTED_REASON
        by_reason[key] = by_reason.get(key, 0) + int(row["n"])
    return counts


def _file_entry(path: str, reasons: dict[str, int]) -> dict[str, Any]:
    good = reasons.get(ACCEPTED_REASON, 0)
    bad = {k: v for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]) if k != ACCEPTED_REASON}
    return {
        "path": path,
        "rows_read": good + sum(bad.values()),
        "accepted": good,
        "quarantined": sum(bad.values()),
        "duplicates": 0,
        "reasons": bad,
    }


def _write(df: DataFrame, path: str, *, single_file: bool = False) -> None:
    (df.coalesce(1) if single_file else df).write.mode("overwrite").parquet(path)


def _write_small(spark: SparkSession, pdf, schema: T.StructType, path: str) -> None:
    """Write a small pandas frame (statistics) as one Parquet file with ``schema``."""
    _write(spark.createDataFrame(pdf[schema.fieldNames()], schema), path, single_file=True)


@dataclass(frozen=True)
class _SideTable:
    kind: str  # output sub-folder: movies, tags, links
    file_name: str | None  # None: the layout has no such file, or it is missing
    path: str | None
    schema: T.StructType


def _side_tables(data_dir: str, layout: Layout, names: set[str]) -> list[_SideTable]:
    tables = []
    for kind, name, schema in (
        (MOVIES_DIR, layout.movies_file, MOVIES_SCHEMA),
        (TAGS_DIR, layout.tags_file, TAGS_SCHEMA),
        (LINKS_DIR, layout.links_file, LINKS_SCHEMA),
    ):
        if name is not None and name not in names:
            _logger.warning("%s not found in %s: writing an empty %s table", name, data_dir, kind)
            name = None
        path = f"{data_dir.rstrip('/')}/{name}" if name else None
        tables.append(_SideTable(kind, name, path, schema))
    return tables


def _validate_side(spark: SparkSession, table: _SideTable, layout: Layout, now: int) -> DataFrame:
    lines = read_lines(spark, table.path, encoding=layout.encoding)
    if table.kind == MOVIES_DIR:
        return validate_movies(lines, layout=layout)
    if table.kind == TAGS_DIR:
        return validate_tags(lines, layout=layout, now=now)
    return validate_links(lines, layout=layout)


def _ingest(
    spark: SparkSession,
    cfg: Config,
    *,
    data_dir: str,
    layout: Layout,
    out: str,
    target: str,
    now: int,
) -> dict[str, Any]:
    names = set(storage.list_dir(spark, data_dir))
    ratings_path = f"{data_dir.rstrip('/')}/{layout.ratings_file}"
    side = _side_tables(data_dir, layout, names)
    report: dict[str, Any] = {
        "dataset": cfg.data.dataset,
        "layout": layout.name,
        "data_dir": data_dir,
        "output_dir": target,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # Validated frames are cached: each is counted, quarantined and written from the cache.
    validated: dict[str, DataFrame] = {
        layout.ratings_file: validate_ratings(
            read_lines(spark, ratings_path), layout=layout, now=now
        )
    }
    paths = {layout.ratings_file: ratings_path}
    for table in side:
        if table.file_name is not None:
            validated[table.file_name] = _validate_side(spark, table, layout, now)
            paths[table.file_name] = table.path
    for name in validated:
        # Only quarantined rows need their raw line: dropping it from good rows keeps the
        # cache of a 32M-row ratings file small.
        slim = validated[name].withColumn(
            RAW_LINE, F.when(F.col(REASON).isNotNull(), F.col(RAW_LINE))
        )
        validated[name] = slim.persist(StorageLevel.MEMORY_AND_DISK)
    deduped: DataFrame | None = None
    try:
        with stage("ingest: read and validate all files", spark):
            counts = _count_reasons(validated)
            files = {name: _file_entry(paths[name], counts[name]) for name in validated}
            report["files"] = files

        with stage("ingest: write quarantine", spark):
            frames = list(validated.values())
            bad = quarantined(frames[0])
            for frame in frames[1:]:
                bad = bad.unionByName(quarantined(frame))
            _write(bad, f"{out}/{QUARANTINE_DIR}")

        entry = files[layout.ratings_file]
        share = entry["quarantined"] / entry["rows_read"] if entry["rows_read"] else 0.0
        report["ratings_quarantined_share"] = share
        report["max_quarantine_share"] = cfg.ingest.max_quarantine_share
        if entry["rows_read"] == 0 or share > cfg.ingest.max_quarantine_share:
            _reject(spark, report, entry, out=out, target=target, share=share, cfg=cfg)

        with stage("ingest: write movies, tags, links", spark):
            for table in side:
                if table.file_name is None:
                    frame = spark.createDataFrame([], table.schema)
                else:
                    frame = accepted(validated[table.file_name], table.schema)
                _write(frame.select(*table.schema.fieldNames()), f"{out}/{table.kind}")
                if table.file_name is not None:
                    validated.pop(table.file_name).unpersist()

        with stage("ingest: deduplicate ratings", spark):
            deduped = dedupe_ratings(accepted(validated[layout.ratings_file], RATINGS_SCHEMA))
            deduped = deduped.persist(StorageLevel.MEMORY_AND_DISK)
            totals = deduped.agg(
                F.count(F.lit(1)).alias("pairs"), F.sum(COPIES).alias("rows")
            ).first()
            pairs, kept_rows = int(totals["pairs"]), int(totals["rows"] or 0)
            entry["duplicates"] = kept_rows - pairs
            validated.pop(layout.ratings_file).unpersist()

        with stage("ingest: index tables", spark):
            _write(user_index(deduped), f"{out}/{USER_INDEX_DIR}", single_file=True)
            _write(movie_index(deduped), f"{out}/{MOVIE_INDEX_DIR}", single_file=True)
            users = spark.read.schema(USER_INDEX_SCHEMA).parquet(f"{out}/{USER_INDEX_DIR}")
            movies = spark.read.schema(MOVIE_INDEX_SCHEMA).parquet(f"{out}/{MOVIE_INDEX_DIR}")

        with stage("ingest: write indexed ratings", spark):
            blocks = cfg.ingest.user_blocks
            indexed = add_indices(
                deduped.drop(COPIES), users=users, movies=movies, user_blocks=blocks
            )
            (
                indexed.select(*INGESTED_RATINGS_SCHEMA.fieldNames())
                .repartitionByRange(blocks, USER_BLOCK)
                .sortWithinPartitions(USER_BLOCK, USER_IDX, MOVIE_IDX)
                .write.mode("overwrite")
                .partitionBy(USER_BLOCK)
                .parquet(f"{out}/{RATINGS_DIR}")
            )
            deduped.unpersist()
            deduped = None

        ratings = read_ratings(spark, out)
        with stage("ingest: reconcile counts", spark):
            written = ratings.count()
            in_quarantine = spark.read.parquet(f"{out}/{QUARANTINE_DIR}").count()
            entry["accepted"] = written
            _reconcile(
                files,
                written=written,
                pairs=pairs,
                in_quarantine=in_quarantine,
                ratings_file=layout.ratings_file,
            )

        with stage("ingest: statistics and plots", spark):
            report["stats"] = _write_stats(spark, cfg, ratings, out)
            report["index"] = {
                "users": report["stats"][st.USERS],
                "movies": report["stats"][st.MOVIES],
                "user_blocks": blocks,
            }

        report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        report["status"] = "ok"
        storage.write_text(spark, f"{out}/{REPORT_FILE}", json.dumps(report, indent=2) + "\n")
        storage.write_text(spark, f"{out}/config.toml", to_toml(cfg))
        _logger.info(
            "ratings: %d read, %d accepted, %d quarantined, %d duplicates collapsed; "
            "%d users, %d movies",
            entry["rows_read"],
            entry["accepted"],
            entry["quarantined"],
            entry["duplicates"],
            report["index"]["users"],
            report["index"]["movies"],
        )
        return report
    finally:
        for frame in validated.values():
            frame.unpersist()
        if deduped is not None:
            deduped.unpersist()


def _reconcile(
    files: dict[str, dict[str, Any]],
    *,
    written: int,
    pairs: int,
    in_quarantine: int,
    ratings_file: str,
) -> None:
    """Check rows read = accepted + quarantined + duplicates per file; raise if not."""
    problems = []
    for name, e in files.items():
        if e["rows_read"] != e["accepted"] + e["quarantined"] + e["duplicates"]:
            problems.append(
                f"{name}: {e['rows_read']} read != {e['accepted']} accepted + "
                f"{e['quarantined']} quarantined + {e['duplicates']} duplicates"
            )
    if written != pairs:
        problems.append(
            f"{ratings_file}: {pairs} distinct (user, movie) pairs but {written} written"
        )
    expected_bad = sum(e["quarantined"] for e in files.values())
    if in_quarantine != expected_bad:
        problems.append(f"quarantine holds {in_quarantine} rows, expected {expected_bad}")
    if problems:
        raise RuntimeError("ingest counts do not reconcile (a bug): " + "; ".join(problems))


def _reject(
    spark: SparkSession,
    report: dict[str, Any],
    entry: dict[str, Any],
    *,
    out: str,
    target: str,
    share: float,
    cfg: Config,
) -> None:
    """Publish the quarantine and report to ``<target>.failed`` and raise DataQualityError."""
    failed = failed_dir(target)
    report["status"] = "rejected"
    with storage.staged(spark, failed) as fstage:
        storage.publish(spark, f"{out}/{QUARANTINE_DIR}", f"{fstage}/{QUARANTINE_DIR}")
        storage.write_text(spark, f"{fstage}/{REPORT_FILE}", json.dumps(report, indent=2) + "\n")
    top = ", ".join(f"{k}: {v}" for k, v in list(entry["reasons"].items())[:5]) or "none"
    if entry["rows_read"] == 0:
        what = f"{entry['path']} holds no data rows"
    else:
        what = (
            f"{entry['quarantined']:,} of {entry['rows_read']:,} ratings rows in {entry['path']} "
            f"({share:.2%}) are malformed, above ingest.max_quarantine_share = "
            f"{cfg.ingest.max_quarantine_share:g} ({cfg.ingest.max_quarantine_share:.2%})"
        )
    raise DataQualityError(
        f"{what}. Most common reasons: {top}. The quarantine (source_file, line_number, raw_line, "
        f"reason) and a report were written to {failed}/ for inspection; nothing was published "
        f"to {target} (an earlier output there is unchanged). Fix the input, or accept more bad "
        f"rows with --set ingest.max_quarantine_share=<share, e.g. {min(1.0, 2 * share):.2g}>."
    )


def _write_stats(spark: SparkSession, cfg: Config, ratings: DataFrame, out: str) -> dict[str, Any]:
    """Statistics tables (Parquet) and plots (PNG) from the written ratings; return the summary."""
    k = cfg.ingest.curve_points_per_decade
    summary = st.summary(ratings).toPandas()
    histogram = st.rating_histogram(ratings).toPandas()
    curves = {
        "users": st.rank_frequency(ratings, key=USER_ID, points_per_decade=k).toPandas(),
        "movies": st.rank_frequency(ratings, key=MOVIE_ID, points_per_decade=k).toPandas(),
    }
    _write_small(spark, summary, SUMMARY_SCHEMA, f"{out}/{STATS_DIR}/summary")
    _write_small(spark, histogram, RATING_HISTOGRAM_SCHEMA, f"{out}/{STATS_DIR}/rating_histogram")
    for label, curve in curves.items():
        _write_small(
            spark, curve, RANK_FREQUENCY_SCHEMA, f"{out}/{STATS_DIR}/{label[:-1]}_rank_frequency"
        )
    name = cfg.data.dataset
    st.plot_rating_histogram(
        spark,
        histogram,
        f"{out}/{PLOTS_DIR}/rating_histogram.png",
        title=f"{name}: ratings by value",
    )
    st.plot_rank_frequency(
        spark,
        curves,
        f"{out}/{PLOTS_DIR}/rank_frequency.png",
        title=f"{name}: rank-frequency of users and movies",
    )
    values = {r[METRIC]: float(r[VALUE]) for r in summary.to_dict("records")}
    result: dict[str, Any] = {
        m: (
            int(v)
            if m not in (st.RATING_MEAN, st.USER_RATINGS_MEDIAN, st.MOVIE_RATINGS_MEDIAN)
            else v
        )
        for m, v in values.items()
    }
    for key, metric in (("first_date", st.FIRST_TIMESTAMP), ("last_date", st.LAST_TIMESTAMP)):
        result[key] = datetime.fromtimestamp(values[metric], timezone.utc).date().isoformat()
    result["rating_histogram"] = {
        f"{r:g}": int(n) for r, n in zip(histogram[RATING], histogram[N_RATINGS])
    }
    return result
