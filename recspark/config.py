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


@dataclass(frozen=True)
class IngestConfig:
    """Ingest output and validation settings."""

    output_dir: str = "out/ingest/{dataset}"
    user_blocks: int = 8
    max_quarantine_share: float = 0.01


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
    """MLlib ALS (explicit) baseline; defaults are MLlib's own."""

    rank: int = 10
    max_iter: int = 10
    reg_param: float = 0.1
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


@dataclass(frozen=True)
class SvdConfig:
    """Truncated and iterative SVD on residuals (see :mod:`recspark.models.svd`)."""

    rank: int = 15
    fill: str = "baseline"
    sweep: tuple[int, ...] = ()
    max_rounds: int = 10
    tol: float = 1e-4
    shrinkage: float = 0.0
    oversample: int = 10
    power_iters: int = 2


@dataclass(frozen=True)
class NmfConfig:
    """Non-negative matrix factorisation (see :mod:`recspark.models.nmf`)."""

    rank: int = 15
    max_iter: int = 50
    reg: float = 0.05
    scale01: bool = False
    solver: str = "multiplicative"


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
    """Synthetic MovieLens generator; defaults are the ml-32m shape."""

    output_dir: str = "out/synthetic/ml-32m-synthetic"
    users: int = 200_948
    movies: int = 87_585
    ratings: int = 32_000_204
    rank: int = 10
    min_user_ratings: int = 20
    user_activity_exponent: float = 1.2
    movie_popularity_exponent: float = 1.0
    noise: float = 0.5
    segments: int = 0
    partitions: int = 16


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
    raw: dict[str, Any] = read_toml(CONF_DIR / "base.toml") if base else {}
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
