"""The segment pipeline: a FACTORS model → user segments, profiles, ablation, similar movies, plots.

One run writes ``<segment.output_dir>/<run_id>/`` (published atomically), where run_id is the
train run the model came from, or a new UTC time stamp when the model was fitted on the fly:

- ``segments/`` Parquet: user_id, segment
- ``silhouette/`` Parquet (k, silhouette) and ``silhouette.png`` (one point when k is fixed)
- ``profiles/`` Parquet: see :func:`recspark.models.cluster.segment_profiles`
- ``blend_curve/`` Parquet (weight, rmse, mae on validation) and ``blend_curve.png``
- ``metrics/`` Parquet (run_id, model, split, metric, value): the ablation — RMSE and MAE of
  the model alone (``<model>``) and blended with its segment residuals (``<model>+segment``)
  on the validation and test ratings, plus k, silhouette, blend_weight and size_ratio
- ``similar_movies/`` Parquet: movie_id, rank, similar_movie_id, similarity, title, similar_title
- ``users_pca.png`` (user factors coloured by segment) and ``movies_pca.png`` (movie factors
  coloured by genre group), each of at most ``segment.plot_points`` sampled points
- ``config.toml``: the resolved configuration

Honest ablation. The ratings are split exactly as the train pipeline splits them (same seeds):
train/test by ``split``, then a validation share carved from train. The model and the segment
residuals are fitted on train-minus-validation; the blend weight w is the one of
``segment.blend_weights`` with the least validation RMSE; the test set is scored once with
w = 0 (model alone) and the chosen w. A model loaded from a run whose
``train.validation_fraction`` was 0 has seen the validation ratings: a warning says so (w may
then be too small or large, the test figures are still untouched by any choice).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from recspark.config import Config, expand
from recspark.errors import DataNotFoundError
from recspark.evaluation.rating import metric_value, metrics_frame, union_all
from recspark.io import runs, storage
from recspark.io.ingested import read_movies, read_ratings
from recspark.log import stage
from recspark.models import registry
from recspark.models.bias import fit_bias
from recspark.models.cluster import (
    annotate_residuals,
    assign_segments,
    blend_curve,
    choose_k,
    fit_kmeans,
    pca_2d,
    segment_profiles,
    segment_residuals,
    silhouette,
    size_ratio,
    user_vectors,
)
from recspark.models.contract import Ability, ModelSpec, require
from recspark.pipeline.sizes import config_for_data
from recspark.plots import GENRE_GROUPS, genre_group, line_chart, pca_scatter
from recspark.schema import (
    BIAS,
    BLEND_WEIGHT,
    COUNT,
    FACTORS,
    GENRE,
    GENRES,
    K,
    MAE,
    MOVIE_ID,
    RATING,
    RMSE,
    SEGMENT,
    SILHOUETTE,
    SIZE_RATIO,
    USER_ID,
    WEIGHT,
)
from recspark.seeds import derive_seed
from recspark.serving.similar import similar_movies, with_min_support, with_titles
from recspark.split import random_split, split_ratings

_logger = logging.getLogger(__name__)

#: Values of the ablation table's split column.
VALIDATION, TEST, SEGMENTS = "validation", "test", "segments"
_SEGMENTED = "{}+segment"


@dataclasses.dataclass(frozen=True)
class SegmentResult:
    """What a segment run wrote, with its small summaries as pandas frames."""

    run_id: str
    output_dir: str
    model: str
    source: str  # "run" or "fit"
    k: int
    blend_weight: float
    metrics: pd.DataFrame
    profiles: pd.DataFrame

    def value(self, model: str, split: str, metric: str) -> float:
        """One figure of the ablation table."""
        return metric_value(self.metrics, model=model, split=split, metric=metric)

    def segmentation_helps(self) -> bool:
        """True when the blended model has a lower test RMSE than the model alone."""
        return self.value(_SEGMENTED.format(self.model), TEST, RMSE) < self.value(
            self.model, TEST, RMSE
        )


@dataclasses.dataclass(frozen=True)
class _Parts:
    """The ratings the ablation uses: train minus validation (the model's and the
    residuals' fit), validation (the blend weight) and test; cached."""

    fit_train: DataFrame
    validation: DataFrame
    test: DataFrame

    def unpersist(self) -> None:
        for df in (self.fit_train, self.validation, self.test):
            df.unpersist()


def find_run(spark: SparkSession, cfg: Config) -> str | None:
    """The train run folder to load ``segment.model`` from: ``segment.run_id`` if set, else
    the latest published run holding it (:func:`recspark.io.runs.find_run`); None if none."""
    return runs.find_run(spark, cfg, model=cfg.segment.model, run_id=cfg.segment.run_id)


def run_segment(spark: SparkSession, cfg: Config, args: object | None = None) -> SegmentResult:
    """Segment users and write the output folder described in the module docstring.

    Reads the ingested ratings and movies of ``cfg.data.dataset``. The model must have
    ``FACTORS`` (checked with the config) and ``PREDICT`` (the ablation predicts). Actions:
    the model fit (or load), one k-means fit and evaluation per k tried, the profile,
    ablation and similar-movie writes, and two small samples collected for the plots.
    """
    registry.check_config(cfg)
    cfg = config_for_data(spark, cfg, models=[cfg.segment.model], segment=True)
    sc = cfg.segment
    spec = registry.spec(sc.model)
    require(spec, Ability.PREDICT, setting="segment.model",
            choices=[n for n in registry.with_ability(Ability.FACTORS)
                     if registry.spec(n).can(Ability.PREDICT)])
    ingest_dir = expand(cfg.ingest_dir())
    ratings, movies = read_ratings(spark, ingest_dir), read_movies(spark, ingest_dir)
    run_dir = _locate_run(spark, cfg, spec)
    run_cfg = _run_config(spark, run_dir, cfg) if run_dir else cfg
    run_id = runs.run_id_of(run_dir) if run_dir else runs.new_run_id()
    root = expand(sc.output_dir).rstrip("/")
    out_dir = f"{root}/{run_id}"
    storage.clean_scratch(spark, root)
    parts = _split(spark, cfg, run_cfg, ratings, run_id=run_id, from_run=run_dir is not None)
    scale = run_cfg.train.rating_min, run_cfg.train.rating_max
    with storage.checkpoints(spark, cfg.spark.checkpoint_dir, work_dir=root, name=run_id):
        model, user_bias = _model(spark, cfg, spec, run_dir, parts)
        with storage.staged(spark, out_dir) as tmp:
            segments, k, curve, sizes = _segments(spark, cfg, model, tmp)
            profiles = _profiles(spark, cfg, ratings, movies, segments, user_bias, tmp)
            weight = _ablation(spark, cfg, model, parts, segments, scale, run_id=run_id, out=tmp,
                               k=k, curve=curve, sizes=sizes)
            _similar(spark, cfg, model, parts.fit_train, movies, tmp)
            _pictures(spark, cfg, model, segments, movies, int(sizes[COUNT].sum()), tmp)
            runs.write_run_config(spark, tmp, cfg)
    segments.unpersist()
    parts.unpersist()
    source = "run" if run_dir else "fit"
    with stage("segment: read metrics back", spark):
        metrics = spark.read.parquet(f"{out_dir}/{runs.METRICS_DIR}").toPandas()
    result = SegmentResult(
        run_id=run_id, output_dir=out_dir, model=sc.model, source=source, k=k,
        blend_weight=weight, metrics=metrics, profiles=profiles,
    )
    _logger.info("segment run %s (%s from %s, k=%d) written to %s", run_id, sc.model, source, k, out_dir)
    return result


def _locate_run(spark: SparkSession, cfg: Config, spec: ModelSpec) -> str | None:
    """The run folder to load the model from, or None to fit it (``segment.source``; a
    model that cannot be saved is always fitted). Raises DataNotFoundError when
    ``source = run`` finds none, or the named run lacks the model."""
    sc = cfg.segment
    name = sc.model
    run_dir = None if sc.source == "fit" or not spec.can(Ability.SAVE) else find_run(spark, cfg)
    if run_dir is None and sc.source == "run":
        raise DataNotFoundError(
            f"no train run with models/{name}/ under {expand(cfg.train.output_dir)}"
            + (f" (segment.run_id = {sc.run_id!r})" if sc.run_id else "")
            + f": run jobs/train.py with train.models including {name}, or set segment.source=fit"
        )
    if run_dir is not None and not storage.exists(spark, runs.model_dir(run_dir, name)):
        raise DataNotFoundError(
            f"train run {run_dir} has no models/{name}/: train it there, pick another "
            "segment.run_id, or set segment.source=fit"
        )
    return run_dir


def _run_config(spark: SparkSession, run_dir: str, cfg: Config) -> Config:
    """The saved config of a train run (for its seed, split and rating scale), else ``cfg``."""
    saved = runs.read_run_config(spark, run_dir)
    if saved is None:
        _logger.warning("%s has no config.toml: assuming it used this run's seed and split", run_dir)
        return cfg
    return saved


def _split(
    spark: SparkSession, cfg: Config, run_cfg: Config, ratings: DataFrame, *, run_id: str,
    from_run: bool,
) -> _Parts:
    """The ratings split exactly as the train run split them (``run_cfg``'s seed and
    split), then the validation share carved from train."""
    with stage("segment: split", spark):
        train, test = split_ratings(
            ratings, cfg=run_cfg.split, seed=derive_seed(run_cfg.seed, "split")
        )
        vfrac = cfg.segment.validation_fraction
        if from_run:
            if run_cfg.train.validation_fraction > 0:
                vfrac = run_cfg.train.validation_fraction
            else:
                _logger.warning(
                    "run %s was trained without a validation split, so the model has seen the "
                    "ratings the blend weight is chosen on; the test figures stay honest, the "
                    "weight may not be optimal. Re-train with train.validation_fraction > 0.",
                    run_id,
                )
        fit_train, validation = random_split(
            train, test_fraction=vfrac, seed=derive_seed(run_cfg.seed, "validation")
        )
        return _Parts(fit_train.cache(), validation.cache(), test.cache())


def _model(
    spark: SparkSession, cfg: Config, spec: ModelSpec, run_dir: str | None, parts: _Parts
) -> tuple[Any, DataFrame]:
    """(model, user biases user_id, bias): loaded with the spec from ``run_dir``, or fitted
    on the fit part. The biases are the model's own when its user factors carry them, else
    the bias model's on the fit part."""
    name = spec.name
    with stage(f"segment: {'load' if run_dir else 'fit'} {name}", spark):
        bias = None
        if run_dir is not None:
            model = spec.load(spark, runs.model_dir(run_dir, name))
        else:
            bias = fit_bias(parts.fit_train, cfg=cfg.bias, lo=cfg.train.rating_min,
                            hi=cfg.train.rating_max)
            model = registry.fit(
                name, parts.fit_train, cfg=cfg, bias=bias, validation=parts.validation
            )
        if BIAS in model.user_factors.columns:
            return model, model.user_factors.select(USER_ID, BIAS)
        if bias is None:
            bias = fit_bias(parts.fit_train, cfg=cfg.bias, lo=cfg.train.rating_min,
                            hi=cfg.train.rating_max)
        return model, bias.user_bias.select(USER_ID, BIAS)


def _segments(
    spark: SparkSession, cfg: Config, model: Any, out: str
) -> tuple[DataFrame, int, pd.DataFrame, pd.DataFrame]:
    """K-means on the user factors: (segments user_id, segment, cached; k; silhouette curve
    k, silhouette; segment sizes segment, count). Writes ``segments/``, ``silhouette/`` and
    ``silhouette.png``."""
    sc = cfg.segment
    vectors = user_vectors(model.user_factors).cache()
    kseed = derive_seed(cfg.seed, "segment", "kmeans")
    with stage("segment: k-means", spark):
        if sc.k > 0:
            km = fit_kmeans(vectors, k=sc.k, seed=kseed, max_iter=sc.max_iter)
            curve = pd.DataFrame({K: [sc.k], SILHOUETTE: [silhouette(km, vectors)]})
        else:
            km, curve = choose_k(
                vectors, k_min=sc.k_min, k_max=sc.k_max, seed=kseed, max_iter=sc.max_iter
            )
        k = km.getK()
        segments = assign_segments(km, vectors).cache()
        segments.write.parquet(f"{out}/segments")
        spark.createDataFrame(curve).coalesce(1).write.parquet(f"{out}/silhouette")
        line_chart(
            spark, curve, x=K, ys=[SILHOUETTE], path=f"{out}/silhouette.png",
            title=f"k-means on {sc.model} user factors: silhouette by k (chosen k = {k})",
            xlabel="k (segments)", ylabel="mean silhouette",
        )
    with stage("segment: sizes", spark):
        sizes = segments.groupBy(SEGMENT).count().toPandas().sort_values(SEGMENT)
    vectors.unpersist()
    return segments, k, curve, sizes


def _profiles(
    spark: SparkSession, cfg: Config, ratings: DataFrame, movies: DataFrame,
    segments: DataFrame, user_bias: DataFrame, out: str,
) -> pd.DataFrame:
    """Write ``profiles/`` (:func:`recspark.models.cluster.segment_profiles`); return it."""
    sc = cfg.segment
    with stage("segment: profiles", spark):
        segment_profiles(
            ratings, segments=segments, movies=movies, user_bias=user_bias,
            min_support=sc.min_support, top_genres=sc.top_genres, top_movies=sc.top_movies,
        ).coalesce(1).write.parquet(f"{out}/profiles")
        return spark.read.parquet(f"{out}/profiles").orderBy(SEGMENT).toPandas()


def _ablation(
    spark: SparkSession, cfg: Config, model: Any, parts: _Parts, segments: DataFrame,
    scale: tuple[float, float], *, run_id: str, out: str, k: int, curve: pd.DataFrame,
    sizes: pd.DataFrame,
) -> float:
    """The honest ablation (module docstring): writes ``blend_curve/``, its PNG and
    ``metrics/``; returns the blend weight chosen on validation."""
    sc, name, (lo, hi) = cfg.segment, cfg.segment.model, scale
    with stage("segment: ablation", spark):
        cols = [USER_ID, MOVIE_ID, RATING]
        residuals = segment_residuals(
            model.predict(parts.fit_train.select(*cols)), segments=segments,
            shrinkage=sc.residual_shrinkage,
        ).cache()

        def annotated(data: DataFrame) -> DataFrame:
            return annotate_residuals(model.predict(data.select(*cols)), segments=segments,
                                      residuals=residuals)

        val = annotated(parts.validation)
        wcurve = blend_curve(val, weights=sc.blend_weights, lo=lo, hi=hi)
        best = int(wcurve[RMSE].idxmin())
        weight = float(wcurve[WEIGHT].iloc[best])
        spark.createDataFrame(wcurve).coalesce(1).write.parquet(f"{out}/blend_curve")
        line_chart(
            spark, wcurve, x=WEIGHT, ys=[RMSE], path=f"{out}/blend_curve.png",
            title=f"{name} + segment residuals: validation RMSE by blend weight (w = {weight})",
            xlabel="blend weight w", ylabel="validation RMSE",
        )
        tcurve = blend_curve(annotated(parts.test), weights=[0.0, weight], lo=lo, hi=hi)
        w0 = wcurve[wcurve[WEIGHT] == 0.0]
        base_val = w0.iloc[0] if not w0.empty else blend_curve(
            val, weights=[0.0], lo=lo, hi=hi
        ).iloc[0]
        seg = _SEGMENTED.format(name)
        rows = [
            (name, VALIDATION, {RMSE: base_val[RMSE], MAE: base_val[MAE]}),
            (seg, VALIDATION, {RMSE: wcurve[RMSE].iloc[best], MAE: wcurve[MAE].iloc[best],
                               BLEND_WEIGHT: weight}),
            (name, TEST, {RMSE: tcurve[RMSE].iloc[0], MAE: tcurve[MAE].iloc[0]}),
            (seg, TEST, {RMSE: tcurve[RMSE].iloc[1], MAE: tcurve[MAE].iloc[1], BLEND_WEIGHT: weight}),
            (seg, SEGMENTS, {K: k, SILHOUETTE: float(curve.loc[curve[K] == k, SILHOUETTE].iloc[0]),
                             SIZE_RATIO: size_ratio(sizes[COUNT].tolist(), max_ratio=sc.max_size_ratio)}),
        ]
        union_all(
            [metrics_frame(spark, run_id=run_id, model=m, split=s, values=v) for m, s, v in rows]
        ).coalesce(1).write.parquet(f"{out}/{runs.METRICS_DIR}")
        residuals.unpersist()
    delta = tcurve[RMSE].iloc[1] - tcurve[RMSE].iloc[0]
    _logger.info(
        "ablation on test: %s RMSE %.4f, + segments (w=%.2f) %.4f (%+.4f): segmentation %s",
        name, tcurve[RMSE].iloc[0], weight, tcurve[RMSE].iloc[1], delta,
        "helps" if delta < 0 else "does not help",
    )
    return weight


def _similar(
    spark: SparkSession, cfg: Config, model: Any, fit_train: DataFrame, movies: DataFrame, out: str
) -> None:
    """Write ``similar_movies/``: cosine neighbours among movies with enough training ratings."""
    sc = cfg.segment
    with stage("segment: similar movies", spark):
        items = with_min_support(model.item_factors, fit_train, sc.similar_min_ratings)
        similar = similar_movies(items, k=sc.similar_k, block=sc.similar_block)
        with_titles(similar, movies).write.parquet(f"{out}/similar_movies")


def _pictures(
    spark: SparkSession, cfg: Config, model: Any, segments: DataFrame, movies: DataFrame,
    n_users: int, out: str,
) -> None:
    """Write ``users_pca.png`` (user factors by segment) and ``movies_pca.png`` (movie
    factors by genre group, :func:`recspark.plots.genre_group`), each of a seeded sample of at most ``segment.plot_points``."""
    sc, name = cfg.segment, cfg.segment.model
    with stage("segment: latent-space pictures", spark):
        users = _sample(
            model.user_factors.join(segments, USER_ID).select(FACTORS, SEGMENT),
            n=n_users, points=sc.plot_points, seed=derive_seed(cfg.seed, "segment", "plot_users"),
        )
        _scatter(spark, users, label=SEGMENT, path=f"{out}/users_pca.png",
                 title=f"{name} user factors, PCA, coloured by segment", n_total=n_users)
        items = model.item_factors.join(movies.select(MOVIE_ID, GENRES), MOVIE_ID, "left").select(
            FACTORS, GENRES
        )
        n_items = items.count()
        items_pdf = _sample(items, n=n_items, points=sc.plot_points,
                            seed=derive_seed(cfg.seed, "segment", "plot_movies"))
        items_pdf[GENRE] = items_pdf[GENRES].map(genre_group)
        _scatter(spark, items_pdf, label=GENRE, path=f"{out}/movies_pca.png",
                 title=f"{name} movie factors, PCA, coloured by genre group", n_total=n_items,
                 max_groups=len(GENRE_GROUPS) + 1)


def _sample(df: DataFrame, *, n: int, points: int, seed: int) -> pd.DataFrame:
    """At most ``points`` rows of ``df`` (of ``n`` rows), a seeded Bernoulli sample."""
    if n > points:
        df = df.sample(withReplacement=False, fraction=min(1.0, 1.05 * points / n), seed=seed)
    return df.limit(points).toPandas()


def _scatter(
    spark: SparkSession, pdf: pd.DataFrame, *, label: str, path: str, title: str,
    n_total: int, max_groups: int = 20,
) -> None:
    """PCA of the ``factors`` column of ``pdf`` to 2-D, coloured by ``label`` (PNG)."""
    if len(pdf) >= 2:
        coords, ratio = pca_2d(np.vstack(pdf[FACTORS].to_numpy()).astype(float))
    else:
        coords, ratio = np.zeros((len(pdf), 2)), np.zeros(2)
    pca_scatter(spark, coords, ratio, pdf[label], path=path, title=title, n_total=n_total,
                max_groups=max_groups)
