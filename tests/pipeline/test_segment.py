"""The segment pipeline: end to end on ml-latest-small, and loading a model from a run folder."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from recspark.config import load_config
from recspark.errors import ConfigError, DataNotFoundError
from recspark.pipeline.segment import find_run, run_segment
from recspark.schema import (
    MOVIE_ID,
    RANK,
    SIMILAR_MOVIE_ID,
    SIMILAR_TITLE,
    SIMILARITY,
    TITLE,
)

_logger = logging.getLogger(__name__)


def _cfg(tmp: Path, sample_dir: Path, *extra: str):
    return load_config(
        overrides=[
            f"data.dir={sample_dir}",
            "data.download=false",
            f"ingest.output_dir={tmp}/ingest/{{dataset}}",
            "ingest.user_blocks=2",
            f"train.output_dir={tmp}/runs",
            f"segment.output_dir={tmp}/segments",
            "spark.shuffle_partitions=2",
            "als.blocks=2",
            *extra,
        ]
    )


def test_bad_config_and_missing_run(spark, tmp_path, sample_dir):
    with pytest.raises(ConfigError, match="segment.model"):
        run_segment(spark, _cfg(tmp_path, sample_dir, "segment.model=bias"))
    with pytest.raises(ConfigError, match="segment.k"):
        run_segment(spark, _cfg(tmp_path, sample_dir, "segment.k=1"))
    cfg = _cfg(tmp_path, sample_dir, "segment.source=run")
    assert find_run(spark, cfg) is None


@pytest.mark.slow
def test_segment_pipeline_end_to_end_on_ml_latest_small(spark, tmp_path, sample_dir, sample_ingest):
    ingest = f"ingest.output_dir={sample_ingest.ingest_dir}"
    cfg = _cfg(tmp_path, sample_dir, ingest, "segment.k_min=2", "segment.k_max=6", "segment.source=auto")
    with pytest.raises(DataNotFoundError, match="segment.source=fit"):
        run_segment(spark, _cfg(tmp_path, sample_dir, ingest, "segment.source=run"))

    result = run_segment(spark, cfg)
    out = Path(result.output_dir)
    assert result.source == "fit" and 2 <= result.k <= 6
    for name in ("segments", "profiles", "silhouette", "metrics", "blend_curve", "similar_movies"):
        assert (out / name / "_SUCCESS").is_file(), name
    for png in ("silhouette.png", "blend_curve.png", "users_pca.png", "movies_pca.png"):
        assert (out / png).stat().st_size > 5_000, png
    assert (out / "config.toml").is_file()

    profiles = result.profiles
    assert len(profiles) == result.k
    assert profiles["size"].sum() == 610  # every ml-latest-small user is clustered
    assert profiles["share"].sum() == pytest.approx(1.0)
    assert profiles["mean_rating"].between(0.5, 5.0).all()

    metrics = result.metrics
    assert set(metrics["split"]) == {"validation", "test", "segments"}
    base = result.value("als", "test", "rmse")
    seg = result.value("als+segment", "test", "rmse")
    assert 0.6 < base < 1.2 and 0.6 < seg < 1.2
    if result.blend_weight == 0.0:
        assert seg == pytest.approx(base)

    similar = pq.read_table(out / "similar_movies").to_pandas()
    assert list(similar.columns) == [MOVIE_ID, RANK, SIMILAR_MOVIE_ID, SIMILARITY, TITLE, SIMILAR_TITLE]
    assert (similar[MOVIE_ID] != similar[SIMILAR_MOVIE_ID]).all()
    assert similar.groupby(MOVIE_ID)[RANK].max().eq(10).all()
    assert similar[SIMILARITY].between(-1 - 1e-9, 1 + 1e-9).all()

    _logger.warning(
        "FIGURES k=%d w=%.2f\nprofiles:\n%s\nmetrics:\n%s\nsimilar to Toy Story:\n%s",
        result.k, result.blend_weight,
        profiles.drop(columns=["top_movies"]).to_string(),
        metrics.to_string(),
        similar[similar[MOVIE_ID] == 1].to_string(),
    )

    # the same folder layout from a train run's saved model: source=run loads it
    from recspark.io.ingested import read_ratings
    from recspark.models import registry
    from recspark.models.bias import fit_bias
    from recspark.split import random_split

    ratings = read_ratings(spark, cfg.ingest_dir())
    small, _ = random_split(ratings, test_fraction=0.5, seed=1)
    model = registry.fit("als", small, cfg=cfg, bias=fit_bias(small, cfg=cfg.bias))
    model.save(f"{tmp_path}/runs/20990101T000000Z/models/als")
    loaded = run_segment(spark, _cfg(tmp_path, sample_dir, ingest, "segment.source=run", "segment.k=3"))
    assert (loaded.source, loaded.run_id, loaded.k) == ("run", "20990101T000000Z", 3)
    assert Path(loaded.output_dir, "profiles", "_SUCCESS").is_file()


def test_a_fixed_k_above_the_users_exits_2_before_any_fit(tmp_path, run_job_script, caplog):
    # issue 11: four users and segment.k = 6 died in KMeans with an
    # ArrayIndexOutOfBoundsException; now the size check stops it naming the setting
    ingest = tmp_path / "ingest" / "tiny"
    ingest.mkdir(parents=True)
    (ingest / "report.json").write_text(
        '{"layout": "csv", "index": {"users": 4, "movies": 6, "user_blocks": 1}}'
    )
    argv = ["--set", "data.dataset=tiny", "--set", f"ingest.output_dir={tmp_path}/ingest/{{dataset}}",
            "--set", "segment.k=6", "--set", "segment.source=fit"]
    assert run_job_script("segment", argv) == 2
    assert "segment.k = 6 cannot work: the data has 4 users" in caplog.text
