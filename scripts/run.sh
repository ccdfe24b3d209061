#!/usr/bin/env bash
# Set up (first time only), then ingest and train end to end on the configured data set.
# Extra arguments go to both jobs, e.g. scripts/run.sh --set data.dataset=ml-1m
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/bootstrap.sh"
cd "$repo"
python jobs/ingest.py "$@"
python jobs/train.py "$@"
