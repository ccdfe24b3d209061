"""The scheduled batch re-scoring job: a saved model → scores for today.

``run_rescore(spark, cfg)`` loads ``models/<rescore.model>/`` of a train run (``rescore.run_id``,
or the latest published run holding it: :func:`recspark.io.runs.find_run`). With
``rescore.model = ""`` (the default) it loads the run's best saved model
(:func:`recspark.io.runs.find_best`): for lists (``all``, ``incremental``) the best by the
run's ranking metric (``recommend.best_metric`` at ``recommend.k`` when it was trained, e.g.
NDCG@10), for ``pairs`` the best by test RMSE. The folder's
``model.json`` names the registered model, whose spec loads it. The job reads the current
ratings (``rescore.ratings`` Parquet, else the ingested ratings) and writes one of
(``rescore.mode``):

- ``pairs`` (a ``PREDICT`` model): the (user_id, movie_id) pairs of ``rescore.input``
  (Parquet folder, or CSV with an optional ``userId,movieId`` header) scored as user_id,
  movie_id, prediction (clipped to the rating scale), personalised, model. Pairs the model
  cannot score get the bias fallback and are counted (for a ``FACTORS`` model also by
  unknown user and unknown movie); malformed CSV lines are quarantined (source_file,
  line_number, raw_line, reason) like ingest does.
- ``all`` (a ``TOP_N`` model): top ``rescore.n`` for every user the model ranks (user_id,
  rank, movie_id, score, model; rated movies of the current ratings excluded, and movies
  with fewer than ``recommend.min_support`` current ratings, as in the train run).
- ``incremental``: the same, only for users with a rating newer than the watermark of the
  latest earlier scoring date (all users when there is none).

Users in the current ratings but unseen in training are folded in when ``rescore.foldin``
and the spec has ``FOLD_IN`` (ALS: one half-step against the fixed movie factors,
:mod:`recspark.serving.foldin`). Otherwise new users get what the model can do: a
non-personalised ranking (``shared_scores``, e.g. popularity) ranks every user of the
current ratings; a personalised one gives them no list, and their pairs the bias fallback.

Output layout (score dates, ``_staging``, report, watermark): :mod:`recspark.io.scores`.
A run that dies half-way leaves the earlier output of that date intact; re-running a date
replaces it with the same rows (the computation is deterministic).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Config, expand
from recspark.errors import ConfigError, DataNotFoundError, ModelError
from recspark.evaluation.best import RANKING_KEY, RMSE_KEY
from recspark.io import runs, scores, storage
from recspark.io.ingested import read_ratings
from recspark.io.validate import Reason, quarantined, read_lines
from recspark.log import stage
from recspark.models import registry
from recspark.models.contract import Ability, ModelSpec, RankingInputs, require
from recspark.schema import (
    LINE_NUMBER,
    MODEL,
    MOVIE_ID,
    N_RATINGS,
    PERSONALISED,
    PREDICTION,
    RATING,
    RAW_LINE,
    REASON,
    ROWS,
    SOURCE_FILE,
    TIMESTAMP,
    USER_ID,
    require_columns,
)
from recspark.serving.topn import recommend, with_min_support

_logger = logging.getLogger(__name__)

#: What each ``rescore.mode`` needs the model to do.
MODES = {"pairs": Ability.PREDICT, "all": Ability.TOP_N, "incremental": Ability.TOP_N}
#: Which of the run's best lists (``best.json``) picks the model when ``rescore.model`` is
#: empty: predicted ratings by test RMSE, lists by the run's ranking metric.
BEST_BY = {"pairs": RMSE_KEY, "all": RANKING_KEY, "incremental": RANKING_KEY}
_PAIR_HEADERS = ("userid,movieid", "user_id,movie_id")
_INT_RE = r"^[+-]?[0-9]+$"
_USERS, _UNKNOWN_USER, _UNKNOWN_MOVIE = "users", "unknown_user", "unknown_movie"

#: Called with the staging folder after the scores are written and before publication
#: (tests inject a failure here).
Hook = Callable[[str], None]


# --------------------------------------------------------------------------- the model


def load_model(spark: SparkSession, cfg: Config) -> tuple[str, ModelSpec, Any]:
    """(folder, spec, model) of the saved model to score with (module docstring).

    Raises ModelError when no published run holds ``models/<rescore.model>`` (or, with
    ``rescore.model = ""``, names a saved best model in ``best.json``), the folder is
    missing or incomplete, or the model it names cannot be saved and loaded; ConfigError
    when the model cannot do what ``rescore.mode`` needs.
    """
    rc = cfg.rescore
    model = rc.model
    if model:
        run = runs.find_run(spark, cfg, model=model, run_id=rc.run_id)
    else:
        found = runs.find_best(spark, cfg, by=BEST_BY[rc.mode], run_id=rc.run_id)
        if found is None:
            where = (
                f"the run {runs.run_path(cfg, rc.run_id)} has no {runs.BEST_FILE} naming a saved model"
                if rc.run_id
                else f"no published train run under {runs.runs_dir(cfg)} names a saved model "
                f"in its {runs.BEST_FILE}"
            )
            raise ModelError(
                f"rescore.model is empty (the run's best model), but {where}: train one "
                "(python jobs/train.py), or set rescore.model to a saved model's name"
            )
        run, model = found
        _logger.info("rescore: the run's best saved model by %s is %s", BEST_BY[rc.mode], model)
    if run is None:
        raise ModelError(
            f"no published train run under {runs.runs_dir(cfg)} holds a saved {model!r} "
            f"model: train one (python jobs/train.py --set train.models=bias,{model}), or "
            "point rescore.run_id at a run and rescore.model at one of its models/"
        )
    path = runs.model_dir(run, model)
    name = runs.read_model_meta(spark, path)[runs.NAME_KEY]
    spec = registry.spec(name)
    if not spec.can(Ability.SAVE):
        raise ModelError(f"{path} names model {name!r}, which cannot be saved and re-loaded")
    saveable = registry.with_ability(Ability.SAVE)
    require(spec, MODES[rc.mode], setting=f"rescore.mode = {rc.mode}",
            choices=[n for n in registry.with_ability(MODES[rc.mode]) if n in saveable])
    return path, spec, spec.load(spark, path)


def fold_in_new_users(
    spark: SparkSession, cfg: Config, spec: ModelSpec, model: Any, ratings: DataFrame,
    report: dict[str, Any],
) -> Any:
    """The model to score with: ``model`` with the new users of ``ratings`` folded in when
    ``rescore.foldin`` and the spec can, else ``model``. Sets ``report["folded_in_users"]``
    (counted for ``FACTORS`` models, else None)."""
    if not (cfg.rescore.foldin and spec.can(Ability.FOLD_IN)):
        if cfg.rescore.foldin:
            _logger.info("%s cannot fold in new users: they get what it can do without", spec.name)
        report["folded_in_users"] = 0
        return model
    with stage("rescore: fold in new users", spark):
        scoring = model.fold_in(ratings)
        report["folded_in_users"] = (
            scoring.user_factors.count() - model.user_factors.count()
            if spec.can(Ability.FACTORS)
            else None
        )
    return scoring


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
    day = scores.score_date(rc.score_date)
    output_dir = expand(rc.output_dir).rstrip("/")
    with stage("rescore: load model", spark):
        path, spec, model = load_model(spark, cfg)
    _logger.info("rescore %s: model %s from %s, date %s", rc.mode, model.name, path, day)
    ratings = current_ratings(spark, cfg)
    report: dict[str, Any] = {
        "score_date": day,
        "mode": rc.mode,
        MODEL: model.name,
        "model_path": path,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with stage("rescore: watermark", spark):
        watermark = ratings.agg(F.max(TIMESTAMP)).first()[0]
    report["watermark"] = None if watermark is None else int(watermark)
    scoring = fold_in_new_users(spark, cfg, spec, model, ratings, report)
    with scores.staged_date(spark, output_dir, day) as staging:
        if rc.mode == "pairs":
            _score_pairs(spark, cfg, spec, scoring, staging, report)
        else:
            _score_lists(spark, cfg, scoring, ratings, staging, report, output_dir=output_dir, day=day)
        if hook is not None:
            hook(staging)
        report["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        scores.write_report(spark, staging, report, watermark=report["watermark"])
    _logger.info("rescore published %s", scores.date_dir(output_dir, day))
    return report


def _score_lists(
    spark: SparkSession, cfg: Config, model: Any, ratings: DataFrame, staging: str,
    report: dict[str, Any], *, output_dir: str, day: str,
) -> None:
    """``all`` / ``incremental`` modes: top-N lists of a ``TOP_N`` model, written to
    ``staging``; rows and users counted into ``report``."""
    rc = cfg.rescore
    with stage(f"rescore: top-{rc.n} ({rc.mode})", spark):
        counts = ratings.groupBy(MOVIE_ID).agg(F.count(F.lit(1)).alias(N_RATINGS))
        inputs = with_min_support(
            model.ranking_inputs(), counts, min_support=cfg.recommend.min_support
        )
        users = inputs.users
        if inputs.scorer.shared_scores is not None:  # one ranking for all: anyone can have it
            users = ratings.select(USER_ID).distinct()
        if rc.mode == "incremental":
            since = scores.previous_watermark(spark, output_dir, day)
            report["previous_watermark"] = since
            if since is not None:
                active = ratings.where(F.col(TIMESTAMP) > F.lit(since)).select(USER_ID)
                users = users.join(active.distinct(), USER_ID, "left_semi")
        recs = recommend(
            RankingInputs(users, inputs.scorer),
            ratings.select(USER_ID, MOVIE_ID, RATING),
            n=rc.n,
            model=model.name,
            block_users=cfg.recommend.block_users,
            max_chunk_cells=cfg.recommend.max_chunk_cells,
        )
        recs.write.parquet(staging)
    with stage("rescore: count rows", spark):
        written = spark.read.parquet(staging).agg(
            F.count(F.lit(1)).alias(ROWS), F.countDistinct(USER_ID).alias(_USERS)
        ).first()
    report[ROWS], report["users_scored"] = int(written[ROWS]), int(written[_USERS])


def _score_pairs(
    spark: SparkSession, cfg: Config, spec: ModelSpec, model: Any, staging: str,
    report: dict[str, Any],
) -> None:
    """Pairs mode: score with a ``PREDICT`` model, write, quarantine, and count into
    ``report`` the rows the bias fallback scored (for a ``FACTORS`` model also the
    unknown users and movies)."""
    rc = cfg.rescore
    pairs, bad = read_pairs(spark, expand(rc.input), fmt=rc.input_format)
    with stage("rescore: score pairs", spark):
        scored = model.predict(pairs).select(
            USER_ID, MOVIE_ID, PREDICTION, PERSONALISED, F.lit(model.name).alias(MODEL)
        )
        scored.write.parquet(staging)
    with stage("rescore: count fallback rows", spark):
        out = spark.read.parquet(staging)
        counts = [F.count(F.lit(1)).alias(ROWS), F.sum(F.col(PERSONALISED).cast("long")).alias(PERSONALISED)]
        if spec.can(Ability.FACTORS):
            known_u = model.user_factors.select(USER_ID, F.lit(True).alias(_UNKNOWN_USER))
            known_m = model.item_factors.select(MOVIE_ID, F.lit(True).alias(_UNKNOWN_MOVIE))
            out = out.join(known_u, USER_ID, "left").join(known_m, MOVIE_ID, "left")
            counts += [F.sum(F.col(c).isNull().cast("long")).alias(c) for c in (_UNKNOWN_USER, _UNKNOWN_MOVIE)]
        row = out.agg(*counts).first().asDict()
    report.update({k: int(v or 0) for k, v in row.items()})
    report["bias_fallback"] = report[ROWS] - report[PERSONALISED]
    report["quarantined"] = 0
    if bad is not None:
        with stage("rescore: quarantine malformed pairs", spark):
            bad.write.parquet(f"{staging}/{scores.PAIRS_QUARANTINE_DIR}")
            report["quarantined"] = spark.read.parquet(
                f"{staging}/{scores.PAIRS_QUARANTINE_DIR}"
            ).count()
    if report["bias_fallback"] or report["quarantined"]:
        _logger.warning(
            "rescore pairs: %d of %d rows scored by the bias fallback (%s unknown user, %s "
            "unknown movie); %d malformed input line(s) quarantined",
            report["bias_fallback"], report[ROWS], report.get(_UNKNOWN_USER, "?"),
            report.get(_UNKNOWN_MOVIE, "?"), report["quarantined"],
        )
