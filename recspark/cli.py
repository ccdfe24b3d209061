"""The command line every job shares: config files, ``--set`` overrides, session life cycle."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from pyspark.sql import SparkSession

from recspark.config import Config, load_config
from recspark.errors import RecsparkError
from recspark.log import setup_logging
from recspark.session import build_session

_logger = logging.getLogger(__name__)


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options common to every job."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--config",
        "-c",
        action="append",
        default=[],
        metavar="FILE",
        help="TOML overlay on conf/base.toml (repeatable, applied in order)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set als.rank=20 (repeatable)",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="recspark's log level (default INFO)",
    )
    return p


def run_job(
    description: str,
    pipeline: Callable[[SparkSession, Config, argparse.Namespace], object],
    argv: Sequence[str] | None = None,
    *,
    extra_args: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse ``argv``, build the config and session, run ``pipeline``, stop the session.

    Returns the process exit code: 0 on success, 2 for an error the user can fix (the
    message says what to do), which is printed without a Python traceback.
    """
    p = parser(description)
    if extra_args is not None:
        extra_args(p)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        cfg = load_config(args.config, args.overrides)
    except RecsparkError as exc:
        _logger.error("%s", exc)
        return 2
    spark = build_session(cfg.spark)
    try:
        pipeline(spark, cfg, args)
    except RecsparkError as exc:
        _logger.error("%s: %s", type(exc).__name__, exc)
        return 2
    finally:
        spark.stop()
    return 0


def main_exit(code: int) -> None:
    """``sys.exit`` with the job's code (kept separate so tests can call ``main``)."""
    sys.exit(code)
