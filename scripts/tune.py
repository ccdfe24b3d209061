#!/usr/bin/env python
"""Choose a model's settings on a validation split carved from the training part.

    python scripts/tune.py -c als.toml --set ingest.output_dir=/tmp/small/ingest \\
        --model als --grid als.reg_offset=0,10,30 --grid als.rank=20,30

The ingested ratings are split as a train run splits them (``split.kind``, seed derived
from the root seed as ``split``); the training part is split again at random
(``--validation-fraction``, default 0.2, seed derived as ``validation``, as the overlays in
``conf/`` record) into a fit part and a validation part. The test part is never read. For
every point of the grid (the cartesian product of the ``--grid`` options, each
``section.key=v1,v2,...``) the model is fitted on the fit part and measured on the
validation part: RMSE and MAE when it predicts ratings; precision, recall, NDCG, MAP, hit
rate and coverage at ``recommend.k`` when it ranks (a validation rating >=
``recommend.relevance_threshold`` is relevant; the fit part's movies are never
recommended, nor movies with fewer than ``recommend.min_support`` fit ratings). One line per point is logged as it finishes; the table is printed at the end
and written as CSV to ``--out`` when given.
"""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from recspark.cli import parser  # noqa: E402
from recspark.config import expand, load_config  # noqa: E402
from recspark.evaluation.ranking import ranking_metrics, relevant_items  # noqa: E402
from recspark.evaluation.rating import regression_metrics  # noqa: E402
from recspark.io.ingested import read_ratings  # noqa: E402
from recspark.log import setup_logging  # noqa: E402
from recspark.models import registry  # noqa: E402
from recspark.models.bias import fit_bias  # noqa: E402
from recspark.models.contract import Ability  # noqa: E402
from recspark.schema import MAE, MOVIE_ID, N_RATINGS, RATING, RMSE, USER_ID  # noqa: E402
from recspark.seeds import derive_seed  # noqa: E402
from recspark.serving.topn import recommend, with_min_support  # noqa: E402
from recspark.session import build_session  # noqa: E402
from recspark.split import random_split, split_ratings  # noqa: E402

_logger = logging.getLogger("tune")


def grid_points(grids: list[str]) -> list[list[str]]:
    """``section.key=v1,v2`` options → every combination as a list of ``--set`` strings."""
    axes = []
    for g in grids:
        key, _, values = g.partition("=")
        axes.append([f"{key}={v}" for v in values.split(",")])
    return [list(p) for p in itertools.product(*axes)] if axes else [[]]


def main(argv: list[str] | None = None) -> int:
    p = parser("Grid search of one model's settings on a validation split of the training part.")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2,...")
    p.add_argument("--validation-fraction", type=float, default=0.2)
    p.add_argument("--out", help="CSV file for the results table")
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    points = grid_points(args.grid)
    configs = [load_config(args.config, args.overrides + point) for point in points]
    cfg = configs[0]
    spec = registry.spec(args.model)
    spark = build_session(cfg.spark)
    try:
        ratings = read_ratings(spark, expand(cfg.ingest_dir()))
        train, _ = split_ratings(ratings, cfg=cfg.split, seed=derive_seed(cfg.seed, "split"))
        fit, val = random_split(
            train, test_fraction=args.validation_fraction, seed=derive_seed(cfg.seed, "validation")
        )
        fit, val = fit.cache(), val.cache()
        bias = fit_bias(fit, cfg=cfg.bias, lo=cfg.train.rating_min, hi=cfg.train.rating_max)
        rc = cfg.recommend
        relevant = relevant_items(val, threshold=rc.relevance_threshold).cache()
        catalogue = fit.select(MOVIE_ID).distinct().cache()
        rated = fit.select(USER_ID, MOVIE_ID, RATING)
        counts = fit.groupBy(MOVIE_ID).agg(F.count(F.lit(1)).alias(N_RATINGS)).cache()
        rows = []
        for point, point_cfg in zip(points, configs):
            model = registry.fit(args.model, fit, cfg=point_cfg, bias=bias)
            row = {"settings": " ".join(point) or "(defaults)"}
            if spec.can(Ability.PREDICT):
                values = regression_metrics(model.predict(val.select(USER_ID, MOVIE_ID, RATING)))
                row.update({RMSE: values[RMSE], MAE: values[MAE]})
            if spec.can(Ability.TOP_N):
                inputs = with_min_support(
                    model.ranking_inputs(), counts, min_support=point_cfg.recommend.min_support
                )
                recs = recommend(inputs, rated, n=rc.n, model=args.model,
                                 block_users=rc.block_users).cache()
                row.update(ranking_metrics(recs, relevant, k=rc.k, catalogue=catalogue))
                recs.unpersist()
            _logger.info("%s", "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else str(v) for k, v in row.items()
            ))
            rows.append(row)
        table = pd.DataFrame(rows)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        if args.out:
            table.to_csv(args.out, index=False)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
