import pytest

from recspark.io import storage


def test_staged_publish_replaces_and_failure_keeps_the_old_output(spark, tmp_path):
    target = str(tmp_path / "out")
    with storage.staged(spark, target) as staging:
        spark.range(3).write.parquet(f"{staging}/t")
    assert spark.read.parquet(f"{target}/t").count() == 3

    with pytest.raises(RuntimeError):
        with storage.staged(spark, target) as staging:
            spark.range(10).write.parquet(f"{staging}/t")
            raise RuntimeError("killed half-way")
    assert spark.read.parquet(f"{target}/t").count() == 3
    assert storage.list_dir(spark, str(tmp_path)) == ["out"]  # staging cleaned up

    with storage.staged(spark, target) as staging:
        spark.range(5).write.parquet(f"{staging}/t")
    assert spark.read.parquet(f"{target}/t").count() == 5
    assert storage.list_dir(spark, str(tmp_path)) == ["out"]


def test_text_round_trip(spark, tmp_path):
    path = str(tmp_path / "a.toml")
    storage.write_text(spark, path, "seed = 42\nnamé = 'ü'\n")
    assert storage.read_text(spark, path) == "seed = 42\nnamé = 'ü'\n"
    assert storage.exists(spark, path)
