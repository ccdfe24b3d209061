"""Typed, frozen, range-checked configuration parsed from TOML files plus ``--set`` overrides.

A config is built from ``conf/base.toml``, then any overlay files in order, then
``--set section.key=value`` overrides. Every section is a frozen pydantic model
(:class:`Section`) that rejects unknown keys and checks each value's type and range, so
``--set als.rank=-3`` or a typo fails here, in about a second, before any SparkSession
exists. The error (:class:`~recspark.errors.ConfigError`) names every bad key with what
was wrong and the value given.

This module keeps the parser and the sections of the pipeline stages. Each model's section
lives beside the model (``recspark/models/<model>``) and reaches the root :class:`Config`
through the model registry (:func:`recspark.models.registry.config_class`), so a new model
is one module plus one registry line.
"""

from __future__ import annotations

import datetime
import math
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recspark.errors import ConfigError

#: The folder holding ``base.toml`` and the overlays shipped with the project.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
#: Environment variable naming a folder that holds MovieLens data sets (one sub-folder each).
DATA_ENV = "RECSPARK_DATA"

#: Split kinds :mod:`recspark.split` implements.
SPLIT_KINDS = ("random", "leave_last_out", "kfold", "temporal", "stratified")
SplitKind = Literal["random", "leave_last_out", "kfold", "temporal", "stratified"]


class Section(BaseModel):
    """Base of every config section: frozen, unknown keys rejected, values type-checked.

    A tuple field also accepts a comma-separated string (``--set train.models=bias,als``).
    Built directly (``AlsConfig(rank=-3)``) a bad value raises pydantic's
    ``ValidationError`` (a ``ValueError``); :func:`load_config`, :func:`config_from_dict`
    and :meth:`replace` raise :class:`~recspark.errors.ConfigError` with dotted key names.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, coerce_numbers_to_str=True, validate_default=False
    )

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, values: Any) -> Any:
        if not isinstance(values, Mapping):
            return values
        out = dict(values)
        for name, info in cls.model_fields.items():
            if typing.get_origin(info.annotation) is tuple and isinstance(out.get(name), str):
                out[name] = [v.strip() for v in out[name].split(",") if v.strip()]
        return out

    def replace(self, **changes: Any) -> "Section":
        """A copy with ``changes`` applied and validated (raises :class:`ConfigError`)."""
        return validated(type(self), {**self.model_dump(), **changes})


def validated(cls: type[BaseModel], values: Mapping[str, Any], where: str = "") -> Any:
    """``cls`` built from ``values``, with pydantic's errors turned into one ConfigError."""
    try:
        return cls.model_validate(values)
    except pydantic.ValidationError as exc:
        raise ConfigError(_describe(exc, cls, where)) from None


def _describe(exc: pydantic.ValidationError, cls: type[BaseModel], where: str) -> str:
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        key = ".".join(([where] if where else []) + loc)
        if err["type"] == "extra_forbidden":
            owner, known = cls, None
            for part in loc[:-1]:
                field = owner.model_fields.get(part) if isinstance(owner, type) else None
                owner = field.annotation if field is not None else None
            if isinstance(owner, type) and issubclass(owner, BaseModel):
                known = sorted(owner.model_fields)
            section = ".".join(([where] if where else []) + loc[:-1])
            problems.append(
                (f"[{section}] " if section else "")
                + f"unknown key(s) {loc[-1]}"
                + (f"; valid keys: {', '.join(known)}" if known else "")
            )
            continue
        if err["type"] == "value_error":  # a section's own check: its message names the keys
            # a section shared by several config sections (e.g. item_knn, user_knn) cannot
            # name its own section: say which it was
            problems.append((f"[{key}] " if key else "") + str(err["ctx"]["error"]))
            continue
        msg = err["msg"][0].lower() + err["msg"][1:]
        problems.append(f"{key}: {msg} (got {err.get('input')!r})" if key else msg)
    return "; ".join(problems)


# --------------------------------------------------------------------------- sections


class SparkConfig(Section):
    """Spark session settings. Each applies only when spark-submit, ``spark-defaults.conf``
    or the environment did not set it already (see :mod:`recspark.session`)."""

    master: str = "local[2]"
    app_name: str = "recspark"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(8, ge=1)
    checkpoint_dir: str = "out/checkpoints"
    log_level: Literal["ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN"] = "WARN"
    extra: dict[str, str] = Field(default_factory=dict)


class DataConfig(Section):
    """Where the raw MovieLens files come from.

    ``dir`` names the data set's folder directly; when empty the folder is
    ``$RECSPARK_DATA/<dataset>`` if that variable is set, else ``<cache_dir>/<dataset>``,
    downloaded from ``base_url`` when missing and ``download`` is true.
    """

    dataset: str = "ml-latest-small"
    dir: str = ""
    cache_dir: str = "~/.cache/recspark"
    download: bool = True
    base_url: str = "https://files.grouplens.org/datasets/movielens"
    layout: str = "auto"
    download_timeout: float = Field(60.0, gt=0)  # seconds without progress before a download fails


class IngestConfig(Section):
    """Ingest output and validation settings.

    ``reader``: ``auto`` reads a local ratings file with a one-character separator by byte
    range in Arrow (:mod:`recspark.pipeline.ingest_arrow`) and everything else with Spark;
    ``spark`` reads every file with Spark. Both give the same tables."""

    output_dir: str = "out/ingest/{dataset}"
    reader: Literal["auto", "spark"] = "auto"
    user_blocks: int = Field(8, ge=1)
    max_quarantine_share: float = Field(0.01, ge=0, le=1)
    curve_points_per_decade: int = Field(20, ge=1)  # rank-frequency points kept per decade


class SplitConfig(Section):
    """How ratings are split into train and test (:mod:`recspark.split`).

    ``kind``: ``random``, ``leave_last_out``, ``kfold`` (fold 0 of round(1 / test_fraction)
    hashed folds), ``temporal`` (test = ratings at or after a global cut-off: ``cutoff``,
    a YYYY-MM-DD date (UTC), or when empty the (1 − test_fraction) quantile of the
    timestamps) or ``stratified`` (per user, floor(test_fraction · n_u) ratings to test).
    """

    kind: SplitKind = "random"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    cutoff: str = Field("", pattern=r"^(|\d{4}-\d{2}-\d{2})$")

    @field_validator("cutoff", mode="before")
    @classmethod
    def _date_as_text(cls, value: Any) -> Any:
        # TOML reads a bare 2015-01-01 as a date; the setting is text.
        return value.isoformat() if isinstance(value, datetime.date) else value


class TrainConfig(Section):
    """What ``jobs/train.py`` fits and where it writes the run folder. ``models`` names
    registered models (:mod:`recspark.models.registry`), checked when the config is built.

    The rating scale: with ``rating_scale = "data"`` (the default) ``rating_min``,
    ``rating_max`` and ``rating_step`` are replaced, when a job starts, by the scale of the
    ingested data set's layout (recorded in its ``report.json``), and the run's saved config
    records the scale used; ``"config"`` keeps the values set here, deliberately (ingest then
    validates against them too).

    ``folds`` >= 2 cross-validates every model on that many hashed folds
    (:func:`recspark.split.kfold_split`) instead of fitting it on ``split``; ``parallel``
    of them at once (each fold's models still one after another; fit seconds are then
    wall seconds of fits sharing the cores).
    """

    models: tuple[str, ...] = ("bias", "popularity", "mllib_als")
    output_dir: str = "out/runs"
    run_id: str = ""
    validation_fraction: float = Field(0.0, ge=0, lt=1)
    rating_scale: Literal["data", "config"] = "data"
    folds: int = Field(0, ge=0)  # >= 2: k-fold cross-validation instead of one split
    parallel: int = Field(1, ge=1)  # folds cross-validated at once (threads, one pool each)
    leaderboard_by: Literal["rmse", "mae", "ndcg", "hit_rate", "coverage", "fit_seconds"] = "rmse"
    rating_min: float = 0.5
    rating_max: float = 5.0
    rating_step: float = Field(0.5, gt=0)

    @model_validator(mode="after")
    def _scale(self) -> "TrainConfig":
        if not self.rating_min < self.rating_max:
            raise ValueError(
                f"train.rating_min ({self.rating_min}) must be below train.rating_max "
                f"({self.rating_max})"
            )
        if not self.models:
            raise ValueError("train.models must name at least one model")
        if self.folds == 1:
            raise ValueError("train.folds must be 0 (one split) or at least 2, got 1")
        return self


class GenerateConfig(Section):
    """Synthetic MovieLens generator; defaults are the ml-32m shape.

    The model behind each field is in :mod:`recspark.synthetic`. ``tags`` is approximate
    (duplicate tag applications are dropped); ``ratings`` is exact. Combinations that cannot
    work (too many ratings for the users and movies, ...) are rejected when the section is
    built, before Spark starts.
    """

    output_dir: str = "out/synthetic/ml-32m-synthetic"
    users: int = Field(200_948, ge=1)
    movies: int = Field(87_585, ge=1)
    ratings: int = Field(32_000_204, ge=1)
    tags: int = Field(2_000_072, ge=0)
    rank: int = Field(10, ge=1)
    min_user_ratings: int = Field(20, ge=1)
    max_user_share: float = Field(0.38, gt=0, le=1)  # ml-32m's top user rated ~33k of 87.6k movies
    user_activity_exponent: float = Field(1.2, gt=0)
    # Zipf–Mandelbrot popularity w_r ∝ (r + offset·movies)^-exponent, calibrated on ml-32m:
    # top movie ~100k ratings, median movie a handful, a few percent of movies unrated.
    movie_popularity_exponent: float = Field(2.0, gt=0)
    movie_popularity_offset: float = Field(0.0035, ge=0)
    movie_id_span: float = Field(3.34, ge=1)  # largest movie id / number of movies (ml-32m: 292757 / 87585)
    # Rating model, calibrated so the marginal is near ml-32m's (mean ~3.55, sd ~1.0,
    # 4.0 then 3.0 most common, ~25% half stars).
    global_mean: float = 3.55
    user_bias_sd: float = Field(0.5, ge=0)
    movie_bias_sd: float = Field(0.55, ge=0)
    interaction_sd: float = Field(0.6, ge=0)  # standard deviation of p_u·q_i
    noise: float = Field(0.5, ge=0)
    half_star_share: float = Field(0.8, ge=0, le=1)  # mean share of post-2003 ratings on the half-star grid
    segments: int = Field(0, ge=0)
    segment_noise: float = Field(0.15, ge=0)  # user spread around its segment centre, relative to centre scale
    tagging_users: float = Field(0.08, ge=0, le=1)  # share of users who tag
    genome_tags: int = Field(1128, ge=0)  # tag-genome tags (ml-25m: 1,128); 0 = no genome files
    genome_min_ratings: int = Field(50, ge=1)  # expected ratings a movie needs to be in the genome
    partitions: int = Field(16, ge=1)
    chunk_ratings: int = Field(250_000, ge=1)

    @property
    def user_cap(self) -> int:
        """The most ratings one user may have: ``max_user_share``·movies, rounded down."""
        return int(math.floor(self.max_user_share * self.movies))

    # The cross-field checks live here rather than in recspark.synthetic (which imports this
    # module): a shape the generator cannot draw fails when the config is built.
    @model_validator(mode="after")
    def _feasible(self) -> "GenerateConfig":
        cap = self.user_cap
        if cap < self.min_user_ratings:
            raise ValueError(
                f"generate.max_user_share·movies = {cap} is below generate.min_user_ratings = "
                f"{self.min_user_ratings}: raise generate.movies or generate.max_user_share"
            )
        lo, hi = self.users * self.min_user_ratings, self.users * cap
        if not lo <= self.ratings <= hi:
            raise ValueError(
                f"generate.ratings = {self.ratings} is impossible for {self.users} users who "
                f"rate {self.min_user_ratings}..{cap} movies each: choose between {lo} and {hi}"
            )
        if self.segments > self.users:
            raise ValueError(
                f"generate.segments = {self.segments} exceeds generate.users = {self.users}"
            )
        return self


class SegmentConfig(Section):
    """User segments, segment profiles, similar movies and latent-space plots
    (see :mod:`recspark.models.cluster`, :mod:`recspark.serving.similar`, :mod:`recspark.pipeline.segment`).

    ``model`` names a model with latent factors; ``source`` is ``run`` (load
    ``models/<model>/`` from train run ``run_id``, empty = latest), ``fit`` (fit on the fly)
    or ``auto`` (load when the run folder has the model, else fit). ``k`` > 0 fixes the
    number of segments; ``k = 0`` picks it in ``k_min..k_max`` by silhouette.
    """

    model: str = "als"
    source: Literal["auto", "run", "fit"] = "auto"
    run_id: str = ""
    output_dir: str = "out/segments"
    k: int = Field(0, ge=0)
    k_min: int = Field(2, ge=2)
    k_max: int = Field(8, ge=2)
    max_iter: int = Field(30, ge=1)
    min_support: int = Field(20, ge=1)
    top_genres: int = Field(5, ge=1)
    top_movies: int = Field(10, ge=1)
    max_size_ratio: float = Field(10.0, ge=1)  # warn when largest / smallest segment exceeds this
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    residual_shrinkage: float = Field(10.0, ge=0)  # n / (n + λ) damping of a segment's per-movie residual
    blend_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    similar_k: int = Field(10, ge=1)
    similar_block: int = Field(2048, ge=1)  # query movies per Spark task in the similar-movies search
    similar_min_ratings: int = Field(10, ge=0)  # training ratings a movie needs to be in the similar-movies table
    plot_points: int = Field(20000, ge=1)

    @model_validator(mode="after")
    def _ranges(self) -> "SegmentConfig":
        if self.k == 1:
            raise ValueError("segment.k must be 0 (choose by silhouette) or at least 2, got 1")
        if self.k_min > self.k_max:
            raise ValueError(
                f"segment.k_min ({self.k_min}) must not exceed segment.k_max ({self.k_max})"
            )
        if not self.blend_weights:
            raise ValueError("segment.blend_weights must list at least one weight")
        return self


class RecommendConfig(Section):
    """Top-N lists and ranking metrics (see :mod:`recspark.serving.topn`,
    :mod:`recspark.evaluation.ranking`).

    ``enabled``: the train run writes ``recommendations/`` and ranking metrics for every
    model of ``train.models`` that can rank (``popularity`` is the baseline). ``n``: list
    length written; ``k``: cut-off of the ranking metrics (k <= n). A test rating is
    relevant when >= ``relevance_threshold`` (random split; on leave-last-out the held-out
    item is always relevant). ``block_users``: users scored per Spark task;
    ``max_chunk_cells``: (users x movies) scores held at once. ``extra_splits``: further split kinds on which the run also
    refits every model and writes its RMSE and ranking metrics (split column
    ``<kind>/test``) into the same metrics table, top-N lists under
    ``splits/<kind>/recommendations/``; models and predictions are kept for the main split only.
    ``min_support``: movies with fewer training ratings are never recommended, by any
    model (0 or 1: no such rule). ``best_metric``: the ranking metric (at ``k``, on the main split) by which the run names
    its best model (``best.json``; ``rescore.model = ""`` loads it).
    """

    enabled: bool = True
    extra_splits: tuple[SplitKind, ...] = ("leave_last_out",)
    n: int = Field(10, ge=1)
    k: int = Field(10, ge=1)
    relevance_threshold: float = 4.0
    block_users: int = Field(2048, ge=1)
    max_chunk_cells: int = Field(4_000_000, ge=1)
    best_metric: Literal["precision", "recall", "ndcg", "map", "hit_rate"] = "ndcg"
    min_support: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _k_within_n(self) -> "RecommendConfig":
        if self.k > self.n:
            raise ValueError(
                f"recommend.k = {self.k} exceeds the list length recommend.n = {self.n}: "
                "set recommend.n >= recommend.k"
            )
        return self


class RescoreConfig(Section):
    """The scheduled batch re-scoring job (see :mod:`recspark.pipeline.rescore`).

    ``run_id``: the train run whose ``models/<model>/`` is loaded (empty = the latest published
    run under ``train.output_dir`` that holds it). ``mode``: ``pairs`` (score the
    (user_id, movie_id) pairs in ``input``, Parquet folder or CSV by ``input_format``),
    ``all`` (top-``n`` for every user) or ``incremental`` (top-``n`` for users with ratings
    newer than the previous scoring run's watermark). ``ratings``: current ratings Parquet
    (empty = the ingested ratings of ``data.dataset``). ``score_date``: YYYY-MM-DD (empty =
    today, UTC). ``foldin``: users new since training are folded in by models that can.
    ``model``: the saved model to load; empty = the run's best saved model
    (``best.json``): by its ranking metric for lists, by test RMSE for ``pairs``.
    """

    run_id: str = ""
    model: str = ""
    mode: Literal["pairs", "all", "incremental"] = "all"
    input: str = ""
    input_format: Literal["auto", "parquet", "csv"] = "auto"
    ratings: str = ""
    output_dir: str = "out/rescore"
    score_date: str = Field("", pattern=r"^(|\d{4}-\d{2}-\d{2})$")
    n: int = Field(10, ge=1)
    foldin: bool = True


class Config(Section):
    """The whole resolved configuration. ``seed`` is the single root of all randomness.

    The model sections (``bias``, ``als``, ...) are added by
    :func:`recspark.models.registry.config_class`; build configs with :func:`load_config`
    or :func:`config_from_dict`, which use that class.
    """

    seed: int = 42
    spark: SparkConfig = SparkConfig()
    data: DataConfig = DataConfig()
    ingest: IngestConfig = IngestConfig()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    generate: GenerateConfig = GenerateConfig()
    segment: SegmentConfig = SegmentConfig()
    recommend: RecommendConfig = RecommendConfig()
    rescore: RescoreConfig = RescoreConfig()

    def ingest_dir(self) -> str:
        """The ingest output folder of the configured data set."""
        return self.ingest.output_dir.format(dataset=self.data.dataset)

    def section(self, name: str) -> Section:
        """The section called ``name`` (e.g. a model's, by its registered section name)."""
        return getattr(self, name)


# --------------------------------------------------------------------------- parsing


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``section.key=value`` into a nested dict; the value is read as TOML when it can be."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. --set als.rank=20")
    dotted, raw = text.split("=", 1)
    keys = [k.strip() for k in dotted.strip().split(".") if k.strip()]
    if not keys:
        raise ConfigError(f"--set {text!r}: missing key before '='")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare strings need no quotes on the command line
    if isinstance(value, (datetime.date, datetime.time)):
        value = raw.strip()  # TOML reads 2025-01-01 as a date; every date setting is text
    nested: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read one TOML file, with a ConfigError that names the file when it is missing or bad."""
    path = Path(path)
    if not path.is_file():
        candidate = CONF_DIR / path
        if not path.is_absolute() and candidate.is_file():
            path = candidate
        else:
            raise ConfigError(f"config file {str(path)!r} not found (looked in . and {CONF_DIR})")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and check a :class:`Config` from a parsed TOML document (e.g. a saved
    ``config.toml``). Raises :class:`ConfigError` listing every bad key or value."""
    # The registry sits above this module (it imports the models); only it knows which
    # model sections exist, so it is asked here, at call time.
    from recspark.models.registry import check_config, config_class

    cfg = validated(config_class(), raw)
    check_config(cfg)
    return cfg


def default_config() -> Config:
    """Every default, without ``conf/`` (what the library shipped as a zip falls back to)."""
    return config_from_dict({})


def load_config(
    files: Sequence[str | Path] = (), overrides: Sequence[str] = (), *, base: bool = True
) -> Config:
    """Build a :class:`Config` from ``conf/base.toml`` (if ``base``), ``files`` and ``overrides``."""
    # base.toml documents the defaults and equals them (a test checks); when the library
    # runs from a zip shipped with --py-files it is absent and the defaults stand in.
    base_file = CONF_DIR / "base.toml"
    raw: dict[str, Any] = read_toml(base_file) if base and base_file.is_file() else {}
    for path in files:
        raw = _merge(raw, read_toml(path))
    for text in overrides:
        raw = _merge(raw, parse_override(text))
    return config_from_dict(raw)


def to_toml(cfg: BaseModel) -> str:
    """Render a config (or any section) as TOML, to save beside the outputs."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (tuple, list)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(obj: BaseModel, name: str) -> list[str]:
        values = {f: getattr(obj, f) for f in type(obj).model_fields}
        nested = {k: v for k, v in values.items() if isinstance(v, (BaseModel, Mapping))}
        lines = [f"{k} = {scalar(v)}" for k, v in values.items() if k not in nested]
        out = ([f"[{name}]"] if name and lines else []) + lines
        for key, v in nested.items():
            full = f"{name}.{key}" if name else key
            if isinstance(v, BaseModel):
                out += [""] + table(v, full)
            else:  # a free-form table such as spark.extra: keys quoted (they contain dots)
                out += ["", f"[{full}]"] + [f'"{k}" = {scalar(x)}' for k, x in v.items()]
        return out

    return "\n".join(table(cfg, "")) + "\n"


def expand(path: str) -> str:
    """Expand ``~`` and environment variables in a configured path (URIs pass unchanged)."""
    return os.path.expandvars(os.path.expanduser(path))
