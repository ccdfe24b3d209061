"""PNG plots, drawn with matplotlib's Agg backend and written through the Hadoop file system.

Every picture the jobs write is drawn here: line charts (ingest statistics, convergence
histories, rank sweeps, silhouette and blend curves) and the latent-space PCA scatters.
Plot inputs are small pandas frames or driver arrays (summaries, curves, samples), never
the ratings themselves.
"""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

from recspark.schema import (  # noqa: E402
    ITERATION,
    MAE,
    METRIC,
    MODEL,
    OBJECTIVE,
    RMSE,
    SWEEP_K,
    TRAIN_RMSE,
    VALIDATION_RMSE,
    VALUE,
)


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
    ax.set_ylabel(ylabel or (ys[0] if len(ys) == 1 else VALUE))
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(ys) > 1:
        ax.legend()
    ax.grid(True, alpha=0.3)
    save_figure(spark, fig, path)


def sweep_chart(
    spark: SparkSession, rows: pd.DataFrame, *, out_dir: str, title: str | None = None
) -> str:
    """PNG of RMSE (left axis) and MAE (right axis) against k from a rank sweep (columns
    model, k, metric, value; :func:`recspark.evaluation.sweeps.sweep_rows`), the k of the
    least RMSE marked, written to ``<out_dir>/<model>_sweep.png`` (local or any Hadoop file
    system); returns that path.

    The two errors get their own axes because they differ by ~0.2 while each moves by
    ~0.005 over the sweep: on one axis both would be flat lines."""
    wide = rows.pivot_table(index=SWEEP_K, columns=METRIC, values=VALUE).reset_index()
    wide = wide.sort_values(SWEEP_K)
    name = rows[MODEL].iloc[0] if len(rows) else "svd"
    path = f"{out_dir.rstrip('/')}/{name}_sweep.png"
    fig, left = plt.subplots(figsize=(7, 4.5))
    lines = []
    if RMSE in wide:
        lines += left.plot(wide[SWEEP_K], wide[RMSE], marker="o", markersize=3, color="C0",
                           label="RMSE (left axis)")
        best = wide.loc[wide[RMSE].idxmin()]
        left.axvline(best[SWEEP_K], color="grey", linestyle="--", linewidth=1)
        at_right = best[SWEEP_K] == wide[SWEEP_K].max()  # keep the label off the right axis
        left.annotate(f"best k = {int(best[SWEEP_K])}\nRMSE {best[RMSE]:.4f}",
                      (best[SWEEP_K], best[RMSE]), textcoords="offset points",
                      xytext=(-75 if at_right else 8, 12), fontsize=8)
    left.set_xlabel("k (latent factors)")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("test RMSE", color="C0")
    if MAE in wide:
        right = left.twinx()
        lines += right.plot(wide[SWEEP_K], wide[MAE], marker="s", markersize=3, color="C1",
                            label="MAE (right axis)")
        right.set_ylabel("test MAE", color="C1")
    if lines:
        left.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    left.set_title(title or f"{name}: test error by rank")
    left.grid(True, alpha=0.3)
    save_figure(spark, fig, path)
    return path


def convergence_chart(spark: SparkSession, history: pd.DataFrame, *, path: str, title: str) -> None:
    """PNG of the training RMSE and (when recorded) validation RMSE per iteration of a
    convergence history (columns iteration, train_rmse[, validation_rmse]), each curve
    labelled, the best validation iteration marked; of the ``objective`` instead when no
    RMSE was recorded (a ranking-only model such as implicit ALS)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ylabel = "RMSE"
    if not history[TRAIN_RMSE].notna().any() and OBJECTIVE in history:
        ylabel = OBJECTIVE
        ax.plot(history[ITERATION], history[OBJECTIVE], marker="o", markersize=3,
                label="training objective (confidence-weighted loss)")
    else:
        ax.plot(history[ITERATION], history[TRAIN_RMSE], marker="o", markersize=3,
                label="training RMSE (ratings fitted on)")
    if VALIDATION_RMSE in history and history[VALIDATION_RMSE].notna().any():
        ax.plot(history[ITERATION], history[VALIDATION_RMSE], marker="s", markersize=3,
                label="validation RMSE (held-out ratings)")
        best = history.loc[history[VALIDATION_RMSE].idxmin()]
        ax.axvline(best[ITERATION], color="grey", linestyle="--", linewidth=1,
                   label=f"best validation: iteration {int(best[ITERATION])}")
    else:
        title += " (no validation set)"
    ax.set_title(title)
    ax.set_xlabel(ITERATION)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    save_figure(spark, fig, path)


#: Genre groups of the movies' picture, in priority order: a movie goes to the first group
#: holding one of its genres. Seven colours a reader can tell apart, instead of 20 genres.
GENRE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Children & Animation", ("Children", "Animation")),
    ("Horror & Thriller", ("Horror", "Thriller", "Mystery")),
    ("Action, Adventure & Sci-Fi", ("Action", "Adventure", "Sci-Fi", "Fantasy", "IMAX")),
    ("Comedy & Romance", ("Comedy", "Romance", "Musical")),
    ("Drama, Crime & War", ("Drama", "Crime", "War", "Film-Noir", "Western")),
    ("Documentary", ("Documentary",)),
)
OTHER_GROUP = "other"


def genre_group(genres: str | None) -> str:
    """The :data:`GENRE_GROUPS` group of a ``|``-separated MovieLens genre list; ``other``
    for none of them (or "(no genres listed)", or None)."""
    listed = set((genres or "").split("|"))
    for group, members in GENRE_GROUPS:
        if listed.intersection(members):
            return group
    return OTHER_GROUP


def pca_scatter(
    spark: SparkSession,
    coords: np.ndarray,
    ratio: np.ndarray,
    labels: pd.Series,
    *,
    path: str,
    title: str,
    n_total: int,
    max_groups: int = 20,
) -> None:
    """Scatter of 2-D PCA ``coords`` (n × 2, explained variance ``ratio`` of the two axes),
    one colour per ``labels`` value (the ``max_groups`` most frequent; the rest grey
    "other"), saved as PNG; the title says how many of ``n_total`` points are drawn."""
    fig, ax = plt.subplots(figsize=(7, 6))
    if len(coords) >= 2:
        labels = labels.astype(str)
        keep = labels.value_counts().index[:max_groups]
        labels = labels.where(labels.isin(keep), "other")
        for value in sorted(labels.unique(), key=lambda v: (v == "other", v)):
            hit = (labels == value).to_numpy()
            colour = {"color": "lightgrey"} if value == "other" else {}
            ax.scatter(coords[hit, 0], coords[hit, 1], s=4, alpha=0.5,
                       label=f"{value} ({hit.sum()})", **colour)
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}% of variance)")
        ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set_title(f"{title}\n{len(coords)} of {n_total} points")
    ax.grid(True, alpha=0.3)
    save_figure(spark, fig, path)


def trial_chart(
    spark: SparkSession, trials: pd.DataFrame, *, param: str, metric: str, path: str, title: str
) -> None:
    """PNG of a search's ``metric`` against one searched ``param`` (columns of ``trials``,
    one row per trial): every trial as a dot (with its ``<metric>_std`` as an error bar
    when present) and the best trial at each value joined by a line. Text values are
    placed evenly in their sorted order."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    values = trials[param]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    order = sorted(values.astype(str).unique()) if not numeric else None
    xs = values.to_numpy(float) if numeric else values.astype(str).map(order.index).to_numpy(float)
    std = trials.get(f"{metric}_std")
    ax.errorbar(xs, trials[metric], yerr=None if std is None else std.fillna(0.0), fmt="o",
                markersize=4, alpha=0.6, capsize=2, label="trials")
    best = pd.DataFrame({"x": xs, "y": trials[metric]}).groupby("x")["y"]
    best = best.max() if metric.split("@")[0] not in (RMSE, MAE) else best.min()
    ax.plot(best.index, best.to_numpy(), marker="s", label="best at each value")
    if not numeric:
        ax.set_xticks(range(len(order)), order)
    ax.set_title(title)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.legend()
    ax.grid(True, alpha=0.3)
    save_figure(spark, fig, path)
