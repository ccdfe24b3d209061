"""Search a model's settings by k-fold CV or a validation split of the training part.

    python jobs/tune.py --model als --grid 'als.rank=[10,20,30]' --grid 'als.reg_factors=[0.1,0.15]' \
        [--folds 5] [--trials 8] [--metric rmse|ndcg] [--parallel 2] [--output out/tune/als] \
        [--overlay conf/als.toml] [--config conf/x.toml] [--set data.dir=...]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

try:
    import recspark  # noqa: F401
except ImportError:  # run from a checkout without installing: python jobs/tune.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recspark.cli import main_exit, run_command  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """``recspark tune`` (:mod:`recspark.commands`); returns the exit code."""
    return run_command("tune", argv, prog="jobs/tune.py")


if __name__ == "__main__":
    main_exit(main())
