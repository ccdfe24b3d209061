#!/usr/bin/env bash
# Build dist/recspark.zip, the library to ship to executors with spark-submit --py-files.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$repo/dist"
rm -f "$repo/dist/recspark.zip"
cd "$repo"
python3 - <<'PY'
import pathlib, zipfile
with zipfile.ZipFile("dist/recspark.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for p in sorted([*pathlib.Path("recspark").rglob("*.py"), *pathlib.Path("recspark").rglob("*.j2")]):
        z.write(p)
PY
echo "dist/recspark.zip"
