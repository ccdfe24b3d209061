#!/usr/bin/env bash
# Pack the Python environment the executors need into dist/env.tar.gz, for
#   spark-submit --archives dist/env.tar.gz#env --conf spark.pyspark.python=./env/bin/python
#
#   scripts/pack_env.sh [VENV] [ARCHIVE]      # defaults: .venv and dist/env.tar.gz
#
# The archive is a plain tar of VENV cut down to what recspark's runtime dependencies
# (pyproject.toml [project] dependencies, with everything they require) installed: numpy,
# pandas, pyarrow, scipy, pydantic, ... and the venv's bin/python and pyvenv.cfg. Left out:
# pyspark and py4j (the cluster's Spark gives its executors its own, which must match the
# driver's Spark version), recspark itself (shipped with --py-files dist/recspark.zip), the
# dev tools (pytest, ...), pip, and the packages' own test suites (every tests/ folder: 124
# of 850 MB here; nothing imports them at run time, and every executor unpacks the archive).
# It is built from the installed venv, with no download, so the executors run exactly the
# versions the driver runs.
#
# A venv's bin/python is a link to the interpreter it was made from (pyvenv.cfg "home"):
# the nodes need that Python (the same version at the same path). Where they lack it, pack
# a conda environment with conda-pack instead (it carries the interpreter), or use an image
# with Python (Kubernetes). The archive is rebuilt only when the packed versions change.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(cd "${1:-$repo/.venv}" && pwd)"
archive="${2:-$repo/dist/env.tar.gz}"
mkdir -p "$(dirname "$archive")"
list="$(mktemp)"
trap 'rm -f "$list" "$list.manifest"' EXIT
# The venv's own interpreter lists the files: importlib.metadata there sees its packages.
"$venv/bin/python" - "$repo/pyproject.toml" "$venv" "$list" <<'PY'
import importlib.metadata as md
import sys
import sysconfig
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

pyproject, venv, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
SKIP = {"pyspark", "py4j", "recspark", "pip", "setuptools", "wheel"}


def norm(name):
    return name.lower().replace("_", "-").replace(".", "-")


todo = [Requirement(r) for r in tomllib.loads(Path(pyproject).read_text())["project"]["dependencies"]]
seen, files = {}, set()
while todo:
    req = todo.pop()
    if norm(req.name) in SKIP or norm(req.name) in seen:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    dist = md.distribution(req.name)  # PackageNotFoundError: the venv lacks a dependency
    seen[norm(req.name)] = dist.version
    for entry in dist.files or []:
        if "tests" in Path(entry).parts[:-1]:
            continue
        path = Path(dist.locate_file(entry)).resolve()
        if path.is_file() and path.is_relative_to(venv.resolve()):
            files.add(str(path.relative_to(venv.resolve())))
    todo += [Requirement(r) for r in dist.requires or []]
site = Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
skeleton = ["pyvenv.cfg", "bin/python", "bin/python3", f"bin/python{sys.version_info[0]}.{sys.version_info[1]}"]
if (venv / "lib64").is_symlink():
    skeleton.append("lib64")
out.write_text("\n".join(skeleton + sorted(files)) + "\n")
manifest = [f"python {sys.version.split()[0]} {sys.base_prefix}", "without tests/ folders"] + [f"{k}=={v}" for k, v in sorted(seen.items())]
Path(f"{out}.manifest").write_text("\n".join(manifest) + "\n")
print(f"packing {len(seen)} distributions, {len(files)} files from {venv}", file=sys.stderr)
PY
if [ -f "$archive" ] && cmp -s "$list.manifest" "$archive.manifest"; then
  echo "$archive (up to date)"
  exit 0
fi
rm -f "$archive" "$archive.manifest"
# --no-recursion: the list names files (and the links of bin/); gzip -1: the archive is
# unpacked once per executor, so fast beats small.
tar -C "$venv" --no-recursion -T "$list" -cf - | gzip -1 >"$archive.tmp"
mv "$archive.tmp" "$archive"
cp "$list.manifest" "$archive.manifest"
echo "$archive"
