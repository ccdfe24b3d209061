"""What the run report shows, gathered from the folders the jobs wrote (small driver frames).

Everything is read back from disk, never recomputed: the train run folder (metrics,
recommendations, saved models' histories and pictures, ``timings.json``, ``config.toml``),
the ingested folder of its data set (``report.json``, statistics pictures, movie titles,
ratings of the sample users), the segment run of the same id when there is one
(profiles, ablation, similar movies, pictures) and the re-scoring dates made from its
models. A part whose folder is missing is left out of the report (None or empty).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, expand
from recspark.evaluation.leaderboard import best, cell, columns, leaderboard
from recspark.io import runs, scores, storage
from recspark.io.ingested import (
    RANK_FREQUENCY_PLOT,
    RATING_HISTOGRAM_PLOT,
    read_movies,
    read_ratings,
)
from recspark.schema import (
    MODEL,
    MOVIE_ID,
    RANK,
    RATING,
    SIMILAR_TITLE,
    SIMILARITY,
    SPLIT,
    TIMESTAMP,
    TITLE,
    USER_ID,
)

_logger = logging.getLogger(__name__)

#: Stage timings a train run writes beside its metrics (list of [stage, seconds]).
TIMINGS_FILE = "timings.json"
#: Users whose top-10 lists are shown, and movies whose neighbours are shown.
SAMPLE_USERS = 3
SAMPLE_MOVIES = 4
#: Segment-run pictures, in report order, with their captions.
SEGMENT_PICTURES = (
    ("silhouette.png", "Silhouette by number of segments k"),
    ("blend_curve.png", "Validation RMSE by blend weight of the segment residuals"),
    ("users_pca.png", "User factors (PCA), coloured by segment"),
    ("movies_pca.png", "Movie factors (PCA), coloured by genre group"),
)


@dataclasses.dataclass
class Picture:
    """A PNG to inline: its caption and ``data:`` URI."""

    caption: str
    uri: str
    path: str


@dataclasses.dataclass
class Board:
    """One split kind's leaderboard: header, rows of (text, is_best) cells, raw frame."""

    kind: str
    header: list[str]
    rows: list[list[tuple[str, bool]]]
    frame: pd.DataFrame


@dataclasses.dataclass
class Content:
    """Everything the template renders (see the module docstring)."""

    run_id: str
    run_dir: str
    boards: list[Board]
    data_stats: dict[str, Any] | None
    data_files: list[dict[str, Any]]
    pictures: dict[str, list[Picture]]
    segment_profiles: pd.DataFrame | None
    segment_metrics: pd.DataFrame | None
    similar: list[tuple[str, pd.DataFrame]]
    samples: list[tuple[int, pd.DataFrame]]
    timings: list[tuple[str, float]]
    rescores: list[dict[str, Any]]
    config_text: str


def picture(spark: SparkSession, path: str, caption: str) -> Picture | None:
    """The PNG at ``path`` as an inline :class:`Picture`, or None when it does not exist."""
    if not storage.exists(spark, path):
        return None
    data = base64.b64encode(storage.read_bytes(spark, path)).decode("ascii")
    return Picture(caption, f"data:image/png;base64,{data}", path)


def boards(metrics: pd.DataFrame, *, main_kind: str, k: int) -> list[Board]:
    """A :class:`Board` per split kind of ``metrics`` that has test rows, ``main_kind``
    first, each sorted by RMSE and its best values marked."""
    kinds = sorted({s.split("/")[0] for s in metrics[SPLIT] if s.endswith("/test")})
    kinds = [main_kind] * (main_kind in kinds) + [x for x in kinds if x != main_kind]
    out = []
    for kind in kinds:
        frame = leaderboard(metrics, kind=kind, k=k)
        winners = best(frame, k=k)
        rows = [
            [(str(frame.at[i, MODEL]), False)]
            + [(cell(frame, i, c), winners.get(c) == frame.at[i, MODEL]) for c in columns(k)]
            for i in range(len(frame))
        ]
        out.append(Board(kind, [MODEL, *columns(k)], rows, frame))
    return out


def collect(spark: SparkSession, cfg: Config, run_dir: str) -> Content:
    """Gather the report of the train run in ``run_dir``; ``cfg`` is the run's config.

    Actions: reads of small tables (metrics, histories, profiles, the sample users'
    recommendations and ratings, similar movies of a few movies); no model is scored.
    """
    run_id = runs.run_id_of(run_dir)
    metrics = spark.read.parquet(f"{run_dir}/{runs.METRICS_DIR}").toPandas()
    models = sorted({m for m in metrics[MODEL] if "@" not in m})  # the run's, whatever cfg says
    ingest_dir = expand(cfg.ingest_dir())
    ingest_report = _json(spark, f"{ingest_dir}/report.json")
    pictures = {
        "data": _pictures(spark, [
            (f"{ingest_dir}/{RATING_HISTOGRAM_PLOT}", "Ratings by value"),
            (f"{ingest_dir}/{RANK_FREQUENCY_PLOT}", "Ratings per user and per movie, by rank"),
        ]),
        "convergence": _pictures(spark, [
            (f"{runs.model_dir(run_dir, m)}/{m}_convergence.png", f"{m}: RMSE per iteration")
            for m in models
        ]),
        "sweeps": _pictures(spark, [
            (f"{runs.model_dir(run_dir, m)}/{m}_sweep.png", f"{m}: test error by rank k")
            for m in models
        ]),
    }
    seg_dir = f"{expand(cfg.segment.output_dir).rstrip('/')}/{run_id}"
    has_segments = storage.exists(spark, f"{seg_dir}/{runs.METRICS_DIR}")
    pictures["segments"] = _pictures(
        spark, [(f"{seg_dir}/{name}", caption) for name, caption in SEGMENT_PICTURES]
    ) if has_segments else []
    movies = read_movies(spark, ingest_dir) if storage.exists(spark, ingest_dir) else None
    return Content(
        run_id=run_id,
        run_dir=run_dir,
        boards=boards(metrics, main_kind=cfg.split.kind, k=cfg.recommend.k),
        data_stats=None if ingest_report is None else ingest_report.get("stats"),
        data_files=_files(ingest_report),
        pictures=pictures,
        segment_profiles=_parquet(spark, f"{seg_dir}/profiles") if has_segments else None,
        segment_metrics=_parquet(spark, f"{seg_dir}/{runs.METRICS_DIR}") if has_segments else None,
        similar=_similar(spark, seg_dir, ingest_dir) if has_segments else [],
        samples=_samples(spark, run_dir, ingest_dir, movies) if movies is not None else [],
        timings=[tuple(t) for t in (_json(spark, f"{run_dir}/{TIMINGS_FILE}") or [])],
        rescores=_rescores(spark, cfg, run_dir),
        config_text=storage.read_text(spark, f"{run_dir}/{runs.CONFIG_FILE}"),
    )


def _json(spark: SparkSession, path: str) -> Any:
    return json.loads(storage.read_text(spark, path)) if storage.exists(spark, path) else None


def _parquet(spark: SparkSession, path: str) -> pd.DataFrame | None:
    return spark.read.parquet(path).toPandas() if storage.exists(spark, path) else None


def _pictures(spark: SparkSession, wanted: list[tuple[str, str]]) -> list[Picture]:
    return [p for p in (picture(spark, path, caption) for path, caption in wanted) if p]


def _files(ingest_report: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The ingest's data-quality rows: one per input file with read, accepted,
    quarantined, duplicates and the quarantine reasons."""
    if not ingest_report:
        return []
    return [{"file": name, **counts} for name, counts in ingest_report.get("files", {}).items()]


def _samples(
    spark: SparkSession, run_dir: str, ingest_dir: str, movies: DataFrame
) -> list[tuple[int, pd.DataFrame]]:
    """For the :data:`SAMPLE_USERS` smallest user ids with lists: a table by rank of the
    user's ten highest ratings ("rated highly", latest first among ties) beside each
    ranking model's top-10 list, with titles."""
    recs_path = f"{run_dir}/{runs.RECOMMENDATIONS_DIR}"
    if not storage.exists(spark, recs_path):
        return []
    recs = spark.read.parquet(recs_path).filter(F.col(RANK) <= 10)
    users = [r[0] for r in recs.select(USER_ID).distinct().orderBy(USER_ID).limit(SAMPLE_USERS).collect()]
    titles = movies.select(MOVIE_ID, TITLE)
    recs = recs.filter(F.col(USER_ID).isin(users)).join(titles, MOVIE_ID, "left").toPandas()
    rated = (
        read_ratings(spark, ingest_dir).filter(F.col(USER_ID).isin(users))
        .join(titles, MOVIE_ID, "left").select(USER_ID, TITLE, RATING, TIMESTAMP).toPandas()
    )
    out = []
    for user in users:
        mine = rated[rated[USER_ID] == user].sort_values([RATING, TIMESTAMP], ascending=False)
        table = pd.DataFrame({RANK: range(1, 11)})
        table["rated highly"] = _padded([f"{t} ({r:g})" for t, r in zip(mine[TITLE], mine[RATING])])
        for model, lists in recs[recs[USER_ID] == user].groupby(MODEL):
            table[model] = _padded(list(lists.sort_values(RANK)[TITLE].fillna("?")))
        out.append((int(user), table))
    return out


def _padded(values: list[str], n: int = 10) -> list[str]:
    return (values + [""] * n)[:n]


def _similar(spark: SparkSession, seg_dir: str, ingest_dir: str) -> list[tuple[str, pd.DataFrame]]:
    """Similar movies of the :data:`SAMPLE_MOVIES` most-rated movies (the well-known
    titles of the data set) that have a neighbour list: (title, its 10 neighbours)."""
    path = f"{seg_dir}/similar_movies"
    if not storage.exists(spark, path):
        return []
    similar = spark.read.parquet(path)
    popular = (
        read_ratings(spark, ingest_dir).groupBy(MOVIE_ID).count()
        .join(similar.select(MOVIE_ID).distinct(), MOVIE_ID)
        .orderBy(F.desc("count"), MOVIE_ID).limit(SAMPLE_MOVIES)
    )
    rows = similar.join(popular, MOVIE_ID).orderBy(F.desc("count"), MOVIE_ID, RANK).toPandas()
    return [
        (str(group[TITLE].iloc[0]), group[[RANK, SIMILAR_TITLE, SIMILARITY]].reset_index(drop=True))
        for _, group in rows.groupby(MOVIE_ID, sort=False)
    ]


def _rescores(spark: SparkSession, cfg: Config, run_dir: str) -> list[dict[str, Any]]:
    """The ``_report.json`` of every published re-scoring date whose model came from this
    run (``model_path`` under ``run_dir``)."""
    out_dir = expand(cfg.rescore.output_dir).rstrip("/")
    found = []
    for day in scores.published_dates(spark, out_dir):
        report = _json(spark, f"{scores.date_dir(out_dir, day)}/{scores.REPORT_FILE}")
        if report and str(report.get("model_path", "")).rstrip("/").startswith(run_dir.rstrip("/")):
            found.append(report)
    return found

