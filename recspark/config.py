"""Typed, frozen configuration parsed from TOML files plus ``--set`` overrides.

A config is built from ``conf/base.toml``, then any overlay files in order, then
``--set section.key=value`` overrides. Every section is a frozen dataclass; an
unknown section or key raises :class:`ConfigError` naming the valid keys, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from recspark.errors import ConfigError

#: The folder holding ``base.toml`` and the overlays shipped with the project.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
#: Environment variable naming a folder that holds MovieLens data sets (one sub-folder each).
DATA_ENV = "RECSPARK_DATA"


@dataclass(frozen=True)
class SparkConfig:
    """Spark session settings. ``master`` applies only when spark-submit did not set one."""

    master: str = "local[2]"
    app_name: str = "recspark"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    checkpoint_dir: str = "out/checkpoints"
    log_level: str = "WARN"
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
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
    download_timeout: float = 60.0  # seconds without progress before a download fails


@dataclass(frozen=True)
class IngestConfig:
    """Ingest output and validation settings."""

    output_dir: str = "out/ingest/{dataset}"
    user_blocks: int = 8
    max_quarantine_share: float = 0.01
    curve_points_per_decade: int = 20  # rank-frequency curves keep ~this many ranks per decade


@dataclass(frozen=True)
class SplitConfig:
    """How ratings are split into train and test. ``kind`` is ``random`` or ``leave_last_out``."""

    kind: str = "random"
    test_fraction: float = 0.2


@dataclass(frozen=True)
class BiasConfig:
    """Damped baseline: μ + b_u + b_i with shrinkage ``user_reg`` and ``item_reg``."""

    rounds: int = 3
    user_reg: float = 5.0
    item_reg: float = 5.0


@dataclass(frozen=True)
class MllibAlsConfig:
    """MLlib ALS (explicit) baseline: MLlib's defaults except ``reg_param``.

    reg_param was chosen on a validation split of ml-latest-small's training part
    (validation RMSE: 0.1 → 0.886, 0.15 → 0.874, 0.2 → 0.882 at 10 iterations).
    """

    rank: int = 10
    max_iter: int = 10
    reg_param: float = 0.15
    nonnegative: bool = False
    num_blocks: int = 10
    checkpoint_interval: int = 10


@dataclass(frozen=True)
class AlsConfig:
    """recspark's block-partitioned biased ALS (see :mod:`recspark.models.als`)."""

    rank: int = 10
    max_iter: int = 10
    reg_factors: float = 0.1
    reg_bias: float = 0.1
    weighted_reg: bool = True
    blocks: int = 4
    mode: str = "auto"
    broadcast_max_mb: float = 256.0
    checkpoint_every: int = 5
    init_std: float = 0.1  # standard deviation of the seeded initial factors


@dataclass(frozen=True)
class SvdConfig:
    """Truncated and iterative SVD on residuals (see :mod:`recspark.models.svd`).

    ``fill``: ``baseline`` (μ + b_u + b_i of the bias model) or ``user_mean``. ``sweep``:
    extra ranks the truncated SVD is also evaluated at (it computes max(rank, sweep)
    components once). Iterative SVD: at most ``max_rounds`` rounds, stopping when the
    relative change of the low-rank estimate falls below ``tol`` or when the validation
    RMSE has not improved for ``patience`` rounds; singular values are soft-thresholded by
    ``shrinkage`` (absolute, in rating units: re-tune it when the data size changes);
    randomised SVD with ``oversample`` extra columns and ``power_iters`` power iterations;
    ratings held in ``blocks`` user blocks. ``rcond``: computeSVD's reciprocal condition
    number (smaller singular values are dropped).
    """

    rank: int = 15
    fill: str = "baseline"
    sweep: tuple[int, ...] = ()
    max_rounds: int = 10
    tol: float = 1e-4
    shrinkage: float = 0.0
    oversample: int = 10
    power_iters: int = 2
    blocks: int = 4
    patience: int = 2
    rcond: float = 1e-9


@dataclass(frozen=True)
class NmfConfig:
    """Non-negative matrix factorisation (see :mod:`recspark.models.nmf`).

    ``solver`` picks the fitter of the ``nmf`` model: ``multiplicative`` (Lee–Seung
    updates on observed entries, ``max_iter`` iterations, L2 weight ``reg``) or ``als``
    (MLlib non-negative ALS, ``als_max_iter`` iterations, ``als_reg``); the ``nmf_als``
    model always uses ``als``. ``scale01`` fits (r − rating_min)/(rating_max − rating_min).
    ``patience``: evaluations without validation improvement before stopping early.
    """

    rank: int = 15
    max_iter: int = 50
    reg: float = 0.05
    scale01: bool = False
    solver: str = "multiplicative"
    blocks: int = 4
    patience: int = 3
    als_max_iter: int = 15
    als_reg: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """What ``jobs/train.py`` fits and where it writes the run folder."""

    models: tuple[str, ...] = ("bias", "mllib_als")
    output_dir: str = "out/runs"
    run_id: str = ""
    validation_fraction: float = 0.0
    rating_min: float = 0.5
    rating_max: float = 5.0


@dataclass(frozen=True)
class GenerateConfig:
    """Synthetic MovieLens generator; defaults are the ml-32m shape.

    The model behind each field is in :mod:`recspark.synthetic`. ``tags`` is approximate
    (duplicate tag applications are dropped); ``ratings`` is exact.
    """

    output_dir: str = "out/synthetic/ml-32m-synthetic"
    users: int = 200_948
    movies: int = 87_585
    ratings: int = 32_000_204
    tags: int = 2_000_072
    rank: int = 10
    min_user_ratings: int = 20
    max_user_share: float = 0.38  # ml-32m's top user rated ~33k of 87.6k movies
    user_activity_exponent: float = 1.2
    # Zipf–Mandelbrot popularity w_r ∝ (r + offset·movies)^-exponent, calibrated on ml-32m:
    # top movie ~100k ratings, median movie a handful, a few percent of movies unrated.
    movie_popularity_exponent: float = 2.0
    movie_popularity_offset: float = 0.0035
    movie_id_span: float = 3.34  # largest movie id / number of movies (ml-32m: 292757 / 87585)
    # Rating model, calibrated so the marginal is near ml-32m's (mean ~3.55, sd ~1.0,
    # 4.0 then 3.0 most common, ~25% half stars).
    global_mean: float = 3.55
    user_bias_sd: float = 0.5
    movie_bias_sd: float = 0.55
    interaction_sd: float = 0.6  # standard deviation of p_u·q_i
    noise: float = 0.5
    half_star_share: float = 0.8  # mean share of a user's post-2003 ratings on the half-star grid
    segments: int = 0
    segment_noise: float = 0.15  # user spread around its segment centre, relative to centre scale
    tagging_users: float = 0.08  # share of users who tag
    partitions: int = 16
    chunk_ratings: int = 250_000


@dataclass(frozen=True)
class SegmentConfig:
    """User segments, segment profiles, similar movies and latent-space plots
    (see :mod:`recspark.models.cluster`, :mod:`recspark.similar`, :mod:`recspark.pipeline.segment`).

    ``model`` names the factor model (als, svd, nmf, mllib_als); ``source`` is ``run``
    (load ``models/<model>/`` from train run ``run_id``, empty = latest), ``fit`` (fit on the
    fly) or ``auto`` (load when the run folder has the model, else fit). ``k`` > 0 fixes the
    number of segments; ``k = 0`` picks it in ``k_min..k_max`` by silhouette.
    """

    model: str = "als"
    source: str = "auto"
    run_id: str = ""
    output_dir: str = "out/segments"
    k: int = 0
    k_min: int = 2
    k_max: int = 8
    max_iter: int = 30
    min_support: int = 20
    top_genres: int = 5
    top_movies: int = 10
    max_size_ratio: float = 10.0  # warn when largest / smallest segment exceeds this
    validation_fraction: float = 0.1
    residual_shrinkage: float = 10.0  # n / (n + λ) damping of a segment's per-movie residual
    blend_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
    similar_k: int = 10
    similar_block: int = 2048  # query movies per Spark task in the similar-movies search
    similar_min_ratings: int = 10  # training ratings a movie needs to be in the similar-movies table
    plot_points: int = 20000


@dataclass(frozen=True)
class RecommendConfig:
    """Top-N lists and ranking metrics (see :mod:`recspark.recommend`, :mod:`recspark.ranking`).

    ``enabled``: the train run writes ``recommendations/`` and ranking metrics for every factor
    model and the popularity baseline. ``n``: list length written; ``k``: cut-off of the
    ranking metrics (k <= n). A test rating is relevant when >= ``relevance_threshold``
    (random split; on leave-last-out the held-out item is always relevant). ``block_users``:
    users scored per Spark task; ``max_chunk_cells``: (users x movies) scores held at once.
    ``extra_splits``: further split kinds (``random``, ``leave_last_out``) on which the run
    also refits every model and writes its RMSE and ranking metrics (split column
    ``<kind>/test``) into the same metrics table, top-N lists under
    ``splits/<kind>/recommendations/``; models and predictions are kept for the main split only.
    """

    enabled: bool = True
    extra_splits: tuple[str, ...] = ("leave_last_out",)
    n: int = 10
    k: int = 10
    relevance_threshold: float = 4.0
    popularity: bool = True
    block_users: int = 2048
    max_chunk_cells: int = 4_000_000


@dataclass(frozen=True)
class RescoreConfig:
    """The scheduled batch re-scoring job (see :mod:`recspark.pipeline.rescore`).

    ``run_id``: the train run whose ``models/<model>/`` is loaded (empty = the latest published
    run under ``train.output_dir`` that holds it). ``mode``: ``pairs`` (score the
    (user_id, movie_id) pairs in ``input``, Parquet folder or CSV by ``input_format``),
    ``all`` (top-``n`` for every user) or ``incremental`` (top-``n`` for users with ratings
    newer than the previous scoring run's watermark). ``ratings``: current ratings Parquet
    (empty = the ingested ratings of ``data.dataset``). ``score_date``: YYYY-MM-DD (empty =
    today, UTC). ``foldin``: users new since training get factors by one ALS half-step.
    """

    run_id: str = ""
    model: str = "als"
    mode: str = "all"
    input: str = ""
    input_format: str = "auto"
    ratings: str = ""
    output_dir: str = "out/rescore"
    score_date: str = ""
    n: int = 10
    foldin: bool = True


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration. ``seed`` is the single root of all randomness."""

    seed: int = 42
    spark: SparkConfig = field(default_factory=SparkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    bias: BiasConfig = field(default_factory=BiasConfig)
    mllib_als: MllibAlsConfig = field(default_factory=MllibAlsConfig)
    als: AlsConfig = field(default_factory=AlsConfig)
    svd: SvdConfig = field(default_factory=SvdConfig)
    nmf: NmfConfig = field(default_factory=NmfConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    rescore: RescoreConfig = field(default_factory=RescoreConfig)

    def ingest_dir(self) -> str:
        """The ingest output folder of the configured data set."""
        return self.ingest.output_dir.format(dataset=self.data.dataset)


# --------------------------------------------------------------------------- parsing


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a TOML value to the field's annotated type, or raise ConfigError."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{where}] must be a table, got {value!r}")
        return _build(hint, value, where)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, where) for v in value)
    if origin in (collections.abc.Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return types.MappingProxyType({str(k): str(v) for k, v in value.items()})
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if hint is str:
        return str(value)
    raise ConfigError(f"{where}: unsupported config type {hint!r}")  # pragma: no cover


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        prefix = f"[{where}] " if where else ""
        raise ConfigError(
            f"{prefix}unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
        )
    kwargs = {
        name: _coerce(value, hints[name], f"{where}.{name}" if where else name)
        for name, value in values.items()
    }
    return cls(**kwargs)


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
    """Build a :class:`Config` from a parsed TOML document (e.g. a saved ``config.toml``)."""
    return _build(Config, raw, "")


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


def to_toml(cfg: Any) -> str:
    """Render a config (or any nested frozen dataclass) as TOML, to save beside the outputs."""

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (tuple, list)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    def table(obj: Any, name: str) -> list[str]:
        lines, subtables = [], []
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                subtables.append((f.name, v))
            elif isinstance(v, Mapping):
                subtables.append((f.name, dict(v)))
            else:
                lines.append(f"{f.name} = {scalar(v)}")
        out = ([f"[{name}]"] if name and lines else []) + lines
        for sub, v in subtables:
            full = f"{name}.{sub}" if name else sub
            if isinstance(v, dict):
                out += ["", f"[{full}]"] + [f'"{k}" = {scalar(x)}' for k, x in v.items()]
            else:
                out += [""] + table(v, full)
        return out

    return "\n".join(table(cfg, "")) + "\n"


def expand(path: str) -> str:
    """Expand ``~`` and environment variables in a configured path (URIs pass unchanged)."""
    return os.path.expandvars(os.path.expanduser(path))
