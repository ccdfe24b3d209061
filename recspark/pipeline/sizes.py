"""Size parameters checked against the data before any work starts.

A setting that counts something in the data (k segments of users, a truncated SVD's rank,
neighbours of a movie, blocks of users) cannot exceed what the data holds. The sizes are
the ingested data set's numbers of users and movies (its ``report.json``), so the check
costs no Spark job. :func:`fit_to_data` applies the rules:

- a fixed value that cannot work (``segment.k = 6`` with 4 users, ``svd.rank = 15`` with 10
  movies) raises :class:`~recspark.errors.ConfigError` naming the setting and the data's
  size (exit 2);
- an automatic range or a performance setting (``segment.k_max``, ``segment.similar_k``,
  the number of blocks) is capped to what the data allows, with a log line saying so.

KMeans needs k ≤ n − 1 points for a silhouette (and k ≤ n at all: MLlib's k-means|| fails
with an ArrayIndexOutOfBoundsException otherwise); a rank-r truncated SVD of an n × m matrix
needs r ≤ min(n, m).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

from pyspark.sql import SparkSession

from recspark.config import Config, expand
from recspark.errors import ConfigError
from recspark.io import ingested, storage
from recspark.models import registry

_logger = logging.getLogger(__name__)

#: (section, key) of a rank that must not exceed min(users, movies); checked for the models
#: in use whose section is named here.
RANKS = (("svd", "rank"), ("svd", "sweep"), ("nmf", "rank"))
#: (section, key) of a number of user blocks: capped to the number of users.
BLOCKS = (("als", "blocks"), ("svd", "blocks"), ("nmf", "blocks"), ("mllib_als", "num_blocks"))


@dataclass(frozen=True)
class DataSize:
    """The numbers of distinct users and movies of the ingested ratings."""

    users: int
    movies: int


def _sections(models: Iterable[str]) -> set[str]:
    return {registry.spec(m).section for m in models if registry.spec(m).section}


def _capped(cfg: Config, section: str, key: str, limit: int, what: str) -> Config:
    value = getattr(cfg.section(section), key)
    if value <= limit:
        return cfg
    _logger.info("%s.%s = %d capped to %d: the data has %s", section, key, value, limit, what)
    return cfg.replace(**{section: cfg.section(section).replace(**{key: limit})})


def fit_to_data(
    cfg: Config, size: DataSize, *, models: Iterable[str], segment: bool = False
) -> Config:
    """``cfg`` checked against ``size`` for the ``models`` in use (and the segment settings
    when ``segment``): fixed values that cannot work raise ConfigError, automatic ranges and
    block counts come back capped (logged)."""
    models = list(models)
    sections = _sections(models)
    smallest = min(size.users, size.movies)
    what = f"{size.users} users and {size.movies} movies"
    for section, key in RANKS:
        if section not in sections:
            continue
        value = getattr(cfg.section(section), key)
        too_big = [v for v in (value if isinstance(value, tuple) else (value,)) if v > smallest]
        if too_big:
            raise ConfigError(
                f"{section}.{key} = {value} cannot work: the data has {what}, so a rank of at "
                f"most {smallest}; lower {section}.{key}"
            )
    for section, key in BLOCKS:
        if section in sections:
            cfg = _capped(cfg, section, key, size.users, f"{size.users} users")
    if segment:
        cfg = _segment_sizes(cfg, size)
    return cfg


def _segment_sizes(cfg: Config, size: DataSize) -> Config:
    """segment.k (fixed) must be ≤ users − 1; the automatic k_min..k_max is capped to it."""
    sc, most = cfg.segment, size.users - 1
    if sc.k > 0 and sc.k > most:
        raise ConfigError(
            f"segment.k = {sc.k} cannot work: the data has {size.users} users, so at most "
            f"{most} segments; lower segment.k, or set it to 0 to choose k automatically"
        )
    if sc.k == 0 and sc.k_min > most:
        raise ConfigError(
            f"segment.k_min = {sc.k_min} cannot work: the data has {size.users} users, so at "
            f"most {most} segments; segmenting needs at least {sc.k_min + 1} users"
        )
    if sc.k == 0:
        cfg = _capped(cfg, "segment", "k_max", most, f"{size.users} users (k ≤ users − 1)")
    return _capped(cfg, "segment", "similar_k", max(size.movies - 1, 1), f"{size.movies} movies")


def data_size(spark: SparkSession, ingest_dir: str) -> DataSize | None:
    """Users and movies of the ingested data set, from its report (None without one)."""
    if not storage.exists(spark, ingested.path(ingest_dir, ingested.REPORT_FILE)):
        return None
    index = ingested.read_report(spark, ingest_dir)["index"]
    return DataSize(int(index["users"]), int(index["movies"]))


def config_for_data(
    spark: SparkSession, cfg: Config, *, models: Iterable[str], segment: bool = False
) -> Config:
    """``cfg`` for the ingested data set of ``cfg.data.dataset``: its rating scale
    (:func:`recspark.io.ingested.with_data_scale`) and the size checks of
    :func:`fit_to_data`. What a job calls first, before any Spark work."""
    cfg = ingested.with_data_scale(spark, cfg)
    size = data_size(spark, expand(cfg.ingest_dir()))
    return cfg if size is None else fit_to_data(cfg, size, models=models, segment=segment)
