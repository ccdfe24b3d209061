"""The on-disk layout of train runs: run ids, paths, the latest published run, saved models
and the saved config.

A train run is one folder ``<train.output_dir>/<run_id>/`` (see
:mod:`recspark.pipeline.train` for its contents), published atomically by
:func:`recspark.io.storage.staged`: while it is written it is called
``<run_id>._staging-<owner>``, and a replaced run is moved aside as ``<run_id>._old-<owner>``;
its checkpoints go to ``<run_id>._checkpoints-<owner>`` when ``spark.checkpoint_dir`` is
empty. A train run removes what killed runs left there before it starts (the scratch
folders and the rule of :mod:`recspark.io.storage`).
Saved models live in ``models/<name>/``, each with a ``model.json`` that names the
registered model (:func:`write_model_meta`).

**The one rule for "the latest run"** (:func:`find_run`, used by segment and rescore): the
run with the largest id among the *published* runs (no ``._`` in the name, not hidden)
that hold a *complete* saved model ``models/<name>/model.json``; an explicit run id wins.

``best.json`` names the run's best models (:mod:`recspark.evaluation.best`: every model
by test RMSE and by the configured ranking metric, best first); :func:`find_best` applies
the same rule to "the run's best saved model", rescore's default.
"""

from __future__ import annotations

import json
import logging
import tomllib
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import Config, config_from_dict, expand, to_toml
from recspark.errors import ModelError
from recspark.io import storage
from recspark.log import UNUSED_HINT_LOGGER, quiet_jvm_logger
from recspark.schema import MODEL

_logger = logging.getLogger(__name__)

MODELS_DIR = "models"
MODEL_META = "model.json"
CONFIG_FILE = "config.toml"
PREDICTIONS_DIR = "predictions"
METRICS_DIR = "metrics"
RECOMMENDATIONS_DIR = "recommendations"
SPLITS_DIR = "splits"
BEST_FILE = "best.json"
FOLDS_DIR = "folds"  # cross-validated runs: folds/<i>/recommendations/
LEADERBOARD_DIR = "leaderboard"  # leaderboard/ Parquet and leaderboard.csv
#: Key of the registered model name in ``model.json``.
NAME_KEY = "name"


def new_run_id() -> str:
    """A sortable run id: the UTC time to the second, e.g. ``20250101T093000Z``."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def runs_dir(cfg: Config) -> str:
    """The folder holding every train run (``train.output_dir``, expanded)."""
    return expand(cfg.train.output_dir).rstrip("/")


def run_path(cfg: Config, run_id: str) -> str:
    """The folder of run ``run_id``."""
    return f"{runs_dir(cfg)}/{run_id}"


def run_id_of(run_dir: str) -> str:
    """The run id of a run folder path."""
    return run_dir.rstrip("/").rsplit("/", 1)[-1]


def model_dir(run_dir: str, name: str) -> str:
    """The folder of the saved model ``name`` in a run folder."""
    return f"{run_dir.rstrip('/')}/{MODELS_DIR}/{name}"


def is_published(entry: str) -> bool:
    """True for a folder name under ``train.output_dir`` that is a finished run: not hidden
    or private (``.``, ``_``) and not a staging or moved-aside copy (``._staging-``,
    ``._old-``)."""
    return not entry.startswith((".", "_")) and "._" not in entry


def published_runs(spark: SparkSession, runs: str) -> list[str]:
    """Ids of the published runs under the folder ``runs``, ascending."""
    return sorted(e for e in storage.list_dir(spark, runs) if is_published(e))


def find_run(spark: SparkSession, cfg: Config, *, model: str, run_id: str = "") -> str | None:
    """The run folder to read model ``model`` from (the module's one rule): ``run_id``'s
    folder when given (whether or not it exists: the caller reports what is missing),
    else the latest published run holding a complete ``models/<model>/``; None when none
    does."""
    if run_id:
        return run_path(cfg, run_id)
    runs = runs_dir(cfg)
    for rid in reversed(published_runs(spark, runs)):
        if storage.exists(spark, f"{model_dir(f'{runs}/{rid}', model)}/{MODEL_META}"):
            return f"{runs}/{rid}"
    return None


def write_best(spark: SparkSession, run_dir: str, best: dict[str, Any]) -> None:
    """Write ``<run_dir>/best.json`` (the dict of :func:`recspark.evaluation.best.best_models`)."""
    storage.write_text(spark, f"{run_dir.rstrip('/')}/{BEST_FILE}", json.dumps(best, indent=2))


def read_best(spark: SparkSession, run_dir: str) -> dict[str, Any] | None:
    """The run's ``best.json``, or None when it has none (a run from before it existed)."""
    path = f"{run_dir.rstrip('/')}/{BEST_FILE}"
    if not storage.exists(spark, path):
        return None
    return json.loads(storage.read_text(spark, path))


def find_best(
    spark: SparkSession, cfg: Config, *, by: str, run_id: str = ""
) -> tuple[str, str] | None:
    """(run folder, model) of the best saved model: in ``run_id``'s run when given, else in
    the latest published run whose ``best.json`` lists a model with a complete
    ``models/<name>/``; the first such model of the list ``by`` (``"rmse"`` or
    ``"ranking"``), i.e. the best one that was saved. None when no run qualifies."""
    candidates = [run_path(cfg, run_id)] if run_id else [
        f"{runs_dir(cfg)}/{rid}" for rid in reversed(published_runs(spark, runs_dir(cfg)))
    ]
    for run in candidates:
        best = read_best(spark, run) or {}
        for entry in best.get(by, []):
            if storage.exists(spark, f"{model_dir(run, entry[MODEL])}/{MODEL_META}"):
                return run, entry[MODEL]
    return None


def write_model_meta(spark: SparkSession, path: str, meta: dict[str, Any]) -> None:
    """Write ``<path>/model.json``; ``meta`` must hold ``name``, the registered model name."""
    if not meta.get(NAME_KEY):
        raise ValueError(f"model.json needs the registered model {NAME_KEY!r}")
    storage.write_text(spark, f"{path.rstrip('/')}/{MODEL_META}", json.dumps(meta, indent=2, default=str))


def read_model_meta(
    spark: SparkSession, path: str, *, expect: tuple[str, int] | None = None, what: str = "model"
) -> dict[str, Any]:
    """The ``model.json`` of the saved model folder ``path``, as a dict with ``name``.

    Raises :class:`ModelError` when the folder does not exist, has no ``model.json`` (an
    interrupted or foreign folder), or the file is unreadable, not a JSON object or lacks
    ``name``, or (with ``expect`` = (format, version)) records another ``format`` or
    ``version`` than a loader of a ``what`` reads; each message says what to do.
    """
    if not storage.exists(spark, path):
        raise ModelError(
            f"no saved model at {path}: check the path, or train and save a model there first"
        )
    meta_path = f"{path.rstrip('/')}/{MODEL_META}"
    if not storage.exists(spark, meta_path):
        raise ModelError(
            f"{path} is not a complete saved model ({MODEL_META} is missing): save the model again"
        )
    try:
        meta = json.loads(storage.read_text(spark, meta_path))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path} is not valid JSON ({exc}): save the model again") from exc
    except Exception as exc:  # the Hadoop FS failed (e.g. checksum): say which file
        raise ModelError(
            f"could not read {meta_path} ({type(exc).__name__}): save the model again"
        ) from exc
    if not isinstance(meta, dict) or not meta.get(NAME_KEY):
        raise ModelError(
            f"{meta_path} does not name its model (no {NAME_KEY!r}): save the model again "
            "with this recspark version"
        )
    if expect is not None and (meta.get("format"), meta.get("version")) != expect:
        raise ModelError(
            f"{path} is not a version-{expect[1]} {what} (format {meta.get('format')!r}, "
            f"version {meta.get('version')!r}): re-train it"
        )
    return meta


def to_schema(df: DataFrame, schema: T.StructType) -> DataFrame:
    """``df``'s columns of ``schema``, in its order and cast to its types: what a saved
    model table is written as, so :func:`read_model_table` can check it."""
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields])


def write_model_table(df: DataFrame, schema: T.StructType, path: str) -> None:
    """Write ``df``'s columns of ``schema`` (:func:`to_schema`) as Parquet to ``path`` (a
    new folder), the way :func:`read_model_table` reads them back. A broadcast mark the
    table carries for joins goes unused here, without Spark's warning about it
    (:data:`recspark.log.UNUSED_HINT_LOGGER`). Raises what the Parquet write raises."""
    with quiet_jvm_logger(df.sparkSession, UNUSED_HINT_LOGGER):
        to_schema(df, schema).write.parquet(path)


def read_model_table(spark: SparkSession, path: str, name: str, schema: T.StructType) -> DataFrame:
    """The table ``name`` of the saved model folder ``path`` (columns of ``schema``), lazily.

    Raises :class:`ModelError` when it is missing or incomplete (no ``_SUCCESS``) or a
    column has another type than ``schema`` says.
    """
    where = f"{path.rstrip('/')}/{name}"
    if not storage.exists(spark, f"{where}/_SUCCESS"):
        raise ModelError(
            f"{path} is not a complete saved model ({name}/ is missing or was not fully "
            "written): save the model again"
        )
    df = spark.read.parquet(where)
    have = {f.name: f.dataType for f in df.schema.fields}
    wrong = [
        f"{f.name} ({have.get(f.name, 'missing')}, expected {f.dataType.simpleString()})"
        for f in schema.fields
        if have.get(f.name) is None
        or have[f.name].simpleString() != f.dataType.simpleString()
    ]
    if wrong:
        raise ModelError(
            f"{where} has an incompatible schema: {'; '.join(wrong)}; save the model again "
            "with this recspark version"
        )
    return df.select(*schema.names)


def write_run_config(spark: SparkSession, out_dir: str, cfg: Config) -> None:
    """Save the resolved config as ``<out_dir>/config.toml``."""
    storage.write_text(spark, f"{out_dir.rstrip('/')}/{CONFIG_FILE}", to_toml(cfg))


def read_run_config(spark: SparkSession, run_dir: str) -> Config | None:
    """The config a run saved (validated as any config), or None when it saved none."""
    path = f"{run_dir.rstrip('/')}/{CONFIG_FILE}"
    if not storage.exists(spark, path):
        return None
    return config_from_dict(tomllib.loads(storage.read_text(spark, path)))
