"""Render the run report: one self-contained HTML file, pictures inlined as data URIs.

The template is ``templates/report.html.j2`` (Jinja2, autoescaped); its content comes from
:func:`recspark.report.collect.collect`. The file is ``<run_dir>/report.html``, written
through the Hadoop file system beside the run's other outputs; the segment and re-score
jobs write it again, extended by their results.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone

import jinja2
import pandas as pd
from markupsafe import Markup
from pyspark.sql import SparkSession

from recspark.config import Config
from recspark.errors import ConfigError
from recspark.io import runs, storage
from recspark.log import stage
from recspark.report.collect import Content, Picture, collect
from recspark.schema import GENRE, LIFT, MEAN_RATING, RUN_ID, TITLE

_logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def _num(value: object) -> str:
    """Integers with thousands separators, other numbers to 4 significant decimals."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if isinstance(value, float) and math.isnan(value):
        return ""
    if float(value).is_integer() and abs(value) >= 1000 or isinstance(value, int):
        return f"{int(value):,}"
    return f"{value:.4g}"


def _figure(p: Picture) -> Markup:
    return Markup('<figure><img src="{}" alt="{}"><figcaption>{}</figcaption></figure>').format(
        p.uri, p.caption, p.caption
    )


def _frame(df: pd.DataFrame) -> Markup:
    """A small frame as an HTML table (escaped; arrays and structs as their text)."""
    shown = df.drop(columns=[RUN_ID], errors="ignore")
    for col in shown.columns:
        if shown[col].dtype == object:
            shown[col] = shown[col].map(_text)
    html = shown.to_html(index=False, escape=True, na_rep="", border=0,
                         float_format=lambda v: f"{v:.4f}")
    return Markup(html)


def _text(value: object) -> object:
    """Nested values (profile arrays of structs) as short readable text."""
    if hasattr(value, "asDict"):
        value = value.asDict()
    if isinstance(value, dict):  # a profile's top movie or genre: its name, lift or mean
        if value.get(TITLE):
            return f"{value[TITLE]} ({value.get(MEAN_RATING, float('nan')):.2f})"
        if value.get(GENRE):
            return f"{value[GENRE]} ({value.get(LIFT, float('nan')):+.2f})"
        return ", ".join(f"{k} {_num(v) if isinstance(v, float) else v}" for k, v in value.items())
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        return "; ".join(str(_text(v)) for v in value)
    return value


def environment() -> jinja2.Environment:
    """The Jinja2 environment of the report template (autoescape on, strict undefined)."""
    env = jinja2.Environment(
        # a package loader also reads the template from dist/recspark.zip (--py-files)
        loader=jinja2.PackageLoader("recspark.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.globals.update(fig=_figure, frame=_frame)
    return env


def render(content: Content) -> str:
    """The report's HTML for ``content``."""
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return environment().get_template("report.html.j2").render(c=content, written=written)


def write_report(spark: SparkSession, cfg: Config, run_dir: str) -> str:
    """Collect and render the report of the train run ``run_dir`` (``cfg``: the run's
    config, or the current one when the run saved none) and write
    ``<run_dir>/report.html``; returns its path."""
    try:
        saved = runs.read_run_config(spark, run_dir)
    except ConfigError as exc:  # a run of an older recspark: report it with today's config
        _logger.warning("the config saved in %s does not load (%s); using the current one", run_dir, exc)
        saved = None
    # The run's own split, k, models and data set; today's segment and re-score folders.
    run_cfg = cfg if saved is None else saved.replace(segment=cfg.segment, rescore=cfg.rescore)
    with stage("report: collect and render report.html", spark):
        html = render(collect(spark, run_cfg, run_dir))
        path = f"{run_dir.rstrip('/')}/{REPORT_FILE}"
        storage.write_text(spark, path, html)
    _logger.info("report written to %s", path)
    return path
