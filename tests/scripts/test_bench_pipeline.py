"""scripts/bench_pipeline.py: the step runner and the figures it derives (no Spark)."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import bench_pipeline as bp  # noqa: E402


def test_run_step_sums_the_stage_times_of_the_log(tmp_path: Path) -> None:
    code = (
        "print('12:00:00 INFO recspark: fit als done in 1.5 s');"
        "print('12:00:01 INFO recspark: fit als done in 2.0 s');"
        "print('12:00:02 INFO recspark.x: top-10 recommendations of als done in 0.25 s');"
        "print('noise done in 9 s')"
    )
    r = bp.run_step("demo", [sys.executable, "-c", code], {}, tmp_path / "demo.log")
    assert r["stages"] == {"fit als": 3.5, "top-10 recommendations of als": 0.25}
    assert r["wall_s"] > 0 and len(r["load_before"]) == 3


def test_run_step_raises_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="step bad failed"):
        bp.run_step("bad", [sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "b.log")


def test_run_or_reuse_keeps_the_results_and_reuses_them_only_when_asked(tmp_path: Path) -> None:
    first = bp.run_or_reuse("demo", [sys.executable, "-c", "print(1)"], {}, tmp_path, reuse=True)
    assert json.loads((tmp_path / "demo.json").read_text()) == first
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    assert bp.run_or_reuse("demo", failing, {}, tmp_path, reuse=True) == first  # not run again
    with pytest.raises(RuntimeError, match="step demo failed"):
        bp.run_or_reuse("demo", failing, {}, tmp_path, reuse=False)


def _step(wall: float, pss: float = 1.0, stages: dict | None = None) -> dict:
    return {"wall_s": wall, "cpu_s": 2 * wall, "peak_pss_gb": pss, "stages": stages or {},
            "load_before": [1.0, 1.0, 1.0], "load_after": [3.0, 2.0, 1.0]}


def test_figures_per_million_ratings_and_ratios(tmp_path: Path) -> None:
    (tmp_path / "ingest").mkdir()
    report = {"files": {"ratings.csv": {"rows_read": 4_000_000}}}
    (tmp_path / "ingest" / "report.json").write_text(json.dumps(report))
    (tmp_path / "als").mkdir()
    als = {"results": [{"model": "recspark", "fit_s": 30.0}, {"model": "mllib", "fit_s": 120.0}]}
    (tmp_path / "als" / "results.json").write_text(json.dumps(als))
    topn = {"top-10 recspark": 20.0, "top-10 mllib recommendForAllUsers": 50.0}
    steps = {
        "generate": _step(99.0),
        "bare": _step(10.0),
        "ingest": _step(14.0, 2.0),
        "train": _step(100.0, 7.5),
        "segment": _step(40.0),
        "rescore": _step(6.0),
        "topn": _step(80.0, stages=topn),
    }
    f = bp._figures(steps, tmp_path)
    assert f["ratings"] == 4_000_000
    assert f["s_per_m_ratings"]["ingest"] == pytest.approx(3.5)
    assert f["cpu_s_per_m_ratings"]["ingest"] == pytest.approx(7.0)
    assert "generate" not in f["s_per_m_ratings"]
    assert f["pipeline_s"] == pytest.approx(160.0)  # ingest + train + segment + rescore
    assert f["peak_pss_gb"] == 7.5
    ratios = f["ratios"]
    assert ratios["ingest / bare (<= 1.5)"] == pytest.approx(1.4)
    assert ratios["als fit / MLlib fit (<= 0.3)"] == pytest.approx(0.25)
    assert ratios["top-10 recspark / recommendForAllUsers (< 1)"] == pytest.approx(0.4)


def test_figures_without_an_ingest_step_have_nothing_per_rating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # e.g. a run that only generates the data: every step skipped, no ingest report
    f = bp._figures({"generate": _step(40.0)}, tmp_path)
    assert f["ratings"] is None and f["ratios"] == {} and f["s_per_m_ratings"] == {}
    bp._print_shape({"fraction": "1", "steps": {"generate": _step(40.0)}, **f})
    assert "ingest skipped" in capsys.readouterr().out


def test_generate_args_scale_the_ml32m_shape(tmp_path: Path) -> None:
    args = dict(a.split("=", 1) for a in bp._generate_args(Fraction(1, 8), tmp_path / "d"))
    assert int(args["generate.ratings"]) == round(32_000_204 / 8)
    assert int(args["generate.users"]) == round(200_948 / 8)
    assert args["generate.output_dir"] == str(tmp_path / "d")


def test_plot_draws_wall_and_cpu_panels(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    shapes = [
        {"fraction": f, "ratings": n, "steps": {"ingest": _step(n / 1e6)},
         "s_per_m_ratings": {"ingest": 1.0}, "cpu_s_per_m_ratings": {"ingest": 2.0}}
        for f, n in (("1/8", 4_000_000), ("1", 32_000_000))
    ]  # fmt: skip
    assert bp._load_range(shapes[0]) == "1.0–3.0"
    bp._plot(shapes, tmp_path / "scaling.png")
    height, width, _ = mpimg.imread(tmp_path / "scaling.png").shape
    assert width > 1.5 * height  # two panels side by side
