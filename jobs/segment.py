"""Segment users with k-means on a model's latent factors; profiles, ablation, similar movies.

    python jobs/segment.py [--config conf/x.toml] [--set segment.model=als --set segment.k=6 ...]
    spark-submit --py-files dist/recspark.zip jobs/segment.py [same options]
"""

from __future__ import annotations

import sys

from recspark.cli import run_job
from recspark.pipeline.segment import run_segment


def _pipeline(spark, cfg, args) -> None:
    result = run_segment(spark, cfg)
    verdict = "helps" if result.segmentation_helps() else "does not help"
    print(
        f"\nsegment run {result.run_id} ({result.model} from {result.source}, k={result.k}) "
        f"-> {result.output_dir}\n"
        f"{result.metrics.pivot_table(index='model', columns=['split', 'metric'], values='value', aggfunc='first').to_string(float_format=lambda v: f'{v:.4f}')}\n"
        f"segmentation {verdict} (blend weight {result.blend_weight})"
    )


def main(argv: list[str] | None = None) -> int:
    return run_job(
        "Segment users on latent factors; write profiles, ablation, similar movies and plots.",
        _pipeline,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
