from __future__ import annotations

import re

import pytest

from recspark.errors import ConfigError, DataNotFoundError
from recspark.io import scores, storage


def test_score_dates_are_checked():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", scores.score_date(""))
    assert scores.score_date("2024-02-29") == "2024-02-29"
    for bad in ("2025-02-30", "2025-1-1", "20250101"):
        with pytest.raises(ConfigError, match="rescore.score_date"):
            scores.score_date(bad)


def _publish(spark, out, day, rows, watermark):
    with scores.staged_date(spark, out, day) as staging:
        spark.range(rows).write.parquet(staging)
        scores.write_report(spark, staging, {"rows": rows}, watermark=watermark)


def test_dates_publish_atomically_with_their_watermark(spark, tmp_path):
    out = str(tmp_path / "scores")
    with pytest.raises(DataNotFoundError, match="no published scores"):
        scores.read_scores(spark, out)
    _publish(spark, out, "2025-01-01", 3, 100)
    _publish(spark, out, "2025-01-03", 2, 300)
    with pytest.raises(RuntimeError):
        with scores.staged_date(spark, out, "2025-01-02") as staging:
            spark.range(5).write.parquet(staging)
            raise RuntimeError("killed half-way")
    assert scores.published_dates(spark, out) == ["2025-01-01", "2025-01-03"]
    assert storage.list_dir(spark, f"{out}/{scores.STAGING_DIR}") == []  # cleaned up
    got = scores.read_scores(spark, out).groupBy("score_date").count().collect()
    assert sorted((str(r[0]), r[1]) for r in got) == [("2025-01-01", 3), ("2025-01-03", 2)]
    assert scores.previous_watermark(spark, out, "2025-01-03") == 100
    assert scores.previous_watermark(spark, out, "2025-01-04") == 300
    assert scores.previous_watermark(spark, out, "2025-01-01") is None
    _publish(spark, out, "2025-01-01", 4, 150)  # a date re-run replaces its output
    assert scores.read_scores(spark, out).where("score_date = '2025-01-01'").count() == 4
