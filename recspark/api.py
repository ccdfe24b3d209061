"""The Python API for notebooks: open a train run or a saved model and ask it questions.

    from recspark import api
    run = api.open_run(spark, "out/runs")              # the latest published run
    run.leaderboard()                                   # pandas, one row per model
    als = run.model("als")                              # a saved model of the run
    als.predict(pairs)                                  # DataFrame in, DataFrame out
    als.recommend([1, 2], n=5)                          # top-5 with titles
    als.similar([1], n=5)                               # neighbours by cosine

Every method takes and returns Spark DataFrames (lists of ids are accepted for
convenience) and says which ability of the model it needs (:class:`Ability`); asking a
model for what it cannot do raises :class:`~recspark.errors.ModelError` naming the models
that can.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterable

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, default_config, expand
from recspark.errors import DataNotFoundError, ModelError
from recspark.evaluation.leaderboard import leaderboard
from recspark.io import runs, storage
from recspark.io.ingested import read_movies, read_ratings
from recspark.models import registry
from recspark.models.contract import Ability, ModelSpec
from recspark.schema import MOVIE_ID, RATING, USER_ID
from recspark.serving import similar as similar_movies
from recspark.serving.topn import recommend as top_n
from recspark.serving.topn import with_titles

_logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Model:
    """A fitted or loaded model with the data it needs to answer: ``ratings`` (the known
    ratings, excluded from its lists; None: exclude nothing) and ``movies`` (titles; None:
    no titles)."""

    spec: ModelSpec
    fitted: Any
    ratings: DataFrame | None = None
    movies: DataFrame | None = None

    @property
    def name(self) -> str:
        """The registered model name."""
        return self.spec.name

    def _need(self, ability: Ability, what: str) -> None:
        if not self.spec.can(ability):
            able = ", ".join(registry.with_ability(ability))
            raise ModelError(f"model {self.name!r} cannot {what}; models that can: {able}")

    def predict(self, pairs: DataFrame) -> DataFrame:
        """Predicted ratings of ``pairs`` (user_id, movie_id, any other columns): the input
        columns plus ``prediction`` and ``personalised`` (false where the bias fallback
        answered for an unknown user or movie). Needs ``PREDICT``."""
        self._need(Ability.PREDICT, "predict ratings")
        return self.fitted.predict(pairs)

    def recommend(self, users: DataFrame | Iterable[int], n: int = 10) -> DataFrame:
        """Top-``n`` movies for ``users`` (a DataFrame with user_id, or ids), movies they
        rated excluded: user_id, rank, movie_id, score, model, and title when the model
        has ``movies``. Users the model does not know get no rows. Needs ``TOP_N``."""
        self._need(Ability.TOP_N, "rank movies")
        spark = self.fitted_spark()
        wanted = _ids(spark, users, USER_ID)
        inputs = self.fitted.ranking_inputs()
        inputs = dataclasses.replace(inputs, users=inputs.users.join(wanted, USER_ID, "left_semi"))
        rated = self.ratings if self.ratings is not None else spark.createDataFrame(
            [], f"{USER_ID} long, {MOVIE_ID} long, {RATING} double"
        )
        rated = rated.select(USER_ID, MOVIE_ID, RATING).join(wanted, USER_ID, "left_semi")
        lists = top_n(inputs, rated, n=n, model=self.name)
        return lists if self.movies is None else with_titles(lists, self.movies)

    def similar(self, movies: DataFrame | Iterable[int], n: int = 10) -> DataFrame:
        """The ``n`` movies most similar to each of ``movies`` (a DataFrame with movie_id,
        or ids) by cosine of the item factors: movie_id, rank, similar_movie_id,
        similarity, and title, similar_title when the model has ``movies``. Needs
        ``FACTORS``. Action: collects the item factors (as the segment job does)."""
        self._need(Ability.FACTORS, "compare movies (it has no item factors)")
        wanted = _ids(self.fitted_spark(), movies, MOVIE_ID)
        found = similar_movies.similar_movies(self.fitted.item_factors, k=n).join(
            wanted, MOVIE_ID, "left_semi"
        )
        return found if self.movies is None else similar_movies.with_titles(found, self.movies)

    def fitted_spark(self) -> SparkSession:
        """The active SparkSession (the one the model was loaded with)."""
        spark = SparkSession.getActiveSession()
        if spark is None:
            raise ModelError("no active SparkSession: build one before using the model")
        return spark


def load_model(
    spark: SparkSession, path: str, *, ratings: DataFrame | None = None,
    movies: DataFrame | None = None,
) -> Model:
    """The saved model in folder ``path`` (a train run's ``models/<name>/``), through the
    spec its ``model.json`` names; ``ratings`` and ``movies`` as :class:`Model`. Raises
    ModelError for a missing or incomplete folder or a model that cannot be loaded."""
    name = runs.read_model_meta(spark, path)[runs.NAME_KEY]
    spec = registry.spec(name)
    if not spec.can(Ability.SAVE):
        raise ModelError(f"{path} names model {name!r}, which cannot be saved and re-loaded")
    return Model(spec, spec.load(spark, path), ratings=ratings, movies=movies)


@dataclasses.dataclass
class Run:
    """A published train run: its folder, config and metrics (pandas)."""

    spark: SparkSession
    run_dir: str
    cfg: Config
    metrics: pd.DataFrame

    @property
    def run_id(self) -> str:
        return runs.run_id_of(self.run_dir)

    def leaderboard(self, sort_by: str = "rmse", kind: str | None = None) -> pd.DataFrame:
        """The run's leaderboard (:func:`recspark.evaluation.leaderboard.leaderboard`) on
        split ``kind`` (default: the run's main split), sorted by ``sort_by``."""
        return leaderboard(
            self.metrics, kind=kind or self.cfg.split.kind, k=self.cfg.recommend.k,
            sort_by=sort_by,
        )

    def models(self) -> list[str]:
        """Names of the saved models of this run."""
        return storage.list_dir(self.spark, f"{self.run_dir}/{runs.MODELS_DIR}")

    def model(self, name: str) -> Model:
        """The saved model ``name`` of this run, with the run's ingested ratings (excluded
        from its lists) and movie titles."""
        ingest = expand(self.cfg.ingest_dir())
        has_data = storage.exists(self.spark, ingest)
        return load_model(
            self.spark, runs.model_dir(self.run_dir, name),
            ratings=read_ratings(self.spark, ingest) if has_data else None,
            movies=read_movies(self.spark, ingest) if has_data else None,
        )


def open_run(spark: SparkSession, where: str, run_id: str = "") -> Run:
    """The train run ``<where>/<run_id>`` (``where``: a ``train.output_dir``), the latest
    published one there without ``run_id``, or ``where`` itself when it is a run folder.
    Raises DataNotFoundError when there is none."""
    where = expand(where).rstrip("/")
    if run_id:
        run_dir = f"{where}/{run_id}"
    elif storage.exists(spark, f"{where}/{runs.METRICS_DIR}"):
        run_dir = where
    else:
        published = runs.published_runs(spark, where)
        if not published:
            raise DataNotFoundError(f"no published train run under {where}: run `recspark train`")
        run_dir = f"{where}/{published[-1]}"
    if not storage.exists(spark, f"{run_dir}/{runs.METRICS_DIR}"):
        raise DataNotFoundError(f"{run_dir} is not a published train run (no metrics/)")
    cfg = runs.read_run_config(spark, run_dir) or default_config()
    metrics = spark.read.parquet(f"{run_dir}/{runs.METRICS_DIR}").toPandas()
    return Run(spark, run_dir, cfg, metrics)


def _ids(spark: SparkSession, given: DataFrame | Iterable[int], column: str) -> DataFrame:
    """``given`` as a one-column DataFrame of distinct long ids named ``column``."""
    if isinstance(given, DataFrame):
        return given.select(F.col(column).cast("long").alias(column)).distinct()
    return spark.createDataFrame([(int(i),) for i in given], f"{column} long").distinct()


__all__ = ["Model", "Run", "load_model", "open_run"]
