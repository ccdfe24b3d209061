#!/usr/bin/env bash
# Run recspark's jobs with spark-submit: the commands the README's "Running on a cluster"
# section shows, and the ones the cluster test (tests/scripts/test_cluster.py) runs.
#
#   scripts/submit.sh MASTER [JOB ARGUMENTS...]    # e.g. spark://127.0.0.1:7077, yarn
#
# It packages the library (scripts/package.sh -> dist/recspark.zip, for --py-files) and the
# executors' Python environment (scripts/pack_env.sh -> dist/env.tar.gz, for --archives;
# rebuilt only when its packages change), then submits each job of $JOBS (default: ingest
# train segment rescore) in turn with the same JOB ARGUMENTS (--config / --set ...), and
# stops at the first that fails. Each command is printed before it runs.
#
# Environment:
#   JOBS           the jobs to run, in order (names of jobs/*.py)
#   SUBMIT_OPTS    more spark-submit options for every job, e.g.
#                  "--deploy-mode client --driver-memory 4g --num-executors 8"
#   PACK_VENV      the virtual environment to pack (default: the one of python3 on PATH)
#   DRIVER_PYTHON  the driver's Python in client mode (default: python3 on PATH); it needs
#                  the same packages as the executors
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: scripts/submit.sh MASTER [--config FILE] [--set key=value ...]" >&2
  exit 2
fi
master="$1"; shift
cd "$repo"
scripts/package.sh >/dev/null
venv="${PACK_VENV:-$(python3 -c 'import sys; print(sys.prefix)')}"
scripts/pack_env.sh "$venv" dist/env.tar.gz >/dev/null
driver_python="${DRIVER_PYTHON:-$(command -v python3)}"
read -r -a extra <<<"${SUBMIT_OPTS:-}"

for job in ${JOBS:-ingest train segment rescore}; do
  cmd=(spark-submit --master "$master" "${extra[@]}"
    --py-files dist/recspark.zip
    --archives dist/env.tar.gz#env
    --conf spark.pyspark.python=./env/bin/python
    --conf "spark.pyspark.driver.python=$driver_python"
    --conf spark.executorEnv.OPENBLAS_NUM_THREADS=1
    "jobs/$job.py" "$@")
  echo "+ ${cmd[*]}" >&2
  "${cmd[@]}"
done
