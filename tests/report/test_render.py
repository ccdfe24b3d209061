"""The run report: rendering of hand-made content, and a real ml-latest-small run opened
in headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest

from recspark.evaluation.leaderboard import leaderboard
from recspark.report.collect import Content, Picture, boards
from recspark.report.render import render

PNG_1PX = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


class _Tables(HTMLParser):
    """Collects the leaderboard cells (data-metric) and the img sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str, str]] = []  # (kind, metric, text)
        self.images: list[str] = []
        self._kind = self._metric = None
        self._row_model = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "leaderboard" in (a.get("class") or ""):
            self._kind = a["data-kind"]
        elif tag == "td" and self._kind:
            self._metric, self._text = a.get("data-metric") or "model", ""
        elif tag == "img":
            self.images.append(a["src"])

    def handle_data(self, data):
        if self._metric:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "td" and self._metric:
            if self._metric == "model":
                self._row_model = self._text.strip()
            else:
                self.cells.append((self._kind, self._row_model, self._metric, self._text.strip()))
            self._metric = None
        elif tag == "table":
            self._kind = None


def _content(metrics: pd.DataFrame, **more) -> Content:
    fields = dict(
        run_id="r1", run_dir="/runs/r1", boards=boards(metrics, main_kind="random", k=10),
        data_stats={"ratings": 4, "users": 2}, data_files=[], pictures={
            "data": [Picture("<b>hist</b>", f"data:image/png;base64,{PNG_1PX}", "x")],
            "convergence": [], "sweeps": [], "segments": []},
        segment_profiles=None, segment_metrics=None, similar=[], samples=[],
        timings=[("fit als", 1.25)], rescores=[], config_text="seed = 42\n[x]\ny = '<script>'",
    )
    fields.update(more)
    return Content(**fields)


def test_render_marks_best_values_and_escapes_text():
    metrics = pd.DataFrame(
        [("r1", m, "random/test", "rmse", v) for m, v in [("bias", 0.9), ("als", 0.8)]],
        columns=["run_id", "model", "split", "metric", "value"],
    )
    html = render(_content(metrics))
    parsed = _Tables()
    parsed.feed(html)
    assert ("random", "als", "rmse", "0.8000") in parsed.cells
    assert re.search(r'class=" best" data-metric="rmse">0.8000<', html)
    assert "<script>" not in html and "&lt;script&gt;" in html  # the config is escaped
    assert "&lt;b&gt;hist&lt;/b&gt;" in html
    assert parsed.images == [f"data:image/png;base64,{PNG_1PX}"]
    assert "fit als" in html and "1.2" in html


def _decodes(uri: str) -> bool:
    head, data = uri.split(",", 1)
    assert head == "data:image/png;base64"
    image = mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")
    return image.shape[0] > 50 and image.shape[1] > 50


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=1", "--window-size=1280,6000",
]


@pytest.mark.slow
def test_report_of_a_real_run(spark, small_run, tmp_path):
    run_dir = small_run.run_dir
    html = Path(run_dir, "report.html").read_text()
    parsed = _Tables()
    parsed.feed(html)

    # the leaderboard's numbers are the metrics table's
    metrics = spark.read.parquet(f"{run_dir}/metrics").toPandas()
    board = leaderboard(metrics, kind="random", k=10).set_index("model")
    shown = [c for c in parsed.cells if c[0] == "random"]
    assert {m for _, m, _, _ in shown} == {"bias", "popularity", "als", "svd"}
    for _, model, metric, text in shown:
        value = board.at[model, metric]
        if pd.isna(value):
            assert text == "", (model, metric)
        else:
            digits = 1 if metric == "fit_seconds" else 4
            assert text == f"{value:.{digits}f}", (model, metric, text)

    # every picture: convergence, sweep, ingest statistics, segment pictures; all decode
    for caption in ("als: RMSE per iteration", "svd: test error by rank k", "Ratings by value",
                    "User factors (PCA), coloured by segment",
                    "Movie factors (PCA), coloured by genre group"):
        assert caption in html, caption
    assert len(parsed.images) >= 8
    assert all(_decodes(uri) for uri in parsed.images)
    for section in ("Data set and data quality", "Segments", "Similar movies",
                    "Sample top-10 lists", "Stage timings", "Resolved configuration"):
        assert section in html, section
    assert "Forrest Gump (1994)" in html  # the most-rated movie has its neighbours listed

    # opened in headless Chromium: a screenshot, no console message
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (see .ci/run)")
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", f"file://{run_dir}/report.html"],
        capture_output=True, text=True, timeout=180,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    keep = Path("/tmp/report-screenshot.png")
    shutil.copy(shot, keep)  # for a human to look at
