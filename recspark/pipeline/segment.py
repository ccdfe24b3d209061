"""The segment pipeline: factor model → user segments, profiles, ablation, similar movies, plots.

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
  coloured by first listed genre), each of at most ``segment.plot_points`` sampled points
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
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, config_from_dict, expand, to_toml
from recspark.errors import DataNotFoundError
from recspark.evaluate import metrics_frame
from recspark.io import storage
from recspark.io.ingested import read_movies, read_ratings
from recspark.log import stage
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
from recspark.models.factor import FactorModel
from recspark.models import registry
from recspark.models.contract import Ability
from recspark.plots import line_chart, save_figure
from recspark.schema import (
    BIAS,
    FACTORS,
    GENRE,
    GENRES,
    K,
    MOVIE_ID,
    RATING,
    SEGMENT,
    SILHOUETTE,
    USER_ID,
)
from recspark.seeds import derive_seed
from recspark.similar import similar_movies, with_min_support, with_titles
from recspark.split import random_split, split_ratings

_logger = logging.getLogger(__name__)

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
        m = self.metrics
        hit = m[(m["model"] == model) & (m["split"] == split) & (m["metric"] == metric)]
        if hit.empty:
            raise KeyError(f"no {metric} for {model} on {split}")
        return float(hit["value"].iloc[0])

    def segmentation_helps(self) -> bool:
        """True when the blended model has a lower test RMSE than the model alone."""
        return self.value(f"{self.model}+segment", "test", "rmse") < self.value(
            self.model, "test", "rmse"
        )


def _check(cfg: Config) -> None:
    registry.check_config(cfg)


def find_run(spark: SparkSession, cfg: Config) -> str | None:
    """The train run folder holding ``models/<segment.model>/``: ``segment.run_id`` if set,
    else the latest (largest id) run that has it; None when there is none."""
    runs = expand(cfg.train.output_dir).rstrip("/")
    name = cfg.segment.model
    if cfg.segment.run_id:
        return f"{runs}/{cfg.segment.run_id}"
    candidates = [r for r in storage.list_dir(spark, runs) if "._" not in r and not r.startswith(".")]
    for run_id in sorted(candidates, reverse=True):
        if storage.exists(spark, f"{runs}/{run_id}/models/{name}/model.json"):
            return f"{runs}/{run_id}"
    return None


def _run_config(spark: SparkSession, run_dir: str, cfg: Config) -> Config:
    """The saved config of a train run (for its seed and split), else ``cfg``."""
    path = f"{run_dir}/config.toml"
    if not storage.exists(spark, path):
        _logger.warning("%s has no config.toml: assuming it used this run's seed and split", run_dir)
        return cfg
    import tomllib

    return config_from_dict(tomllib.loads(storage.read_text(spark, path)))


def run_segment(spark: SparkSession, cfg: Config, args: object | None = None) -> SegmentResult:
    """Segment users and write the output folder described in the module docstring.

    Reads the ingested ratings and movies of ``cfg.data.dataset``. Actions: the model fit (or
    load), one k-means fit and evaluation per k tried, the profile, ablation and similar-movie
    writes, and two small samples collected for the plots.
    """
    registry.check_config(cfg)
    sc = cfg.segment
    name = sc.model
    ingest_dir = expand(cfg.ingest_dir())
    ratings = read_ratings(spark, ingest_dir)
    movies = read_movies(spark, ingest_dir)

    saved = registry.spec(name).can(Ability.SAVE)
    run_dir = None if sc.source == "fit" or not saved else find_run(spark, cfg)
    if run_dir is None and sc.source == "run":
        raise DataNotFoundError(
            f"no train run with models/{name}/ under {expand(cfg.train.output_dir)}"
            + (f" (segment.run_id = {sc.run_id!r})" if sc.run_id else "")
            + f": run jobs/train.py with train.models including {name}, or set segment.source=fit"
        )
    if run_dir is not None and not storage.exists(spark, f"{run_dir}/models/{name}"):
        raise DataNotFoundError(
            f"train run {run_dir} has no models/{name}/: train it there, pick another "
            "segment.run_id, or set segment.source=fit"
        )
    split_cfg = _run_config(spark, run_dir, cfg) if run_dir else cfg
    run_id = run_dir.rstrip("/").rsplit("/", 1)[-1] if run_dir else _new_run_id()
    out_dir = f"{expand(sc.output_dir).rstrip('/')}/{run_id}"

    with stage("segment: split", spark):
        train, test = split_ratings(
            ratings, cfg=split_cfg.split, seed=derive_seed(split_cfg.seed, "split")
        )
        vfrac = sc.validation_fraction
        if run_dir is not None:
            if split_cfg.train.validation_fraction > 0:
                vfrac = split_cfg.train.validation_fraction
            else:
                _logger.warning(
                    "run %s was trained without a validation split, so the model has seen the "
                    "ratings the blend weight is chosen on; the test figures stay honest, the "
                    "weight may not be optimal. Re-train with train.validation_fraction > 0.",
                    run_id,
                )
        fit_train, validation = random_split(
            train, test_fraction=vfrac, seed=derive_seed(split_cfg.seed, "validation")
        )
        fit_train, validation, test = fit_train.cache(), validation.cache(), test.cache()

    lo, hi = cfg.train.rating_min, cfg.train.rating_max
    with stage(f"segment: {'load' if run_dir else 'fit'} {name}", spark):
        if run_dir is not None:
            model = FactorModel.load(spark, f"{run_dir}/models/{name}")
            user_bias = model.user_factors.select(USER_ID, BIAS)
            lo, hi = model.lo, model.hi
        else:
            bias = fit_bias(fit_train, cfg=cfg.bias, lo=lo, hi=hi)
            model = registry.fit(name, fit_train, cfg=cfg, bias=bias, validation=validation)
            factors_have_bias = BIAS in model.user_factors.columns
            user_bias = (model.user_factors if factors_have_bias else bias.user_bias).select(
                USER_ID, BIAS
            )
    source = "run" if run_dir else "fit"

    with storage.staged(spark, out_dir) as tmp:
        # ---- segments
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
            segments.write.parquet(f"{tmp}/segments")
            spark.createDataFrame(curve).coalesce(1).write.parquet(f"{tmp}/silhouette")
            line_chart(
                spark, curve, x=K, ys=[SILHOUETTE], path=f"{tmp}/silhouette.png",
                title=f"k-means on {name} user factors: silhouette by k (chosen k = {k})",
                xlabel="k (segments)", ylabel="mean silhouette",
            )
        sizes = segments.groupBy(SEGMENT).count().toPandas().sort_values(SEGMENT)
        ratio = size_ratio(sizes["count"].tolist(), max_ratio=sc.max_size_ratio)

        # ---- profiles
        with stage("segment: profiles", spark):
            segment_profiles(
                ratings, segments=segments, movies=movies, user_bias=user_bias,
                min_support=sc.min_support, top_genres=sc.top_genres, top_movies=sc.top_movies,
            ).coalesce(1).write.parquet(f"{tmp}/profiles")
            profiles = spark.read.parquet(f"{tmp}/profiles").orderBy(SEGMENT).toPandas()

        # ---- ablation
        with stage("segment: ablation", spark):
            cols = [USER_ID, MOVIE_ID, RATING]
            residuals = segment_residuals(
                model.predict(fit_train.select(*cols)), segments=segments,
                shrinkage=sc.residual_shrinkage,
            ).cache()
            val = annotate_residuals(
                model.predict(validation.select(*cols)), segments=segments, residuals=residuals
            )
            wcurve = blend_curve(val, weights=sc.blend_weights, lo=lo, hi=hi)
            best = int(wcurve["rmse"].idxmin())
            weight = float(wcurve["weight"].iloc[best])
            spark.createDataFrame(wcurve).coalesce(1).write.parquet(f"{tmp}/blend_curve")
            line_chart(
                spark, wcurve, x="weight", ys=["rmse"], path=f"{tmp}/blend_curve.png",
                title=f"{name} + segment residuals: validation RMSE by blend weight (w = {weight})",
                xlabel="blend weight w", ylabel="validation RMSE",
            )
            tst = annotate_residuals(
                model.predict(test.select(*cols)), segments=segments, residuals=residuals
            )
            tcurve = blend_curve(tst, weights=[0.0, weight], lo=lo, hi=hi)
            w0 = wcurve[wcurve["weight"] == 0.0]
            base_val = w0.iloc[0] if not w0.empty else blend_curve(
                val, weights=[0.0], lo=lo, hi=hi
            ).iloc[0]
            frames = [
                metrics_frame(spark, run_id=run_id, model=name, split="validation",
                              values={"rmse": base_val["rmse"], "mae": base_val["mae"]}),
                metrics_frame(spark, run_id=run_id, model=f"{name}+segment", split="validation",
                              values={"rmse": wcurve["rmse"].iloc[best], "mae": wcurve["mae"].iloc[best],
                                      "blend_weight": weight}),
                metrics_frame(spark, run_id=run_id, model=name, split="test",
                              values={"rmse": tcurve["rmse"].iloc[0], "mae": tcurve["mae"].iloc[0]}),
                metrics_frame(spark, run_id=run_id, model=f"{name}+segment", split="test",
                              values={"rmse": tcurve["rmse"].iloc[1], "mae": tcurve["mae"].iloc[1],
                                      "blend_weight": weight}),
                metrics_frame(spark, run_id=run_id, model=f"{name}+segment", split="segments",
                              values={"k": k, "silhouette": float(curve.loc[curve[K] == k, SILHOUETTE].iloc[0]),
                                      "size_ratio": ratio}),
            ]
            metrics = frames[0]
            for f in frames[1:]:
                metrics = metrics.unionByName(f)
            metrics.coalesce(1).write.parquet(f"{tmp}/metrics")
            residuals.unpersist()
        delta = tcurve["rmse"].iloc[1] - tcurve["rmse"].iloc[0]
        _logger.info(
            "ablation on test: %s RMSE %.4f, + segments (w=%.2f) %.4f (%+.4f): segmentation %s",
            name, tcurve["rmse"].iloc[0], weight, tcurve["rmse"].iloc[1], delta,
            "helps" if delta < 0 else "does not help",
        )

        # ---- similar movies
        with stage("segment: similar movies", spark):
            items = with_min_support(model.item_factors, fit_train, sc.similar_min_ratings)
            similar = similar_movies(items, k=sc.similar_k, block=sc.similar_block)
            with_titles(similar, movies).write.parquet(f"{tmp}/similar_movies")

        # ---- pictures
        with stage("segment: latent-space pictures", spark):
            n_users = int(sizes["count"].sum())
            users = _sample(
                model.user_factors.join(segments, USER_ID).select(FACTORS, SEGMENT),
                n=n_users, points=sc.plot_points, seed=derive_seed(cfg.seed, "segment", "plot_users"),
            )
            _scatter(spark, users, label=SEGMENT, path=f"{tmp}/users_pca.png",
                     title=f"{name} user factors, PCA, coloured by segment", n_total=n_users)
            items = model.item_factors.join(movies.select(MOVIE_ID, GENRES), MOVIE_ID, "left").select(
                FACTORS, F.coalesce(F.split(F.col(GENRES), r"\|")[0], F.lit("?")).alias(GENRE)
            )
            n_items = items.count()
            items_pdf = _sample(items, n=n_items, points=sc.plot_points,
                                seed=derive_seed(cfg.seed, "segment", "plot_movies"))
            _scatter(spark, items_pdf, label=GENRE, path=f"{tmp}/movies_pca.png",
                     title=f"{name} movie factors, PCA, coloured by first genre", n_total=n_items,
                     max_groups=10)
        storage.write_text(spark, f"{tmp}/config.toml", to_toml(cfg))

    vectors.unpersist()
    segments.unpersist()
    for df in (fit_train, validation, test):
        df.unpersist()
    result = SegmentResult(
        run_id=run_id, output_dir=out_dir, model=name, source=source, k=k, blend_weight=weight,
        metrics=spark.read.parquet(f"{out_dir}/metrics").toPandas(), profiles=profiles,
    )
    _logger.info("segment run %s (%s from %s, k=%d) written to %s", run_id, name, source, k, out_dir)
    return result


def _new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _sample(df: DataFrame, *, n: int, points: int, seed: int) -> pd.DataFrame:
    """At most ``points`` rows of ``df`` (of ``n`` rows), a seeded Bernoulli sample."""
    if n > points:
        df = df.sample(withReplacement=False, fraction=min(1.0, 1.05 * points / n), seed=seed)
    return df.limit(points).toPandas()


def _scatter(
    spark: SparkSession,
    pdf: pd.DataFrame,
    *,
    label: str,
    path: str,
    title: str,
    n_total: int,
    max_groups: int = 20,
) -> None:
    """PCA of the ``factors`` column to 2-D, one colour per ``label`` value (the ``max_groups``
    most frequent; the rest are "other"), saved as PNG."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    if len(pdf) >= 2:
        coords, ratio = pca_2d(np.vstack(pdf[FACTORS].to_numpy()).astype(float))
        labels = pdf[label].astype(str)
        keep = labels.value_counts().index[:max_groups]
        labels = labels.where(labels.isin(keep), "other")
        for value in sorted(labels.unique(), key=lambda v: (v == "other", v)):
            hit = (labels == value).to_numpy()
            colour = {"color": "lightgrey"} if value == "other" else {}
            ax.scatter(coords[hit, 0], coords[hit, 1], s=4, alpha=0.5,
                       label=f"{value} ({hit.sum()})", **colour)
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% of variance)")
        ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set_title(f"{title}\n{len(pdf)} of {n_total} points")
    ax.grid(True, alpha=0.3)
    save_figure(spark, fig, path)
