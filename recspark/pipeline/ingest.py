"""The ingest job: raw MovieLens files -> validated, indexed Parquet tables, statistics, report.

``run_ingest(spark, cfg)`` resolves (and if needed downloads) the data folder
(:mod:`recspark.io.download`), detects its layout (:mod:`recspark.io.layouts`), validates
every file (:mod:`recspark.io.validate`) and writes the whole ingested folder
(:mod:`recspark.io.ingested` describes it) to ``cfg.ingest_dir()`` through a staging folder
published with one rename (:func:`recspark.io.storage.staged`): a killed run leaves the
previous output untouched, a finished one replaces it.

The stages, in order: match each file's header by name (a wrong header stops ingest
before any Spark job: HeaderError, exit 2); read and validate all files (cached, raw lines
kept only on bad rows and on lines decoded through the latin-1 fallback) and count rows per
reason and fallback lines per file; write the fallback lines and the quarantine; check the
quarantine threshold; write the side tables; build the index tables; deduplicate and write
the indexed ratings (one shuffle); reconcile the counts; statistics and plots; the report.

The ratings file takes the Arrow path of :mod:`recspark.pipeline.ingest_arrow` when it
is a local file with a one-character separator (``ingest.reader = "auto"``): read by byte
range and kept in Arrow through the write, beside Spark's validation of the other files;
the same tables come out.

Counts reconcile per file: rows read (data lines, header excluded) = accepted + quarantined
+ duplicates collapsed; the job fails loudly if they do not. When the quarantined share of
the ratings rows exceeds ``ingest.max_quarantine_share`` nothing is published; the
quarantine and the report go to ``<output>.failed/`` instead and a DataQualityError says so.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark import stats as st
from recspark.config import Config, expand, to_toml
from recspark.errors import DataQualityError
from recspark.index import add_indices, by_block, movie_index, user_index
from recspark.io import ingested, storage
from recspark.io.download import resolve_data_dir
from recspark.io.ingested import failed_dir
from recspark.io.layouts import FileSpec, Layout, RatingScale, detect_layout, match_header
from recspark.io.lines import line_bases, number_lines, scan_lines, source_uri
from recspark.io.validate import (
    SORTED_AGGREGATION,
    accepted,
    dedupe_ratings,
    quarantined,
    validate_links,
    validate_movies,
    validate_ratings,
    validate_tags,
)
from recspark.log import stage
from recspark.pipeline.ingest_arrow import ArrowRatings, usable
from recspark.schema import (
    BLOCK_KEY,
    COPIES,
    LATIN1_FALLBACK,
    LINE_NUMBER,
    LINKS_SCHEMA,
    METRIC,
    MOVIE_ID,
    MOVIE_IDX,
    MOVIES_SCHEMA,
    N_RATINGS,
    QUARANTINE_SCHEMA,
    RANK_FREQUENCY_SCHEMA,
    RATING,
    RATING_HISTOGRAM_SCHEMA,
    RATINGS_SCHEMA,
    RAW_LINE,
    REASON,
    ROW_ID,
    SOURCE_FILE,
    SPLIT_START,
    SUMMARY_SCHEMA,
    TAGS_SCHEMA,
    USER_BLOCK,
    USER_ID,
    USER_IDX,
    VALUE,
)
from recspark.session import map_in_pools, sql_settings

_logger = logging.getLogger(__name__)

ACCEPTED_REASON = "accepted"  # report key for rows without a quarantine reason
_FILE = "_file"  # working column: a file's position among the validated frames


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
    if cfg.train.rating_scale == "config":  # a deliberate override of the layout's scale
        t = cfg.train
        layout = replace(layout, scale=RatingScale(t.rating_min, t.rating_max, t.rating_step))
    _logger.info(
        "ingesting %s (%s layout) from %s into %s", cfg.data.dataset, layout.name, data_dir, target
    )
    storage.clean_scratch(spark, target.rsplit("/", 1)[0] if "/" in target else ".")
    with storage.staged(spark, target) as out:
        report = _ingest(
            spark, cfg, data_dir=data_dir, layout=layout, out=out, target=target, now=now
        )
    storage.delete(spark, failed_dir(target))  # a rejection left by an earlier run is stale now
    return report


# --------------------------------------------------------------------------- the files


@dataclass(frozen=True)
class _Input:
    """One raw file to ingest (or a side table the layout lacks: ``spec`` None)."""

    kind: str  # output sub-folder: ratings, movies, tags, links
    spec: FileSpec | None
    path: str | None
    schema: T.StructType

    @property
    def file_name(self) -> str | None:
        return None if self.spec is None else self.spec.name


def _inputs(data_dir: str, layout: Layout, names: set[str]) -> list[_Input]:
    """The ratings file, then the movies, tags and links files (None where absent)."""
    inputs = []
    for kind, spec, schema in (
        (ingested.RATINGS_DIR, layout.ratings, RATINGS_SCHEMA),
        (ingested.MOVIES_DIR, layout.movies, MOVIES_SCHEMA),
        (ingested.TAGS_DIR, layout.tags, TAGS_SCHEMA),
        (ingested.LINKS_DIR, layout.links, LINKS_SCHEMA),
    ):
        if spec is not None and spec.name not in names:
            _logger.warning(
                "%s not found in %s: writing an empty %s table", spec.name, data_dir, kind
            )
            spec = None
        where = ingested.path(data_dir, spec.name) if spec is not None else None
        inputs.append(_Input(kind, spec, where, schema))
    return inputs


def _validate(
    lines: DataFrame, kind: str, layout: Layout, now: int, columns: tuple[str, ...] | None
) -> DataFrame:
    """The ``validate_*`` stage of a file of ``kind`` (an output sub-folder name) whose
    header holds ``columns`` (in the file's order)."""
    if kind == ingested.RATINGS_DIR:
        return validate_ratings(lines, layout=layout, now=now, columns=columns)
    if kind == ingested.MOVIES_DIR:
        return validate_movies(lines, layout=layout, columns=columns)
    if kind == ingested.TAGS_DIR:
        return validate_tags(lines, layout=layout, now=now, columns=columns)
    return validate_links(lines, layout=layout, columns=columns)


def _headers(spark: SparkSession, inputs: list[_Input]) -> dict[str, tuple[str, ...] | None]:
    """Kind -> the file's header in its own order, for every present file
    (:func:`match_header`: raises HeaderError before any Spark job)."""
    return {
        item.kind: match_header(item.spec, storage.read_first_line(spark, item.path), item.path)
        for item in inputs
        if item.spec is not None
    }


def _validate_all(
    spark: SparkSession,
    inputs: list[_Input],
    layout: Layout,
    now: int,
    columns: dict[str, tuple[str, ...] | None],
) -> tuple[dict[str, DataFrame], dict[str, str]]:
    """(File name -> validated lines of every present file, persisted (the caller
    unpersists); file name -> its :func:`source_uri`). The lines are not numbered yet and
    carry no ``source_file`` (:func:`number_lines` adds both): each file is scanned once
    (:func:`scan_lines`) and the cache holds no per-row copy of the file name.

    ``columns``: :func:`_headers`. Each frame is counted, quarantined and written from the
    cache. Only quarantined rows and rows decoded through the latin-1 fallback need their
    raw line: dropping it from the other rows keeps the cache of a 32M-row ratings file
    small.
    """
    validated: dict[str, DataFrame] = {}
    sources: dict[str, str] = {}
    for item in inputs:
        if item.spec is None:
            continue
        sources[item.spec.name] = source = source_uri(spark, item.path)
        lines = scan_lines(spark, item.path, encoding=item.spec.encoding, source=source)
        frame = _validate(lines, item.kind, layout, now, columns[item.kind])
        keep = F.col(REASON).isNotNull() | F.col(LATIN1_FALLBACK)
        slim = frame.withColumn(RAW_LINE, F.when(keep, F.col(RAW_LINE)))
        slim = slim.drop(SOURCE_FILE, LINE_NUMBER)
        validated[item.spec.name] = slim.persist(StorageLevel.MEMORY_AND_DISK)
    return validated, sources


def _union(frames: list[DataFrame]) -> DataFrame:
    """The rows of ``frames`` (at least one), columns matched by name."""
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def _union_or_empty(
    spark: SparkSession, schema: T.StructType, frames: list[DataFrame]
) -> DataFrame:
    """``frames`` (columns of ``schema``; none at all when no file has such rows) as one
    table with ``schema``: what the quarantine and the fallback lines are written from."""
    return _union([spark.createDataFrame([], schema), *frames])


def _count_reasons(
    frames: dict[str, DataFrame],
) -> tuple[dict[str, dict[str, int]], Counter, dict[str, dict[int, int]]]:
    """(rows per file name and reason, with ``accepted`` for good rows; rows decoded through
    the latin-1 fallback per file name; each file's line bases) of the validated frames
    (from :func:`scan_lines`, not numbered yet).

    One aggregation action over all files, by file, input split, reason and fallback flag,
    which also counts the rows and row ids of each split for :func:`line_bases`. A file
    without rows gets an empty dict.
    """
    names = list(frames)
    union = _union(
        [
            df.select(F.lit(i).alias(_FILE), SPLIT_START, REASON, LATIN1_FALLBACK, ROW_ID)
            for i, df in enumerate(frames.values())
        ]
    )
    counts: dict[str, dict[str, int]] = {name: {} for name in frames}
    fallback: Counter = Counter()
    splits: dict[str, dict[int, list[int]]] = {name: {} for name in frames}
    grouped = union.groupBy(_FILE, SPLIT_START, REASON, LATIN1_FALLBACK).agg(
        F.count(F.lit(1)).alias("n"), F.min(ROW_ID).alias("low"), F.max(ROW_ID).alias("high")
    )
    for row in grouped.collect():
        name, n = names[row[_FILE]], int(row["n"])
        by_reason = counts[name]
        key = row[REASON] or ACCEPTED_REASON
        by_reason[key] = by_reason.get(key, 0) + n
        if row[LATIN1_FALLBACK]:
            fallback[name] += n
        split = splits[name].setdefault(int(row[SPLIT_START]), [0, row["low"], row["high"]])
        split[0] += n
        split[1], split[2] = min(split[1], row["low"]), max(split[2], row["high"])
    bases = {
        name: line_bases(((start, *v) for start, v in splits[name].items()), source=name)
        for name in frames
    }
    return counts, fallback, bases


def _count_numbered(frame: DataFrame) -> tuple[dict[str, int], int]:
    """(rows per reason, with ``accepted`` for good rows; rows decoded through the latin-1
    fallback) of a validated, numbered frame: one small aggregation."""
    reasons: dict[str, int] = {}
    flagged = 0
    for row in frame.groupBy(REASON, LATIN1_FALLBACK).agg(F.count(F.lit(1)).alias("n")).collect():
        key = row[REASON] or ACCEPTED_REASON
        reasons[key] = reasons.get(key, 0) + int(row["n"])
        flagged += int(row["n"]) if row[LATIN1_FALLBACK] else 0
    return reasons, flagged


def _decoding_fallback(
    spark: SparkSession, validated: dict[str, DataFrame], files: dict[str, dict], out: str
) -> None:
    """Write the lines decoded through the latin-1 fallback (source_file, line_number,
    raw_line) to ``latin1_fallback/``; log each such file's count and first line numbers,
    which the report's ``latin1_fallback_lines`` also keeps (a bounded top-20 per file).
    Runs Spark jobs only for files that have such lines."""
    schema = T.StructType([f for f in QUARANTINE_SCHEMA.fields if f.name != REASON])
    parts = []
    for name, frame in validated.items():
        entry = files[name]
        if not entry["latin1_fallback"]:
            continue
        flagged = frame.filter(F.col(LATIN1_FALLBACK)).select(*schema.fieldNames())
        first = [r[LINE_NUMBER] for r in flagged.select(LINE_NUMBER).orderBy(LINE_NUMBER).take(20)]
        entry["latin1_fallback_lines"] = first
        more = ", ..." if entry["latin1_fallback"] > len(first) else ""
        _logger.warning(
            "%s: %d line(s) are not valid UTF-8 and were decoded as latin-1 (lines %s%s); "
            "listed in latin1_fallback/",
            entry["path"], entry["latin1_fallback"], ", ".join(map(str, first)), more,
        )  # fmt: skip
        parts.append(flagged)
    ingested.write_table(_union_or_empty(spark, schema, parts), out, ingested.LATIN1_FALLBACK_DIR)


def _file_entry(path: str, reasons: dict[str, int], fallback: int) -> dict[str, Any]:
    good = reasons.get(ACCEPTED_REASON, 0)
    bad = {k: v for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]) if k != ACCEPTED_REASON}
    return {
        "path": path,
        "rows_read": good + sum(bad.values()),
        "accepted": good,
        "quarantined": sum(bad.values()),
        "duplicates": 0,
        "reasons": bad,
        "latin1_fallback": fallback,
    }


# --------------------------------------------------------------------------- the stages


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
    """Every stage into the staging folder ``out``; the report. Cached frames are released
    whatever happens."""
    inputs = _inputs(data_dir, layout, set(storage.list_dir(spark, data_dir)))
    report: dict[str, Any] = {
        "dataset": cfg.data.dataset,
        "layout": layout.name,
        "scale": ingested.scale_entry(layout.scale),
        "data_dir": data_dir,
        "output_dir": target,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with stage("ingest: match headers, locate the files", spark):
        columns = _headers(spark, inputs)
        fast = _arrow_ratings(spark, cfg, inputs[0], columns, layout=layout, now=now, out=out)
    cached: dict[str, DataFrame] = {}  # filled by _count_and_quarantine, released below
    try:
        files, validated = _count_and_quarantine(
            spark, inputs, cached, layout=layout, now=now, columns=columns, out=out, fast=fast
        )
        report["files"] = files
        entry = files[layout.ratings.name]
        _check_quarantine_share(spark, report, entry, out=out, target=target, cfg=cfg)
        profile = None
        if fast is None:
            _write_side_tables(spark, validated, cached, inputs[1:], out)
            ratings_frame = validated[layout.ratings.name]
            blocks = cfg.ingest.user_blocks
            pairs = _dedupe_index_write(spark, ratings_frame, entry, out, user_blocks=blocks)
            cached.pop(layout.ratings.name).unpersist()
        else:

            def write_ratings() -> tuple:
                assert fast is not None
                with stage("ingest: deduplicate and write indexed ratings", spark):
                    return fast.write(
                        out,
                        user_blocks=cfg.ingest.user_blocks,
                        others_accepted=entry["accepted"] - fast.plain_accepted,
                    )

            def write_side_tables() -> None:
                _write_side_tables(spark, validated, cached, inputs[1:], out)

            # at the same time, as the validation above
            calls = [write_ratings, write_side_tables]
            (rows, pairs, profile), _ = map_in_pools(
                spark, lambda call: call(), calls, parallel=2, pool="ingest"
            )
            if rows != entry["accepted"]:
                raise RuntimeError(
                    f"ingest: {entry['accepted']} ratings accepted but {rows} were written (a bug)"
                )
            entry["duplicates"] = entry["accepted"] - pairs
        ratings = ingested.read_ratings(spark, out)
        with stage("ingest: reconcile counts", spark):
            entry["accepted"] = written = ratings.count()
            in_quarantine = ingested.read_quarantine(spark, out).count()
            _reconcile(files, written=written, pairs=pairs, in_quarantine=in_quarantine)
        with stage("ingest: statistics and plots", spark):
            report["stats"] = _write_stats(spark, cfg, ratings, out, profile)
        report["index"] = {
            "users": report["stats"][st.USERS],
            "movies": report["stats"][st.MOVIES],
            "user_blocks": cfg.ingest.user_blocks,
        }
        _finish(spark, cfg, report, entry, out)
        return report
    finally:
        for frame in cached.values():
            frame.unpersist()
        if fast is not None:
            fast.release()


def _arrow_ratings(
    spark: SparkSession,
    cfg: Config,
    ratings: _Input,
    columns: dict[str, tuple[str, ...] | None],
    *,
    layout: Layout,
    now: int,
    out: str,
) -> ArrowRatings | None:
    """The ratings file through the Arrow path (:mod:`recspark.pipeline.ingest_arrow`),
    or None when ``ingest.reader`` is ``spark`` or the file cannot take it."""
    if cfg.ingest.reader == "spark" or ratings.spec is None or ratings.path is None:
        return None
    local = usable(ratings.spec, ratings.path, out)
    if local is None:
        _logger.info(
            "%s: read with Spark (not a local file with a one-character separator)", ratings.path
        )
        return None
    _logger.info("%s: read by byte range (ingest.reader = auto)", ratings.path)
    return ArrowRatings(
        spark,
        path=local,
        spec=ratings.spec,
        columns=columns[ratings.kind],
        layout=layout,
        now=now,
    )


def _count_and_quarantine(
    spark: SparkSession,
    inputs: list[_Input],
    cached: dict[str, DataFrame],
    *,
    layout: Layout,
    now: int,
    columns: dict[str, tuple[str, ...] | None],
    out: str,
    fast: ArrowRatings | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, DataFrame]]:
    """Validate every file Spark reads (:func:`_validate_all`: all of them, or all but the
    ratings file of ``fast``), count rows per file and reason (the report's ``files``) and
    write the quarantine. Returns the files' entries and the validated frames with exact
    line numbers (lazy, over the cached ones; for the ratings file of ``fast``, its
    validated other lines). The persisted frames are added to ``cached`` as they are made,
    for the caller to release whatever happens."""
    paths = {item.file_name: item.path for item in inputs if item.spec is not None}
    sources: dict[str, str] = {}
    with stage("ingest: read and validate all files", spark):

        def count_spark_files() -> tuple:
            spark_inputs = inputs if fast is None else inputs[1:]
            frames, found = _validate_all(spark, spark_inputs, layout, now, columns)
            cached.update(frames)
            sources.update(found)
            return _count_reasons(cached) if cached else ({}, Counter(), {})

        def scan_ratings() -> tuple:
            assert fast is not None
            others = fast.scan()
            return (others, *_count_numbered(others))

        # The Arrow scan of the ratings and Spark's validation of the other files run at
        # the same time: each fills the cores the other leaves idle between its jobs. The
        # scan is submitted first, before the other files' plans are built: its Python
        # workers start (imports, compiled kernels) while the driver plans (~3 s at ml-32m).
        calls = ([scan_ratings] if fast is not None else []) + [count_spark_files]
        outcomes = map_in_pools(spark, lambda call: call(), calls, parallel=2, pool="ingest")
        counts, fallback, bases = outcomes[-1]
        files = {name: _file_entry(paths[name], counts[name], fallback[name]) for name in cached}
        validated = {
            name: number_lines(frame, bases[name], source=sources[name])
            for name, frame in cached.items()
        }
        if fast is not None:
            others, reasons, flagged = outcomes[0]
            name = fast.spec.name
            reasons[ACCEPTED_REASON] = reasons.get(ACCEPTED_REASON, 0) + fast.plain_accepted
            files = {name: _file_entry(paths[name], reasons, flagged), **files}
            validated[name] = others
        _decoding_fallback(spark, validated, files, out)
    with stage("ingest: write quarantine", spark):
        # only files with quarantined rows are scanned again
        bad = [quarantined(validated[name]) for name, e in files.items() if e["quarantined"]]
        table = _union_or_empty(spark, QUARANTINE_SCHEMA, bad)
        ingested.write_table(table, out, ingested.QUARANTINE_DIR)
    return files, validated


def _write_side_tables(
    spark: SparkSession,
    validated: dict[str, DataFrame],
    cached: dict[str, DataFrame],
    sides: list[_Input],
    out: str,
) -> None:
    """Write movies, tags and links (empty tables where the layout has no file); release
    each side file's cache (``cached``) once written."""
    with stage("ingest: write movies, tags, links", spark):
        for side in sides:
            if side.spec is None:
                frame = spark.createDataFrame([], side.schema)
            else:
                frame = accepted(validated[side.spec.name], side.schema)
            ingested.write_table(frame.select(*side.schema.fieldNames()), out, side.kind)
            if side.spec is not None:
                cached.pop(side.spec.name).unpersist()


def _dedupe_index_write(
    spark: SparkSession,
    ratings: DataFrame,
    entry: dict[str, Any],
    out: str,
    *,
    user_blocks: int,
) -> int:
    """Write the index tables, then the deduplicated ratings with dense indices and user
    blocks; return the number of (user, movie) pairs written. Sets ``entry["duplicates"]``.

    One shuffle over the ratings: the index tables come from the accepted rows of the
    cached validated frame ``ratings`` (deduplication keeps every pair, so the same users
    and movies), the rows get their indices by broadcast joins, are partitioned one user
    block per Spark partition (:func:`by_block`: no sampling pass), and deduplicated
    (:func:`dedupe_ratings`) grouped by keys that include the partitioning key, so the
    aggregation reuses that partitioning instead of shuffling again. Each block is sorted
    once, by the aggregation's keys (block, user and movie index first, the order the write
    wants), and the aggregation streams through the sorted rows; one task writes each block.
    Every accepted row falls in exactly one pair, so duplicates collapsed = accepted rows -
    pairs written.
    """
    good = accepted(ratings, RATINGS_SCHEMA)
    with stage("ingest: index tables", spark):
        ingested.write_table(user_index(good), out, ingested.USER_INDEX_DIR, single_file=True)
        ingested.write_table(movie_index(good), out, ingested.MOVIE_INDEX_DIR, single_file=True)
        users = ingested.read_user_index(spark, out)
        movies = ingested.read_movie_index(spark, out)
    keys = (USER_BLOCK, USER_IDX, MOVIE_IDX, BLOCK_KEY)
    with stage("ingest: deduplicate and write indexed ratings", spark):
        indexed = add_indices(good, users=users, movies=movies, user_blocks=user_blocks)
        ordered = by_block(indexed, blocks=user_blocks).sortWithinPartitions(
            *keys, USER_ID, MOVIE_ID
        )
        with sql_settings(spark, SORTED_AGGREGATION):
            deduped = dedupe_ratings(ordered, keys=keys).drop(COPIES)
            ingested.write_ratings(deduped, out, user_blocks=user_blocks, partitioned=True)
        pairs = ingested.read_ratings(spark, out).count()
    entry["duplicates"] = entry["accepted"] - pairs
    return pairs


def _reconcile(
    files: dict[str, dict[str, Any]], *, written: int, pairs: int, in_quarantine: int
) -> None:
    """Check rows read = accepted + quarantined + duplicates per file, ratings written =
    distinct pairs, quarantine rows = quarantined rows; raise if not."""
    problems = []
    for name, e in files.items():
        if e["rows_read"] != e["accepted"] + e["quarantined"] + e["duplicates"]:
            problems.append(
                f"{name}: {e['rows_read']} read != {e['accepted']} accepted + "
                f"{e['quarantined']} quarantined + {e['duplicates']} duplicates"
            )
    if written != pairs:
        problems.append(f"ratings: {pairs} distinct (user, movie) pairs but {written} written")
    expected_bad = sum(e["quarantined"] for e in files.values())
    if in_quarantine != expected_bad:
        problems.append(f"quarantine holds {in_quarantine} rows, expected {expected_bad}")
    if problems:
        raise RuntimeError("ingest counts do not reconcile (a bug): " + "; ".join(problems))


def _check_quarantine_share(
    spark: SparkSession,
    report: dict[str, Any],
    entry: dict[str, Any],
    *,
    out: str,
    target: str,
    cfg: Config,
) -> None:
    """Record the ratings' quarantined share in ``report``. When it is above the threshold
    (or there are no data rows), publish the quarantine and the report to
    ``<target>.failed`` and raise DataQualityError."""
    limit = cfg.ingest.max_quarantine_share
    share = entry["quarantined"] / entry["rows_read"] if entry["rows_read"] else 0.0
    report["ratings_quarantined_share"] = share
    report["max_quarantine_share"] = limit
    if entry["rows_read"] and share <= limit:
        return
    failed = failed_dir(target)
    report["status"] = "rejected"
    with storage.staged(spark, failed) as fstage:
        storage.publish(
            spark,
            ingested.path(out, ingested.QUARANTINE_DIR),
            ingested.path(fstage, ingested.QUARANTINE_DIR),
        )
        ingested.write_report(spark, fstage, report)
    top = ", ".join(f"{k}: {v}" for k, v in list(entry["reasons"].items())[:5]) or "none"
    if entry["rows_read"] == 0:
        what = f"{entry['path']} holds no data rows"
    else:
        what = (
            f"{entry['quarantined']:,} of {entry['rows_read']:,} ratings rows in {entry['path']} "
            f"({share:.2%}) are malformed, above ingest.max_quarantine_share = "
            f"{limit:g} ({limit:.2%})"
        )
    raise DataQualityError(
        f"{what}. Most common reasons: {top}. The quarantine (source_file, line_number, raw_line, "
        f"reason) and a report were written to {failed}/ for inspection; nothing was published "
        f"to {target} (an earlier output there is unchanged). Fix the input, or accept more bad "
        f"rows with --set ingest.max_quarantine_share=<share, e.g. {min(1.0, 2 * share):.2g}>."
    )


def _write_stats(
    spark: SparkSession, cfg: Config, ratings: DataFrame, out: str, profile: st.Profile | None
) -> dict[str, Any]:
    """Statistics tables (Parquet) and plots (PNG) from one :class:`recspark.stats.Profile`
    of the written ratings (``profile``, or :func:`recspark.stats.profile`: three small
    aggregations); return the summary."""
    k = cfg.ingest.curve_points_per_decade
    profile = st.profile(ratings) if profile is None else profile
    summary, histogram = st.summary(profile), st.rating_histogram(profile)
    curves = {
        "users": st.rank_frequency(profile.users, points_per_decade=k),
        "movies": st.rank_frequency(profile.movies, points_per_decade=k),
    }
    ingested.write_small(spark, summary, SUMMARY_SCHEMA, out, ingested.SUMMARY_TABLE)
    ingested.write_small(
        spark, histogram, RATING_HISTOGRAM_SCHEMA, out, ingested.RATING_HISTOGRAM_TABLE
    )
    for curve, sub in (
        (curves["users"], ingested.USER_RANK_FREQUENCY_TABLE),
        (curves["movies"], ingested.MOVIE_RANK_FREQUENCY_TABLE),
    ):
        ingested.write_small(spark, curve, RANK_FREQUENCY_SCHEMA, out, sub)
    name = cfg.data.dataset
    st.plot_rating_histogram(
        spark,
        histogram,
        ingested.path(out, ingested.RATING_HISTOGRAM_PLOT),
        title=f"{name}: ratings by value",
    )
    st.plot_rank_frequency(
        spark,
        curves,
        ingested.path(out, ingested.RANK_FREQUENCY_PLOT),
        title=f"{name}: rank-frequency of users and movies",
    )
    return _summary_dict(summary, histogram)


def _summary_dict(summary, histogram) -> dict[str, Any]:
    """The report's ``stats``: the summary metrics (counts as ints), first and last date,
    ratings per value."""
    values = {r[METRIC]: float(r[VALUE]) for r in summary.to_dict("records")}
    fractional = (st.RATING_MEAN, st.USER_RATINGS_MEDIAN, st.MOVIE_RATINGS_MEDIAN)
    result: dict[str, Any] = {m: (v if m in fractional else int(v)) for m, v in values.items()}
    for key, metric in (("first_date", st.FIRST_TIMESTAMP), ("last_date", st.LAST_TIMESTAMP)):
        result[key] = datetime.fromtimestamp(values[metric], timezone.utc).date().isoformat()
    result["rating_histogram"] = {
        f"{r:g}": int(n) for r, n in zip(histogram[RATING], histogram[N_RATINGS])
    }
    return result


def _finish(
    spark: SparkSession, cfg: Config, report: dict[str, Any], entry: dict[str, Any], out: str
) -> None:
    """Mark the report finished; write it and the resolved config; log the ratings counts."""
    report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["status"] = "ok"
    ingested.write_report(spark, out, report)
    ingested.write_config(spark, out, to_toml(cfg))
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
