from __future__ import annotations

import re

import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recspark.config import TrainConfig, default_config
from recspark.errors import ModelError
from recspark.io import runs


def _cfg(root):
    return default_config().replace(train=TrainConfig(output_dir=str(root)))


def _saved(root, run, model, *, complete=True):
    folder = root / run / "models" / model
    folder.mkdir(parents=True)
    if complete:
        (folder / "model.json").write_text(f'{{"name": "{model}"}}')


def test_new_run_ids_sort_by_time():
    assert re.fullmatch(r"\d{8}T\d{6}Z", runs.new_run_id())


@pytest.mark.parametrize(
    "entry, published",
    [("20250101T000000Z", True), ("r1", True), ("r1._staging-ab12cd34", False),
     ("r1._old-ab12cd34", False), ("_tmp", False), (".hidden", False)],
)
def test_only_finished_runs_are_published(entry, published):
    assert runs.is_published(entry) is published


def test_find_run_is_the_latest_published_run_with_a_complete_model(spark, tmp_path):
    _saved(tmp_path, "20250101T000000Z", "als")
    _saved(tmp_path, "20250102T000000Z._staging-deadbeef", "als")  # being written
    _saved(tmp_path, "20250103T000000Z", "als", complete=False)  # no model.json
    _saved(tmp_path, "20250104T000000Z._old-01234567", "als")  # moved aside
    _saved(tmp_path, "20241231T000000Z", "svd")
    cfg = _cfg(tmp_path)
    assert runs.find_run(spark, cfg, model="als") == f"{tmp_path}/20250101T000000Z"
    assert runs.find_run(spark, cfg, model="svd") == f"{tmp_path}/20241231T000000Z"
    assert runs.find_run(spark, cfg, model="nmf") is None
    # an explicit run id wins, whether or not it holds the model
    assert runs.find_run(spark, cfg, model="nmf", run_id="x") == f"{tmp_path}/x"
    assert runs.model_dir(f"{tmp_path}/x", "nmf") == f"{tmp_path}/x/models/nmf"
    assert runs.run_id_of(f"{tmp_path}/x/") == "x"


def test_model_meta_round_trip_and_errors(spark, tmp_path):
    runs.write_model_meta(spark, str(tmp_path / "m"), {"name": "als", "rank": 3})
    assert runs.read_model_meta(spark, str(tmp_path / "m")) == {"name": "als", "rank": 3}
    with pytest.raises(ValueError, match="registered model"):
        runs.write_model_meta(spark, str(tmp_path / "m"), {"rank": 3})
    with pytest.raises(ModelError, match="no saved model at"):
        runs.read_model_meta(spark, str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model.json is missing"):
        runs.read_model_meta(spark, str(tmp_path / "empty"))
    (tmp_path / "empty" / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        runs.read_model_meta(spark, str(tmp_path / "empty"))
    (tmp_path / "empty" / "model.json").write_text('{"rank": 3}')
    with pytest.raises(ModelError, match="does not name its model"):
        runs.read_model_meta(spark, str(tmp_path / "empty"))


def test_model_tables_are_checked_for_completeness_and_types(spark, tmp_path):
    schema = T.StructType([T.StructField("a", T.LongType()), T.StructField("b", T.DoubleType())])
    df = spark.createDataFrame([(1, 2.0, "x")], "a int, b double, c string")
    # marked for broadcast joins like recspark's small model tables (the mark goes unused)
    runs.write_model_table(F.broadcast(df), schema, str(tmp_path / "m" / "t"))
    back = runs.read_model_table(spark, str(tmp_path / "m"), "t", schema)
    assert back.schema == schema and back.collect()[0].asDict() == {"a": 1, "b": 2.0}
    with pytest.raises(ModelError, match="u/ is missing"):
        runs.read_model_table(spark, str(tmp_path / "m"), "u", schema)
    wrong = T.StructType([T.StructField("a", T.StringType())])
    with pytest.raises(ModelError, match="incompatible schema: a"):
        runs.read_model_table(spark, str(tmp_path / "m"), "t", wrong)


def test_run_config_round_trip(spark, tmp_path):
    cfg = default_config().replace(seed=7)
    runs.write_run_config(spark, str(tmp_path), cfg)
    assert runs.read_run_config(spark, str(tmp_path)) == cfg
    assert runs.read_run_config(spark, str(tmp_path / "none")) is None
