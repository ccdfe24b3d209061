#!/usr/bin/env bash
# Create .venv with recspark and its dev dependencies, unless it is already up to date.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run by hand.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
stamp="$venv/.recspark-installed"
if ! command -v java >/dev/null 2>&1; then
  echo "recspark needs Java 17 for Spark: install it (e.g. apt-get install openjdk-17-jre-headless)" >&2
  exit 1
fi
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
  echo "setting up $venv ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$repo[dev]"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
# Spark runs one task per core; keep NumPy's BLAS to one thread inside each task.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
export PYSPARK_PYTHON="$venv/bin/python" PYSPARK_DRIVER_PYTHON="$venv/bin/python"
