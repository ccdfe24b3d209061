"""PNG plots, drawn with matplotlib's Agg backend and written through the Hadoop file system.

Plot inputs are small pandas frames (summaries, curves), never the ratings themselves.
"""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402


def save_figure(spark: SparkSession, fig: "plt.Figure", path: str) -> None:
    """Write ``fig`` as PNG to ``path`` (local or any Hadoop file system) and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out = fs.create(hpath, True)
    try:
        out.write(bytearray(buf.getvalue()))
    finally:
        out.close()


def line_chart(
    spark: SparkSession,
    data: pd.DataFrame,
    *,
    x: str,
    ys: Sequence[str],
    path: str,
    title: str,
    xlabel: str | None = None,
    ylabel: str | None = None,
    logx: bool = False,
    logy: bool = False,
    marker: str | None = "o",
) -> None:
    """One line per column in ``ys`` against ``x``; saved as PNG at ``path``."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for y in ys:
        ax.plot(data[x], data[y], marker=marker, markersize=3, label=y)
    ax.set_title(title)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or (ys[0] if len(ys) == 1 else "value"))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(ys) > 1:
        ax.legend()
    ax.grid(True, alpha=0.3)
    save_figure(spark, fig, path)
