"""Search a model's settings by k-fold CV or a validation split of the training part.

    python jobs/tune.py --model als --grid 'als.rank=[10,20,30]' --grid 'als.reg_factors=[0.1,0.15]' \
        [--folds 5] [--trials 8] [--metric rmse|ndcg] [--parallel 2] [--output out/tune/als] \
        [--overlay conf/als.toml] [--config conf/x.toml] [--set data.dir=...]
"""

from __future__ import annotations

import shlex
import sys

from recspark.cli import run_job
from recspark.pipeline.tune import run_tune


def _options(p) -> None:
    p.add_argument("--model", required=True, help="registered model to tune")
    p.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=[V1,V2,...]",
                   help="values to search for one config key (repeatable)")
    p.add_argument("--metric", default="rmse", choices=["rmse", "ndcg"],
                   help="rmse (lower is better) or ndcg at recommend.k (higher is better)")
    p.add_argument("--folds", type=int, default=0,
                   help="K >= 2: K-fold CV of the training part; 0: one validation part")
    p.add_argument("--trials", type=int, default=0,
                   help="seeded random search of this many grid points (0: the whole grid)")
    p.add_argument("--parallel", type=int, default=1,
                   help="trials run at once (keep 1 for svd: computeSVD is not thread-safe)")
    p.add_argument("--output", default="", help="output folder (default out/tune/<model>)")
    p.add_argument("--overlay", default="", help="where to write the winning overlay "
                   "(default <output>/best.toml)")


def _pipeline(spark, cfg, args) -> None:
    table = run_tune(spark, cfg, args)
    print(table.head(10).to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "jobs/tune.py", *argv])

    def options(p) -> None:
        _options(p)
        p.set_defaults(command=command)

    return run_job("Search a model's settings (grid or seeded random).", _pipeline, argv,
                   extra_args=options)


if __name__ == "__main__":
    sys.exit(main())
