"""Re-score with a saved model: scored pairs, top-N for all users, or incremental top-N.

    python jobs/rescore.py --set rescore.mode=all [--set rescore.run_id=20250101T000000Z]
    python jobs/rescore.py --set rescore.mode=pairs --set rescore.input=pairs.csv
    spark-submit --py-files dist/recspark.zip jobs/rescore.py --set rescore.mode=incremental
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

try:
    import recspark  # noqa: F401
except ImportError:  # run from a checkout without installing: python jobs/rescore.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recspark.cli import main_exit, run_command  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """``recspark rescore`` (:mod:`recspark.commands`): parse arguments, build config and
    session, run, stop the session; returns the exit code."""
    return run_command("rescore", argv, prog="jobs/rescore.py")


if __name__ == "__main__":
    main_exit(main())
