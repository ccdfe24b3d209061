#!/usr/bin/env bash
# Set up (first time only), then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/bootstrap.sh"
cd "$repo"
# The run report's slow test opens a report in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    echo "installing Chromium for the run report's browser test (apt-get install -y chromium) ..." >&2
    apt-get install -y chromium >/dev/null 2>&1 \
      || { apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1; } \
      || echo "could not install chromium: tests/report/test_render.py will fail" >&2
  else
    echo "chromium is not installed (and this is not a root shell with apt-get):" \
      "tests/report/test_render.py will fail; install Debian's chromium package" >&2
  fi
fi
set +e
python -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$code"
