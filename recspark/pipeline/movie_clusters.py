"""Movie clusters by content: MLlib KMeans on the content feature vectors, profiles, a PNG.

``run_movie_clusters(spark, cfg)`` reads the ingested movies and tags, builds the content
features of :func:`recspark.models.content.movie_features` (unit vectors: genres + decade
one-hot, tag TF-IDF, the tag genome when the raw folder has one), and clusters them with MLlib KMeans (k-means||, seeded by the root
seed). k is ``content_knn.clusters``, or, when 0, the number of distinct genres (one cluster
per genre is the natural reading of genre-dominated features). Written to
``<content_knn.clusters_dir>/<dataset>/`` (replaced atomically):

- ``clusters/``: movie_id, title, segment (the cluster, 0..k−1)
- ``profiles/``: segment, size, share, top_genres (the 3 most frequent genres with their
  share of the cluster's movies), top_tags (the 5 tags on most of its movies), titles (5
  sample titles: the movies with the most tags, ties by smaller id)
- ``movie_clusters.png``: the 2-D PCA of (a sample of ≤ 3,000) feature vectors, one
  colour per cluster; plus the silhouette of the clustering in the log and the returned
  result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recspark.config import Config, expand
from recspark.io import storage
from recspark.io.ingested import read_movies, read_tags
from recspark.log import stage
from recspark.models.cluster import fit_kmeans, pca_2d, silhouette
from recspark.models.content import find_genome, movie_features
from recspark.plots import pca_scatter
from recspark.schema import FEATURES, GENRES, MOVIE_ID, SEGMENT, SHARE, SIZE, TAG, TITLE
from recspark.seeds import derive_seed

_logger = logging.getLogger(__name__)

_PLOT_POINTS = 3000
_NO_GENRES = "(no genres listed)"


@dataclass(frozen=True)
class ClusterResult:
    """Where the clusters went, k, the silhouette and the profiles (pandas)."""

    output_dir: str
    k: int
    silhouette: float
    profiles: pd.DataFrame


def profiles(clusters: pd.DataFrame, tags: pd.DataFrame) -> pd.DataFrame:
    """Cluster profiles (see the module docstring) of ``clusters`` (movie_id, title,
    genres, segment) and ``tags`` (movie_id, tag)."""
    n = len(clusters)
    genres = clusters.assign(genre=clusters[GENRES].fillna("").str.split("|")).explode("genre")
    genres = genres[(genres["genre"] != "") & (genres["genre"] != _NO_GENRES)]
    tag_rows = tags.assign(tag=tags[TAG].str.lower().str.strip()).drop_duplicates([MOVIE_ID, TAG])
    tag_rows = tag_rows.merge(clusters[[MOVIE_ID, SEGMENT]], on=MOVIE_ID)
    n_tags = tag_rows.groupby(MOVIE_ID).size().rename("n_tags")
    out = []
    for seg, members in clusters.groupby(SEGMENT):
        g = genres[genres[SEGMENT] == seg]["genre"].value_counts().head(3)
        t = tag_rows[tag_rows[SEGMENT] == seg][TAG].value_counts().head(5)
        ranked = members.join(n_tags, on=MOVIE_ID).fillna({"n_tags": 0})
        ranked = ranked.sort_values(["n_tags", MOVIE_ID], ascending=[False, True])
        out.append({
            SEGMENT: int(seg), SIZE: len(members), SHARE: len(members) / n,
            "top_genres": ", ".join(f"{name} {count / len(members):.0%}" for name, count in g.items()),
            "top_tags": ", ".join(t.index), "titles": " | ".join(ranked[TITLE].head(5)),
        })
    return pd.DataFrame(out)


def run_movie_clusters(spark: SparkSession, cfg: Config, args: object | None = None) -> ClusterResult:
    """Cluster the movies of the ingested data set by content and write the outputs above."""
    ccfg = cfg.content_knn
    where = expand(cfg.ingest_dir())
    out_dir = f"{expand(ccfg.clusters_dir)}/{cfg.data.dataset}"
    movies, tags = read_movies(spark, where), read_tags(spark, where)
    with stage("movie content features", spark):
        features = movie_features(movies, tags, cfg=ccfg, genome=find_genome(spark, cfg)).cache()
    k = ccfg.clusters or (
        movies.select(F.explode(F.split(GENRES, r"\|")).alias("g"))
        .where((F.col("g") != "") & (F.col("g") != _NO_GENRES)).distinct().count()
    )
    with stage(f"k-means of movies, k={k}", spark):
        model = fit_kmeans(features, k=k, seed=derive_seed(cfg.seed, "movie_clusters"))
        score = silhouette(model, features)
        assigned = model.transform(features).select(MOVIE_ID, F.col(SEGMENT).cast("int").alias(SEGMENT))
        clusters = movies.join(assigned, MOVIE_ID).select(MOVIE_ID, TITLE, GENRES, SEGMENT).toPandas()
    table = profiles(clusters, tags.select(MOVIE_ID, TAG).toPandas())
    _logger.info("movie clusters: k=%d, silhouette %.4f\n%s", k, score, table.to_string(index=False))
    sample = features.join(assigned, MOVIE_ID).orderBy(F.rand(derive_seed(cfg.seed, "cluster_plot")))
    sample = sample.limit(_PLOT_POINTS).toPandas()
    with storage.staged(spark, out_dir) as tmp:
        spark.createDataFrame(clusters.drop(columns=[GENRES])).coalesce(1).write.parquet(f"{tmp}/clusters")
        spark.createDataFrame(table).coalesce(1).write.parquet(f"{tmp}/profiles")
        points = np.vstack([v.toArray() for v in sample[FEATURES]]) if len(sample) else np.zeros((0, 2))
        coords, ratio = pca_2d(points) if len(sample) >= 2 else (np.zeros((len(sample), 2)), np.zeros(2))
        pca_scatter(
            spark, coords, ratio, sample[SEGMENT], path=f"{tmp}/movie_clusters.png",
            title=f"movie clusters by content (k={k}, silhouette {score:.3f})", n_total=len(clusters),
        )
    return ClusterResult(out_dir, k, score, table)
