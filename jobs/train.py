"""Train and evaluate the configured models on ingested ratings.

    python jobs/train.py [--config conf/x.toml] [--set train.models=bias,als ...]
    spark-submit --py-files dist/recspark.zip jobs/train.py [same options]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

try:
    import recspark  # noqa: F401
except ImportError:  # run from a checkout without installing: python jobs/train.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recspark.cli import main_exit, run_command  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """``recspark train`` (:mod:`recspark.commands`): parse arguments, build config and
    session, run, stop the session; returns the exit code."""
    return run_command("train", argv, prog="jobs/train.py")


if __name__ == "__main__":
    main_exit(main())
