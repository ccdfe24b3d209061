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

from recspark.cli import main_exit, run_job  # noqa: E402
from recspark.pipeline.ingest import run_ingest  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build config and session, run the ingest, stop the session."""
    return run_job(
        "Ingest MovieLens ratings, movies, tags and links into validated Parquet tables.",
        lambda spark, cfg, args: run_ingest(spark, cfg),
        argv,
    )


if __name__ == "__main__":
    main_exit(main())
