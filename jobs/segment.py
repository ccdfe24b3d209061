"""Segment users with k-means on a model's latent factors; profiles, ablation, similar movies.

    python jobs/segment.py [--config conf/x.toml] [--set segment.model=als --set segment.k=6 ...]
    spark-submit --py-files dist/recspark.zip jobs/segment.py [same options]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

try:
    import recspark  # noqa: F401
except ImportError:  # run from a checkout without installing: python jobs/segment.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recspark.cli import main_exit, run_command  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """``recspark segment`` (:mod:`recspark.commands`): parse arguments, build config and
    session, run, stop the session; returns the exit code."""
    return run_command("segment", argv, prog="jobs/segment.py")


if __name__ == "__main__":
    main_exit(main())
