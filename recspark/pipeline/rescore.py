"""The scheduled batch re-scoring job: a saved factor model → scores for today.

``run_rescore(spark, cfg)`` loads ``models/<rescore.model>/`` of a train run (``rescore.run_id``,
or the latest *published* run under ``train.output_dir`` that holds the model: a run folder
without a ``._staging-`` / ``._old-`` suffix, chosen by sorted run id) with
:meth:`FactorModel.load`, reads the current ratings (``rescore.ratings`` Parquet, else the
ingested ratings), and writes one of (``rescore.mode``):

- ``pairs``: the (user_id, movie_id) pairs of ``rescore.input`` (Parquet folder, or CSV with
  an optional ``userId,movieId`` header) scored as user_id, movie_id, prediction (clipped to
  the rating scale), personalised, model. Pairs with an id the model does not know are
  scored by the bias fallback and counted; malformed CSV lines are quarantined
  (source_file, line_number, raw_line, reason) like ingest does.
- ``all``: top ``rescore.n`` for every user (user_id, rank, movie_id, score, model; rated
  movies of the current ratings excluded).
- ``incremental``: the same, only for users with a rating newer than the watermark of the
  latest earlier scoring date (all users when there is none).

Users in the current ratings but not in the model are folded in (one ALS half-step against
the fixed movie factors, :mod:`recspark.models.foldin`) when ``rescore.foldin``; without
fold-in, or for users whose movies are all unknown, they get no top-N list and their pairs
the bias fallback.

Output: ``<rescore.output_dir>/score_date=YYYY-MM-DD/`` holding the Parquet part files plus
``_report.json`` (counts), ``_watermark.json`` (max rating timestamp of the ratings read) and,
in pairs mode, ``_quarantine/``; Spark's reader skips ``_``-names, so
``spark.read.parquet(output_dir)`` sees the ``score_date`` partitions only (use
:func:`read_scores` to read published dates only). Everything is written to
``<output_dir>/_staging/`` first and moved into place with one rename after the last byte:
a run that dies half-way leaves the earlier output of that date intact; re-running a date
replaces it with the same rows (the computation is deterministic).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import uuid
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterator

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Config, expand
from recspark.errors import ConfigError, DataNotFoundError, ModelError
from recspark.io import storage
from recspark.io.ingested import read_ratings
from recspark.io.validate import Reason, quarantined, read_lines
from recspark.log import stage
from recspark.models.factor import FactorModel
from recspark.models.foldin import fold_in_model_users
from recspark.recommend import recommend
from recspark.schema import (
    BIAS,
    FACTORS,
    LINE_NUMBER,
    MODEL,
    MOVIE_ID,
    PERSONALISED,
    PREDICTION,
    RATING,
    RAW_LINE,
    REASON,
    SCORE_DATE,
    SOURCE_FILE,
    TIMESTAMP,
    USER_ID,
    require_columns,
)

_logger = logging.getLogger(__name__)

MODES = ("pairs", "all", "incremental")
REPORT_FILE = "_report.json"
WATERMARK_FILE = "_watermark.json"
QUARANTINE_DIR = "_quarantine"
STAGING_DIR = "_staging"
_DATE_DIR = re.compile(rf"^{SCORE_DATE}=(\d{{4}}-\d{{2}}-\d{{2}})$")
_PAIR_HEADERS = ("userid,movieid", "user_id,movie_id")
_INT_RE = r"^[+-]?[0-9]+$"

#: Called with the staging folder after the scores are written and before publication
#: (tests inject a failure here).
Hook = Callable[[str], None]


# --------------------------------------------------------------------------- locating things


def _published_runs(spark: SparkSession, runs_dir: str) -> list[str]:
    return [
        name
        for name in storage.list_dir(spark, runs_dir)
        if not name.startswith(("_", "."))
        and "._staging-" not in name
        and "._old-" not in name
    ]


def model_path(spark: SparkSession, cfg: Config) -> str:
    """The saved model folder to load (see the module docstring). Raises ModelError when no
    published run holds ``models/<rescore.model>``."""
    runs_dir = expand(cfg.train.output_dir).rstrip("/")
    name = cfg.rescore.model
    if cfg.rescore.run_id:
        return f"{runs_dir}/{cfg.rescore.run_id}/models/{name}"
    for run in reversed(_published_runs(spark, runs_dir)):
        path = f"{runs_dir}/{run}/models/{name}"
        if storage.exists(spark, path):
            return path
    raise ModelError(
        f"no published train run under {runs_dir} holds a saved {name!r} model: train one "
        f"(python jobs/train.py --set train.models=bias,{name}), or point rescore.run_id at a "
        "run and rescore.model at one of its models/"
    )


def score_date(cfg: Config) -> str:
    """``rescore.score_date`` checked as YYYY-MM-DD, or today's UTC date."""
    text = cfg.rescore.score_date or datetime.now(timezone.utc).date().isoformat()
    try:
        date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"rescore.score_date must be YYYY-MM-DD, got {text!r}") from None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ConfigError(f"rescore.score_date must be YYYY-MM-DD, got {text!r}")
    return text


def published_dates(spark: SparkSession, output_dir: str) -> list[str]:
    """Sorted score dates published under ``output_dir``."""
    dates = []
    for name in storage.list_dir(spark, output_dir):
        m = _DATE_DIR.match(name)
        if m:
            dates.append(m.group(1))
    return sorted(dates)


def read_scores(spark: SparkSession, output_dir: str) -> DataFrame:
    """Every published score date under ``output_dir`` with its ``score_date`` column (half
    written staging folders are never read). Raises DataNotFoundError when there is none."""
    dates = published_dates(spark, output_dir)
    if not dates:
        raise DataNotFoundError(f"no published scores under {output_dir}: run jobs/rescore.py first")
    base = output_dir.rstrip("/")
    return spark.read.option("basePath", base).parquet(
        *[f"{base}/{SCORE_DATE}={d}" for d in dates]
    )


def previous_watermark(spark: SparkSession, output_dir: str, before: str) -> int | None:
    """The watermark (max rating timestamp) of the latest published date before ``before``."""
    base = output_dir.rstrip("/")
    for d in reversed([d for d in published_dates(spark, output_dir) if d < before]):
        path = f"{base}/{SCORE_DATE}={d}/{WATERMARK_FILE}"
        if storage.exists(spark, path):
            return int(json.loads(storage.read_text(spark, path))["max_timestamp"])
    return None


# --------------------------------------------------------------------------- inputs


def current_ratings(spark: SparkSession, cfg: Config) -> DataFrame:
    """user_id, movie_id, rating, timestamp from ``rescore.ratings`` (Parquet) or the ingest."""
    if cfg.rescore.ratings:
        path = expand(cfg.rescore.ratings)
        if not storage.exists(spark, path):
            raise DataNotFoundError(
                f"rescore.ratings = {path} does not exist: point it at a ratings Parquet folder "
                "or leave it empty to read the ingested ratings"
            )
        df = spark.read.parquet(path)
    else:
        df = read_ratings(spark, expand(cfg.ingest_dir()))
    require_columns(df, [USER_ID, MOVIE_ID, RATING, TIMESTAMP], stage="rescore ratings")
    return df.select(
        F.col(USER_ID).cast("long"),
        F.col(MOVIE_ID).cast("long"),
        F.col(RATING).cast("double"),
        F.col(TIMESTAMP).cast("long"),
    )


def _as_long(field: Column) -> Column:
    return F.when(field.rlike(_INT_RE), field.try_cast(T.LongType()))


def validate_pairs(lines: DataFrame) -> DataFrame:
    """Parse CSV lines (``read_lines`` output) of ``user_id,movie_id`` pairs.

    Output: source_file, line_number, raw_line, user_id, movie_id (long) and ``reason`` (null
    for a good row; else the first problem: blank line, wrong field count, non-numeric or
    non-positive id). A header ``userId,movieId`` / ``user_id,movie_id`` on line 1 is dropped.
    """
    raw = F.col(RAW_LINE)
    parts = F.split(raw, ",", -1)
    user, movie = F.trim(F.get(parts, 0)), F.trim(F.get(parts, 1))
    header = (F.col(LINE_NUMBER) == 1) & F.lower(
        F.regexp_replace(F.trim(raw), "[\ufeff ]", "")
    ).isin(*_PAIR_HEADERS)
    u, m = _as_long(user), _as_long(movie)
    reason = (
        F.when(F.trim(raw) == "", F.lit(Reason.BLANK_LINE))
        .when(F.size(parts) != 2, F.lit(Reason.FIELD_COUNT))
        .when(u.isNull(), F.lit(Reason.USER_NOT_NUMERIC))
        .when(u <= 0, F.lit(Reason.USER_NOT_POSITIVE))
        .when(m.isNull(), F.lit(Reason.MOVIE_NOT_NUMERIC))
        .when(m <= 0, F.lit(Reason.MOVIE_NOT_POSITIVE))
    )
    return lines.where(~header).select(
        SOURCE_FILE, LINE_NUMBER, RAW_LINE, u.alias(USER_ID), m.alias(MOVIE_ID), reason.alias(REASON)
    )


def read_pairs(spark: SparkSession, path: str, *, fmt: str = "auto") -> tuple[DataFrame, DataFrame | None]:
    """(pairs user_id, movie_id; quarantine or None) from a Parquet folder or a CSV file.

    ``fmt``: ``parquet``, ``csv`` or ``auto`` (csv when the path ends in .csv).
    """
    if not path:
        raise ConfigError("rescore.mode = pairs needs rescore.input = <Parquet folder or CSV file>")
    if not storage.exists(spark, path):
        raise DataNotFoundError(f"rescore.input = {path} does not exist: check the path")
    kind = fmt if fmt != "auto" else ("csv" if path.lower().endswith(".csv") else "parquet")
    if kind == "csv":
        validated = validate_pairs(read_lines(spark, path)).cache()
        good = validated.where(F.col(REASON).isNull()).select(USER_ID, MOVIE_ID)
        return good, quarantined(validated)
    if kind != "parquet":
        raise ConfigError(f"rescore.input_format must be auto, parquet or csv, got {fmt!r}")
    df = spark.read.parquet(path)
    require_columns(df, [USER_ID, MOVIE_ID], stage=f"rescore pairs {path}")
    return df.select(F.col(USER_ID).cast("long"), F.col(MOVIE_ID).cast("long")), None


# --------------------------------------------------------------------------- publishing


@contextlib.contextmanager
def _staged_under(spark: SparkSession, output_dir: str, target: str) -> Iterator[str]:
    """Like :func:`storage.staged`, but the staging folder lives under ``<output_dir>/_staging``
    so partition discovery on ``output_dir`` never sees a half-written date."""
    name = target.rstrip("/").rsplit("/", 1)[-1]
    staging = f"{output_dir.rstrip('/')}/{STAGING_DIR}/{name}-{uuid.uuid4().hex[:8]}"
    try:
        yield staging
    except BaseException:
        storage.delete(spark, staging)
        raise
    storage.publish(spark, staging, target)


# --------------------------------------------------------------------------- the job


def run_rescore(
    spark: SparkSession, cfg: Config, args: object | None = None, *, hook: Hook | None = None
) -> dict[str, Any]:
    """Score as configured in ``cfg.rescore`` and publish ``score_date=<date>/`` (module doc).

    Returns the report (also saved as ``_report.json``). ``hook`` (tests) runs after the
    scores are written to staging, before anything is published. Raises ModelError for a
    missing or incompatible model, ConfigError / DataNotFoundError for bad settings or inputs.
    """
    rc = cfg.rescore
    if rc.mode not in MODES:
        raise ConfigError(f"rescore.mode must be one of {', '.join(MODES)}, got {rc.mode!r}")
    if rc.n < 1:
        raise ConfigError(f"rescore.n must be at least 1, got {rc.n}")
    day = score_date(cfg)
    output_dir = expand(rc.output_dir).rstrip("/")
    target = f"{output_dir}/{SCORE_DATE}={day}"
    path = model_path(spark, cfg)
    model = FactorModel.load(spark, path)
    _logger.info("rescore %s: model %s from %s, date %s", rc.mode, model.name, path, day)
    ratings = current_ratings(spark, cfg)
    report: dict[str, Any] = {
        "score_date": day,
        "mode": rc.mode,
        "model": model.name,
        "model_path": path,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with stage("rescore: watermark", spark):
        watermark = ratings.agg(F.max(TIMESTAMP)).first()[0]
    report["watermark"] = None if watermark is None else int(watermark)

    users = model.user_factors
    folded = None
    if rc.foldin:
        with stage("rescore: fold in new users", spark):
            new = ratings.join(model.user_factors.select(USER_ID), USER_ID, "left_anti")
            folded = fold_in_model_users(model, new).cache()
            report["folded_in_users"] = folded.count()
        users = users.unionByName(folded)
    else:
        report["folded_in_users"] = 0
    scoring = dataclasses.replace(model, user_factors=users)

    with _staged_under(spark, output_dir, target) as staging:
        if rc.mode == "pairs":
            _score_pairs(spark, cfg, scoring, staging, report)
        else:
            selected = users
            if rc.mode == "incremental":
                since = previous_watermark(spark, output_dir, day)
                report["previous_watermark"] = since
                if since is not None:
                    active = ratings.where(F.col(TIMESTAMP) > F.lit(since)).select(USER_ID)
                    selected = users.join(active.distinct(), USER_ID, "left_semi")
            recs = recommend(
                selected.select(USER_ID, BIAS, FACTORS),
                model.item_factors,
                ratings.select(USER_ID, MOVIE_ID),
                n=rc.n,
                model=model.name,
                global_mean=model.global_mean,
                block_users=cfg.recommend.block_users,
                max_chunk_cells=cfg.recommend.max_chunk_cells,
            )
            with stage(f"rescore: top-{rc.n} ({rc.mode})", spark):
                recs.write.parquet(staging)
            written = spark.read.parquet(staging).agg(
                F.count(F.lit(1)).alias("rows"), F.countDistinct(USER_ID).alias("users")
            ).first()
            report["rows"], report["users_scored"] = int(written["rows"]), int(written["users"])
        if hook is not None:
            hook(staging)
        report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        storage.write_text(spark, f"{staging}/{REPORT_FILE}", json.dumps(report, indent=2) + "\n")
        storage.write_text(
            spark,
            f"{staging}/{WATERMARK_FILE}",
            json.dumps({"max_timestamp": report["watermark"]}) + "\n",
        )
    if folded is not None:
        folded.unpersist()
    _logger.info("rescore published %s: %s", target, json.dumps(report))
    return report


def _score_pairs(
    spark: SparkSession, cfg: Config, model: FactorModel, staging: str, report: dict[str, Any]
) -> None:
    """Pairs mode: score, write, quarantine, count unknown ids into ``report``."""
    rc = cfg.rescore
    pairs, bad = read_pairs(spark, expand(rc.input), fmt=rc.input_format)
    known_u = model.user_factors.select(USER_ID, F.lit(True).alias("_known_user"))
    known_m = model.item_factors.select(MOVIE_ID, F.lit(True).alias("_known_movie"))
    with stage("rescore: score pairs", spark):
        scored = model.predict(pairs).select(
            USER_ID, MOVIE_ID, PREDICTION, PERSONALISED, F.lit(model.name).alias(MODEL)
        )
        scored.write.parquet(staging)
    with stage("rescore: count unknown ids", spark):
        out = spark.read.parquet(staging)
        row = (
            out.join(known_u, USER_ID, "left")
            .join(known_m, MOVIE_ID, "left")
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.sum(F.col(PERSONALISED).cast("long")).alias("personalised"),
                F.sum(F.col("_known_user").isNull().cast("long")).alias("unknown_user"),
                F.sum(F.col("_known_movie").isNull().cast("long")).alias("unknown_movie"),
            )
            .first()
        )
    report.update({k: int(row[k] or 0) for k in ("rows", "personalised", "unknown_user", "unknown_movie")})
    report["bias_fallback"] = report["rows"] - report["personalised"]
    report["quarantined"] = 0
    if bad is not None:
        bad.write.parquet(f"{staging}/{QUARANTINE_DIR}")
        report["quarantined"] = spark.read.parquet(f"{staging}/{QUARANTINE_DIR}").count()
    if report["bias_fallback"] or report["quarantined"]:
        _logger.warning(
            "rescore pairs: %d of %d rows scored by the bias fallback (%d unknown user, %d "
            "unknown movie); %d malformed input line(s) quarantined",
            report["bias_fallback"], report["rows"], report["unknown_user"],
            report["unknown_movie"], report["quarantined"],
        )
