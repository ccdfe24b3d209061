"""The ``recspark`` command and the command line every job shares: config files, ``--set``
overrides, ``--dry-run``, the session life cycle.

``recspark <command> [options]`` (the console script of ``pyproject.toml``) runs one of the
sub-commands of :mod:`recspark.commands`; ``jobs/<command>.py`` runs the same code under
spark-submit through :func:`run_command`. ``--dry-run`` prints the resolved config and the
planned stages and exits 0 without starting Spark.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from typing import Callable, Sequence

from pyspark.sql import SparkSession

from recspark.commands import COMMANDS, Command
from recspark.config import Config, load_config, to_toml
from recspark.errors import RecsparkError
from recspark.log import setup_logging
from recspark.session import build_session

_logger = logging.getLogger(__name__)


def parser(description: str, **kwargs) -> argparse.ArgumentParser:
    """An argument parser with the options common to every job (``kwargs`` go to
    :class:`argparse.ArgumentParser`)."""
    p = argparse.ArgumentParser(description=description, **kwargs)
    _common_options(p)
    return p


def _common_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config and the planned stages, then exit (no Spark)",
    )


def run_job(
    description: str,
    pipeline: Callable[[SparkSession, Config, argparse.Namespace], object],
    argv: Sequence[str] | None = None,
    *,
    extra_args: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Parse ``argv``, build the config and session, run ``pipeline``, stop the session: a
    script outside the :data:`~recspark.commands.COMMANDS` table (the commands use
    :func:`run_command`). A string ``pipeline`` returns is printed.

    Returns the process exit code: 0 on success, 2 for an error the user can fix (the
    message says what to do), which is printed without a Python traceback.
    """
    p = parser(description)
    if extra_args is not None:
        extra_args(p)
    args = p.parse_args(argv)
    return _run(pipeline, args)


def _run(
    pipeline: Callable[[SparkSession, Config, argparse.Namespace], object],
    args: argparse.Namespace,
    plan: Callable[[Config], list[str]] | None = None,
) -> int:
    """Build the config of ``args``; print it and ``plan`` on ``--dry-run``, else run
    ``pipeline`` on a session (see :func:`run_job` for the exit codes)."""
    setup_logging(args.log_level)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.dry_run:
            print(to_toml(cfg))
            print("# planned stages")
            steps = plan(cfg) if plan is not None else ["run the job"]
            print("\n".join(f"# {i}. {step}" for i, step in enumerate(steps, 1)))
            return 0
    except RecsparkError as exc:
        _logger.error("%s", exc)
        return 2
    spark = build_session(cfg.spark)
    try:
        out = pipeline(spark, cfg, args)
        if isinstance(out, str):
            print(out)
    except RecsparkError as exc:
        _logger.error("%s: %s", type(exc).__name__, exc)
        return 2
    finally:
        spark.stop()
    return 0


def _command_parser(command: Command, prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=command.summary, epilog=command.epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(p)
    if command.arguments is not None:
        command.arguments(p)
    return p


def run_command(name: str, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run the sub-command ``name`` of :data:`recspark.commands.COMMANDS` with ``argv``
    (its own options); the exit code as :func:`run_job`. ``jobs/<name>.py`` call this."""
    command = COMMANDS[name]
    args = _command_parser(command, prog or f"recspark {name}").parse_args(argv)
    return _run(command.run, args, command.plan)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``recspark`` console command: ``recspark <command> [options]``; ``recspark
    <command> --help`` describes one command."""
    p = argparse.ArgumentParser(
        prog="recspark",
        description="recspark: MovieLens ratings -> predictions, top-N lists, segments, metrics.",
        epilog="\n".join(
            ["commands:", *(f"  {c.name:<9} {c.summary}" for c in COMMANDS.values()), "",
             textwrap.fill(
                 "Every command takes --config FILE, --set SECTION.KEY=VALUE, --log-level and "
                 "--dry-run; `recspark COMMAND --help` lists the config sections it reads, "
                 "examples and where its outputs go.", width=79)]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's options")
    args = p.parse_args(argv)
    return run_command(args.command, args.args)


def console() -> None:
    """Entry point of the ``recspark`` console script."""
    sys.exit(main())


def main_exit(code: int) -> None:
    """``sys.exit`` with the job's code (kept separate so tests can call ``main``)."""
    sys.exit(code)
