"""Train and evaluate the configured models on ingested ratings.

    python jobs/train.py [--config conf/x.toml] [--set train.models=bias,als ...]
    spark-submit --py-files dist/recspark.zip jobs/train.py [same options]
"""

from __future__ import annotations

import sys

from recspark.cli import run_job
from recspark.pipeline.train import run_train


def _pipeline(spark, cfg, args) -> None:
    result = run_train(spark, cfg)
    print(f"\nrun {result.run_id} -> {result.run_dir}\n{result.summary()}")


def main(argv: list[str] | None = None) -> int:
    return run_job("Train recspark models and write predictions and metrics.", _pipeline, argv)


if __name__ == "__main__":
    sys.exit(main())
