"""Content-based movies: feature vectors, content neighbours and ``content_knn``.

Movie features (:func:`movie_features`), each part L2-normalised, then concatenated and
normalised again so every part weighs the same:

- genres, one-hot (``CountVectorizer(binary=True)`` over the "|"-separated list), plus the
  decade of the year in the title ("Heat (1995)" → token ``decade:1990``);
- tags, TF-IDF (``CountVectorizer`` over each movie's lower-cased tags, at most
  ``tag_vocabulary`` terms used by ≥ ``min_tag_movies`` movies, then ``IDF``): idf(t) =
  log((M + 1) / (m_t + 1)) with m_t the movies tagged t.

- the tag genome (ml-25m, ml-32m layouts: ``genome-scores.csv`` in the raw data folder,
  :func:`find_genome`), when there is one: the movie's relevance vector over the genome's
  tags (1,128), each tag's mean relevance over the genome movies subtracted (every
  relevance is positive, so uncentred vectors of any two movies would have a cosine near
  1; centred, two movies are similar where they stand out on the same tags). Movies outside
  the genome get a zero part, so for them only genres and tags count.

The parts weigh the same (each a unit vector before the final normalisation): with a
genome, a genome movie's vector is 1/√3 genres+decade, 1/√3 tags, 1/√3 genome. Content
similarity is the cosine of these vectors (a dot product of unit vectors), the top ``neighbours`` per movie kept,
block by block in Spark tasks like the rating neighbourhoods.

``content_knn`` predicts with the KNN-with-baseline form of :mod:`.neighbours.knn` over the
content neighbours: r̂(u, i) = μ + b_u + b_i + Σ s_ij (r_uj − b_uj) / Σ s_ij over the k
content-nearest movies j that u rated. Every movie of the movies table has content
neighbours, including movies nobody rated in training (b_i = 0 for them), so a cold movie
still gets a personalised prediction from the user's own ratings of similar movies.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pydantic import Field, model_validator
from pyspark.ml.feature import IDF, CountVectorizer, Normalizer, VectorAssembler
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recspark.config import Config, Section, expand
from recspark.errors import DataNotFoundError
from recspark.io.download import resolve_data_dir
from recspark.io.ingested import read_genome, read_movies, read_tags
from recspark.models.bias import BiasModel
from recspark.models.contract import Ability, ModelSpec
from recspark.models.neighbours.knn import ITEM, KnnModel, check_k, neighbour_batch, neighbour_schema, residual_table
from recspark.models.neighbours.matrix import map_column_blocks
from recspark.schema import FEATURES, GENRES, MOVIE_ID, RELEVANCE, TAG, TAG_ID, TITLE
from recspark.similarity import top_k

_logger = logging.getLogger(__name__)

_TOKENS, _TAGS, _GENRE_VEC, _TAG_TF, _TAG_VEC = "_tokens", "_tags", "_genre_vec", "_tag_tf", "_tag_vec"
_GENOME, _GENOME_VEC, _POS = "_genome", "_genome_vec", "_pos"


class ContentConfig(Section):
    """``content_knn`` settings (see the module docstring)."""

    k: int = Field(40, ge=1)
    neighbours: int = Field(100, ge=1)
    tag_vocabulary: int = Field(2000, ge=1)
    min_tag_movies: int = Field(2, ge=1)
    max_cells: int = Field(2_000_000, ge=1000)
    damping: float = Field(1.0, ge=0)  # as item_knn.damping
    clusters: int = Field(0, ge=0)  # movie clusters (jobs/movie_clusters.py); 0 = one per genre
    clusters_dir: str = "out/movie_clusters"

    @model_validator(mode="after")
    def _k_within_kept(self) -> "ContentConfig":
        check_k(self.k, self.neighbours)
        return self


def _unit(df: DataFrame, col: str, out: str) -> DataFrame:
    return Normalizer(inputCol=col, outputCol=out, p=2.0).transform(df).drop(col)


def genome_map(genome: DataFrame) -> tuple[DataFrame, int]:
    """(movie_id, ``_genome``: map position → centred relevance) of the genome scores
    (movie_id, tag_id, relevance), and the number of genome tags T (positions 0..T−1 in
    tag id order). Action: collects the distinct tag ids (T rows)."""
    tag_ids = sorted(int(r[0]) for r in genome.select(TAG_ID).distinct().collect())
    spark = genome.sparkSession
    positions = spark.createDataFrame([(t, i) for i, t in enumerate(tag_ids)], f"{TAG_ID} long, {_POS} int")
    means = genome.groupBy(TAG_ID).agg(F.avg(RELEVANCE).alias("_mean"))
    centred = genome.join(F.broadcast(means), TAG_ID).join(F.broadcast(positions), TAG_ID)
    per_movie = centred.groupBy(MOVIE_ID).agg(
        F.map_from_entries(F.collect_list(F.struct(_POS, F.col(RELEVANCE) - F.col("_mean")))).alias(_GENOME)
    )
    return per_movie, len(tag_ids)


def movie_features(
    movies: DataFrame, tags: DataFrame, *, cfg: ContentConfig, genome: DataFrame | None = None
) -> DataFrame:
    """(movie_id, features): one unit-norm sparse ml Vector per movie of ``movies``
    (movie_id, title, genres) from its genres, decade, the TF-IDF of its ``tags``
    (movie_id, tag) and, when given, its centred ``genome`` relevances (movie_id, tag_id,
    relevance; see the module docstring). Fits two CountVectorizers and an IDF (Spark jobs)."""
    decade = F.regexp_extract(F.col(TITLE), r"\((\d{3})\d\)\s*$", 1)
    tokens = movies.select(
        MOVIE_ID,
        F.concat(
            F.split(F.coalesce(F.col(GENRES), F.lit("")), r"\|"),
            F.when(decade != "", F.array(F.concat(F.lit("decade:"), decade, F.lit("0")))).otherwise(F.array()),
        ).alias(_TOKENS),
    )
    genre = CountVectorizer(inputCol=_TOKENS, outputCol=_GENRE_VEC, binary=True).fit(tokens)
    per_movie = tags.groupBy(MOVIE_ID).agg(F.collect_list(F.lower(F.trim(F.col(TAG)))).alias(_TAGS))
    frame = genre.transform(tokens).join(per_movie, MOVIE_ID, "left").withColumn(
        _TAGS, F.coalesce(F.col(_TAGS), F.array().cast("array<string>"))
    )
    tf = CountVectorizer(
        inputCol=_TAGS, outputCol=_TAG_TF, vocabSize=cfg.tag_vocabulary, minDF=float(cfg.min_tag_movies)
    ).fit(frame)
    frame = tf.transform(frame)
    frame = IDF(inputCol=_TAG_TF, outputCol=_TAG_VEC).fit(frame).transform(frame)
    frame = _unit(_unit(frame, _GENRE_VEC, "_g"), _TAG_VEC, "_t")
    parts = ["_g", "_t"]
    if genome is not None:
        relevance, width = genome_map(genome)
        dense = F.transform(  # a movie outside the genome (null map) gets zeros
            F.sequence(F.lit(0), F.lit(width - 1)), lambda i: F.coalesce(F.element_at(_GENOME, i), F.lit(0.0))
        )
        frame = frame.join(relevance, MOVIE_ID, "left").withColumn(_GENOME_VEC, array_to_vector(dense))
        frame = _unit(frame.drop(_GENOME), _GENOME_VEC, "_r")
        parts.append("_r")
    assembled = VectorAssembler(inputCols=parts, outputCol="_all").transform(frame)
    return _unit(assembled, "_all", FEATURES).select(MOVIE_ID, FEATURES)


def find_genome(spark, cfg: Config) -> DataFrame | None:
    """The genome scores (movie_id, tag_id, relevance) in the raw folder of the configured
    data set (:func:`recspark.io.ingested.read_genome`), or None when it has none or the
    raw folder is not at hand (never downloaded for this)."""
    try:
        where = resolve_data_dir(cfg.data.replace(download=False))
    except DataNotFoundError:
        _logger.info("no raw data folder for %s: content features without the tag genome", cfg.data.dataset)
        return None
    found = read_genome(spark, where)
    _logger.info("tag genome: %s", "genome-scores.csv read" if found else f"none in {where}")
    return None if found is None else found[0]


def _entries(vector) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of the non-zeros of an ml Vector, sparse or dense."""
    if hasattr(vector, "indices"):
        return np.asarray(vector.indices, dtype=np.int64), np.asarray(vector.values)
    dense = vector.toArray()
    nz = np.flatnonzero(dense)
    return nz, dense[nz]


def feature_matrix(features: DataFrame) -> tuple[np.ndarray, sp.csc_matrix]:
    """(movie ids ascending, features × movies CSC) of (movie_id, features). Action: collect."""
    rows = features.orderBy(MOVIE_ID).collect()
    ids = np.array([r[MOVIE_ID] for r in rows], dtype=np.int64)
    width = rows[0][FEATURES].size if rows else 0
    parts = [_entries(r[FEATURES]) for r in rows]
    indptr = np.concatenate([[0], np.cumsum([p[0].size for p in parts])]).astype(np.int64)
    indices = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    values = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    # the CSR of movies × features is the CSC of features × movies
    return ids, sp.csc_matrix((values, indices, indptr), shape=(width, ids.size))


def _content_block(matrix: sp.csc_matrix, cols: np.ndarray, *, ids: np.ndarray, k: int) -> pa.RecordBatch:
    sims = np.asarray((matrix[:, cols].T @ matrix).toarray())  # unit columns: cosine
    rows, nbr, vals = top_k(sims, k, exclude=cols)
    return neighbour_batch(ids[cols[rows]], ids[nbr], vals, np.zeros(rows.size), ITEM)


def content_neighbours(features: DataFrame, *, k: int, max_cells: int) -> DataFrame:
    """The ``k`` most content-similar movies of every movie (movie_id, neighbour_id,
    similarity = cosine, co_support = 0), block by block. Action: collects the features."""
    ids, matrix = feature_matrix(features)
    fn = functools.partial(_content_block, ids=ids, k=k)
    return map_column_blocks(features.sparkSession, matrix, fn, neighbour_schema(ITEM), max_cells=max_cells)


def content_knn_model(
    train: DataFrame, movies: DataFrame, tags: DataFrame, *, cfg: ContentConfig, bias: BiasModel,
    lo: float = 0.5, hi: float = 5.0, genome: DataFrame | None = None,
) -> KnnModel:
    """``content_knn`` fitted on ``train`` (user_id, movie_id, rating) with the content of
    ``movies`` (movie_id, title, genres; every movie gets neighbours, rated in training or
    not), ``tags`` (movie_id, tag) and the optional ``genome`` scores. Actions: the feature fits; the neighbour table and
    the residuals are computed and cached."""
    features = movie_features(movies, tags, cfg=cfg, genome=genome)
    neighbours = content_neighbours(features, k=cfg.neighbours, max_cells=cfg.max_cells).localCheckpoint()
    _logger.info("content_knn: %d content neighbours kept per movie", cfg.neighbours)
    return KnnModel(
        name="content_knn", side="item", k=cfg.k, neighbours=neighbours,
        residuals=residual_table(train, bias), bias=bias, lo=lo, hi=hi, damping=cfg.damping,
    )


def fit_content_knn(
    train: DataFrame, *, cfg: ContentConfig, root_cfg: Config, bias: BiasModel, lo: float,
    hi: float,
) -> KnnModel:
    """The registry's fit: :func:`content_knn_model` with the movies and tags of the
    ingested data set of ``root_cfg`` and its tag genome (:func:`find_genome`)."""
    where = expand(root_cfg.ingest_dir())
    spark = train.sparkSession
    return content_knn_model(
        train, read_movies(spark, where), read_tags(spark, where), cfg=cfg, bias=bias, lo=lo, hi=hi,
        genome=find_genome(spark, root_cfg),
    )


SPEC = ModelSpec(
    name="content_knn",
    summary="kNN with baseline over content neighbours (genres, decade, tag TF-IDF): cold movies too",
    fit=fit_content_knn,
    abilities=frozenset({Ability.PREDICT, Ability.TOP_N, Ability.SAVE}),
    config=ContentConfig,
    load=KnnModel.load,
)
