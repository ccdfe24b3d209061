"""Cluster movies by content (genres, decade, tag TF-IDF): clusters, profiles and a PNG.

    python jobs/movie_clusters.py [--config conf/x.toml] [--set content_knn.clusters=12 ...]
    spark-submit --py-files dist/recspark.zip jobs/movie_clusters.py [same options]
"""

from __future__ import annotations

import sys

from recspark.cli import run_job
from recspark.pipeline.movie_clusters import run_movie_clusters


def _pipeline(spark, cfg, args) -> None:
    result = run_movie_clusters(spark, cfg)
    print(
        f"\nmovie clusters (k={result.k}, silhouette {result.silhouette:.4f}) -> {result.output_dir}\n"
        f"{result.profiles.to_string(index=False)}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_job("Cluster movies by content; write clusters, profiles and a PNG.", _pipeline, argv)


if __name__ == "__main__":
    sys.exit(main())
