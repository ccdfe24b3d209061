#!/usr/bin/env python
"""Why do a model's top-N lists hold obscure movies? Figures from finished train runs.

    python scripts/ranking_diagnostics.py --run /tmp/small/runs/before --run /tmp/small/runs/after \\
        --png docs/topn_support.png

For every run (a train run folder) it rebuilds the run's training part from its saved
``config.toml`` (the same ingested ratings, split and seed) and counts each movie's training
ratings n_i. Then, per model of ``recommendations/``, for the movies in the top-k lists
(k = the run's ``recommend.k``; every list slot counts once):

- the median n_i and the share of slots holding a movie with n_i <= 2;

and, per saved factor model of ``models/`` (``user_factors``/``item_factors`` tables):

- the five largest item biases with their n_i;
- the median item-factor norm ||q_i|| of movies with n_i <= 2 and with n_i >= 50, and the
  Spearman correlation of ||q_i|| with n_i.

One table is printed; ``--png`` draws, per run, the share of list slots against the
recommended movie's training count (log-spaced bins), one line per model.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from recspark.config import expand  # noqa: E402
from recspark.io import runs, storage  # noqa: E402
from recspark.io.ingested import read_ratings  # noqa: E402
from recspark.log import setup_logging  # noqa: E402
from recspark.schema import (  # noqa: E402
    BIAS,
    FACTORS,
    MODEL,
    MOVIE_ID,
    N_RATINGS,
    RANK,
)
from recspark.seeds import derive_seed  # noqa: E402
from recspark.split import random_split, split_ratings  # noqa: E402

_logger = logging.getLogger("ranking_diagnostics")

#: Upper edges of the training-count bins of the picture.
BINS = [1, 2, 5, 10, 20, 50, 100, 200, 10**9]
LABELS = ["1", "2", "3-5", "6-10", "11-20", "21-50", "51-100", "101-200", ">200"]


def training_counts(spark, run_dir: str) -> pd.DataFrame:
    """movie_id, n_ratings of the run's training part, rebuilt from its saved config."""
    cfg = runs.read_run_config(spark, run_dir)
    ratings = read_ratings(spark, expand(cfg.ingest_dir()))
    train, _ = split_ratings(ratings, cfg=cfg.split, seed=derive_seed(cfg.seed, "split"))
    if cfg.train.validation_fraction > 0:
        train, _ = random_split(
            train, test_fraction=cfg.train.validation_fraction, seed=derive_seed(cfg.seed, "validation")
        )
    return train.groupBy(MOVIE_ID).count().withColumnRenamed("count", N_RATINGS).toPandas(), cfg


def list_figures(spark, run_dir: str, counts: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per model: list slots joined with n_i (columns model, movie_id, n_ratings)."""
    recs = spark.read.parquet(f"{run_dir}/{runs.RECOMMENDATIONS_DIR}")
    slots = recs.where(recs[RANK] <= k).select(MODEL, MOVIE_ID).toPandas()
    return slots.merge(counts, on=MOVIE_ID, how="left").fillna({N_RATINGS: 0})


def factor_figures(spark, run_dir: str, name: str, counts: pd.DataFrame) -> dict[str, object]:
    """Item biases and factor norms of a saved factor model against n_i ({} if none)."""
    path = f"{runs.model_dir(run_dir, name)}/item_factors"
    if not storage.exists(spark, f"{path}/_SUCCESS"):
        return {}
    items = spark.read.parquet(path).select(MOVIE_ID, BIAS, FACTORS).toPandas()
    items = items.merge(counts, on=MOVIE_ID)
    items["norm"] = [float(np.linalg.norm(f)) for f in items[FACTORS]]
    top = items.nlargest(5, BIAS)
    rare, common = items[items[N_RATINGS] <= 2], items[items[N_RATINGS] >= 50]
    return {
        "largest biases (n)": ", ".join(f"{b:+.2f} ({n})" for b, n in zip(top[BIAS], top[N_RATINGS])),
        "median |q| n<=2": float(rare["norm"].median()) if len(rare) else float("nan"),
        "median |q| n>=50": float(common["norm"].median()) if len(common) else float("nan"),
        "spearman(|q|, n)": float(items["norm"].rank().corr(items[N_RATINGS].rank())),
    }


def draw(figures: dict[str, pd.DataFrame], path: str) -> None:
    """One panel per run: share of list slots by the movie's training count, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(figures), figsize=(6 * len(figures), 4.5), sharey=True, squeeze=False)
    for ax, (run, slots) in zip(axes[0], figures.items()):
        binned = pd.cut(slots[N_RATINGS], [0] + BINS, labels=LABELS, include_lowest=True)
        shares = pd.crosstab(slots[MODEL], binned, normalize="index").reindex(columns=LABELS, fill_value=0)
        for model, row in shares.iterrows():
            ax.plot(LABELS, row.to_numpy(), marker="o", label=model)
        ax.set_title(f"run {run}")
        ax.set_xlabel("training ratings of the recommended movie")
        ax.grid(True, alpha=0.3)
        ax.tick_params(axis="x", rotation=45)
    axes[0][0].set_ylabel("share of top-10 list slots")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", required=True, help="train run folder (repeatable)")
    p.add_argument("--png", help="write the picture here")
    args = p.parse_args(argv)
    setup_logging("WARNING")
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]").appName("ranking-diagnostics")
        .config("spark.ui.showConsoleProgress", "false").getOrCreate()
    )
    rows, pictures = [], {}
    try:
        for run_dir in args.run:
            counts, cfg = training_counts(spark, run_dir)
            slots = list_figures(spark, run_dir, counts, cfg.recommend.k)
            pictures[runs.run_id_of(run_dir)] = slots
            for model, group in slots.groupby(MODEL):
                rows.append({
                    "run": runs.run_id_of(run_dir),
                    MODEL: model,
                    "median n": float(group[N_RATINGS].median()),
                    "share n<=2": float((group[N_RATINGS] <= 2).mean()),
                    **factor_figures(spark, run_dir, model, counts),
                })
        table = pd.DataFrame(rows)
        with pd.option_context("display.width", 250, "display.max_colwidth", 80):
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if args.png:
            draw(pictures, args.png)
            print(f"wrote {args.png}")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
