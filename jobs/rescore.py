"""Re-score with a saved model: scored pairs, top-N for all users, or incremental top-N.

    python jobs/rescore.py --set rescore.mode=all [--set rescore.run_id=20250101T000000Z]
    python jobs/rescore.py --set rescore.mode=pairs --set rescore.input=pairs.csv
    spark-submit --py-files dist/recspark.zip jobs/rescore.py --set rescore.mode=incremental
"""

from __future__ import annotations

import sys

from recspark.cli import run_job
from recspark.pipeline.rescore import run_rescore


def _pipeline(spark, cfg, args) -> None:
    run_rescore(spark, cfg)


def main(argv: list[str] | None = None) -> int:
    return run_job("Re-score users or pairs with a saved recspark model.", _pipeline, argv)


if __name__ == "__main__":
    sys.exit(main())
