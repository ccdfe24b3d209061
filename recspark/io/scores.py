"""The on-disk layout of the re-scoring output: one folder per score date.

``<rescore.output_dir>/score_date=YYYY-MM-DD/`` holds the Parquet part files plus
``_report.json`` (counts), ``_watermark.json`` (the max rating timestamp of the ratings
read) and, in pairs mode, ``_quarantine/``. Spark's reader skips ``_``-names, so
``spark.read.parquet(output_dir)`` sees the ``score_date`` partitions only; use
:func:`read_scores` to read published dates only. A date is written under
``<output_dir>/_staging/`` and moved into place with one rename after the last byte
(:func:`staged_date`): partition discovery on ``output_dir`` never sees a half-written date.
What a killed run left in ``_staging/`` is removed by the next run (the rule:
:mod:`recspark.io.storage`).
"""

from __future__ import annotations

import contextlib
import json
import re
from datetime import date, datetime, timezone
from typing import Any, Iterator

from pyspark.sql import DataFrame, SparkSession

from recspark.errors import ConfigError, DataNotFoundError
from recspark.io import storage
from recspark.schema import SCORE_DATE

REPORT_FILE = "_report.json"
WATERMARK_FILE = "_watermark.json"
PAIRS_QUARANTINE_DIR = "_quarantine"
STAGING_DIR = "_staging"
_WATERMARK_KEY = "max_timestamp"
_DATE_DIR = re.compile(rf"^{SCORE_DATE}=(\d{{4}}-\d{{2}}-\d{{2}})$")


def score_date(text: str = "") -> str:
    """``text`` checked as YYYY-MM-DD, or today's UTC date when empty; ConfigError else."""
    text = text or datetime.now(timezone.utc).date().isoformat()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ConfigError(f"rescore.score_date must be YYYY-MM-DD, got {text!r}")
    try:
        date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"rescore.score_date must be YYYY-MM-DD, got {text!r}") from None
    return text


def date_dir(output_dir: str, day: str) -> str:
    """The published folder of score date ``day``."""
    return f"{output_dir.rstrip('/')}/{SCORE_DATE}={day}"


def published_dates(spark: SparkSession, output_dir: str) -> list[str]:
    """Sorted score dates published under ``output_dir``."""
    dates = []
    for name in storage.list_dir(spark, output_dir):
        m = _DATE_DIR.match(name)
        if m:
            dates.append(m.group(1))
    return sorted(dates)


def read_scores(spark: SparkSession, output_dir: str) -> DataFrame:
    """Every published score date under ``output_dir`` with its ``score_date`` column (half
    written staging folders are never read). Raises DataNotFoundError when there is none."""
    dates = published_dates(spark, output_dir)
    if not dates:
        raise DataNotFoundError(f"no published scores under {output_dir}: run jobs/rescore.py first")
    return spark.read.option("basePath", output_dir.rstrip("/")).parquet(
        *[date_dir(output_dir, d) for d in dates]
    )


def previous_watermark(spark: SparkSession, output_dir: str, before: str) -> int | None:
    """The watermark (max rating timestamp) of the latest published date before ``before``."""
    for d in reversed([d for d in published_dates(spark, output_dir) if d < before]):
        path = f"{date_dir(output_dir, d)}/{WATERMARK_FILE}"
        if storage.exists(spark, path):
            return int(json.loads(storage.read_text(spark, path))[_WATERMARK_KEY])
    return None


@contextlib.contextmanager
def staged_date(spark: SparkSession, output_dir: str, day: str) -> Iterator[str]:
    """Yield a staging folder under ``<output_dir>/_staging/`` for score date ``day``; on
    success publish it as :func:`date_dir` (replacing an earlier output of that date), on
    failure delete it and leave the published date untouched. Staging folders that killed
    runs left in ``_staging/`` are removed first (:func:`recspark.io.storage.clean_scratch`)."""
    staging_dir = f"{output_dir.rstrip('/')}/{STAGING_DIR}"
    storage.clean_scratch(spark, staging_dir, all_scratch=True)
    storage.clean_scratch(spark, output_dir)
    with storage.staged(spark, date_dir(output_dir, day), under=staging_dir) as staging:
        yield staging


def write_report(spark: SparkSession, staging: str, report: dict[str, Any], *, watermark: int | None) -> None:
    """Write ``_report.json`` (``report``) and ``_watermark.json`` (``watermark``: the max
    rating timestamp the scores saw) into a staging folder of :func:`staged_date`."""
    storage.write_text(spark, f"{staging}/{REPORT_FILE}", json.dumps(report, indent=2) + "\n")
    storage.write_text(
        spark, f"{staging}/{WATERMARK_FILE}", json.dumps({_WATERMARK_KEY: watermark}) + "\n"
    )
