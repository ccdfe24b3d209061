"""spark-submit entry point: raw MovieLens files -> validated, indexed Parquet + statistics.

    python jobs/ingest.py --set data.dataset=ml-1m
    python jobs/ingest.py --set data.dir=/data/ml-latest-small
    spark-submit --py-files recspark.zip jobs/ingest.py -c cluster.toml

Outputs go to ``ingest.output_dir`` (see :mod:`recspark.pipeline.ingest`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

try:
    import recspark  # noqa: F401
except ImportError:  # run from a checkout without installing: python jobs/ingest.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recspark.cli import main_exit, run_command  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """``recspark ingest`` (:mod:`recspark.commands`): parse arguments, build config and
    session, run, stop the session; returns the exit code."""
    return run_command("ingest", argv, prog="jobs/ingest.py")


if __name__ == "__main__":
    main_exit(main())
