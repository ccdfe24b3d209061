"""Generate a synthetic MovieLens data set in the ml-32m CSV layout (see the package
recspark/synthetic/, entry point recspark.synthetic.generate_movielens).

    python scripts/generate_synthetic.py                       # the full ml-32m shape
    python scripts/generate_synthetic.py --set generate.ratings=2000000 \\
        --set generate.users=12560 --set generate.movies=21896 \\
        --set generate.output_dir=out/synthetic/small
    spark-submit --py-files dist/recspark.zip scripts/generate_synthetic.py [same options]

Writes ratings.csv, movies.csv, tags.csv, links.csv and the planted parameters in _truth/
under generate.output_dir, atomically (a staging folder renamed into place).
"""

from __future__ import annotations

import sys
from typing import Sequence

from recspark.cli import run_command


def main(argv: Sequence[str] | None = None) -> int:
    """``recspark generate`` (:mod:`recspark.commands`); returns the exit code."""
    return run_command("generate", argv, prog="scripts/generate_synthetic.py")


if __name__ == "__main__":
    sys.exit(main())
