"""The notebook API: the README's example, run as written against a real run."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO


def readme_example() -> str:
    """The Python block after ``<!-- notebook example -->`` in README.md."""
    text = (REPO / "README.md").read_text()
    found = re.search(r"<!-- notebook example -->\s*```python\n(.*?)```", text, re.S)
    assert found, "README.md has no notebook example"
    return found.group(1)


@pytest.mark.slow
def test_readme_notebook_example_runs(spark, small_run, sample_ingest):
    runs_dir = small_run.runs_dir
    code = readme_example().replace('"out/runs"', repr(runs_dir))
    scope = {"spark": spark}
    exec(compile(code, "README.md", "exec"), scope)
    board, recs, similar, predicted = (scope[k] for k in ("board", "recs", "similar", "predicted"))
    assert list(board["model"])[0] == "als" or "als" in list(board["model"])
    assert recs.count() == 2 * 5 and recs.select("user_id").distinct().count() == 2
    assert set(recs.columns) >= {"user_id", "rank", "movie_id", "score", "title"}
    rated = {r.movie_id for r in spark.read.parquet(f"{sample_ingest.ingest_dir}/ratings").where("user_id = 1").collect()}
    assert not rated & {r.movie_id for r in recs.where("user_id = 1").collect()}
    assert similar.count() == 5 and similar.first()["title"] == "Toy Story (1995)"
    assert predicted.count() == 2 and predicted.where("prediction between 0.5 and 5").count() == 2


def test_a_model_asked_for_what_it_cannot_do_says_which_models_can():
    from recspark.api import Model
    from recspark.errors import ModelError
    from recspark.models import registry

    model = Model(registry.spec("popularity"), fitted=None)
    with pytest.raises(ModelError, match="cannot predict ratings; models that can: .*bias"):
        model.predict(None)
    with pytest.raises(ModelError, match="cannot compare movies"):
        model.similar([1])
