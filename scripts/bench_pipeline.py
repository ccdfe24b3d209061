#!/usr/bin/env python
"""The whole pipeline at a given size, each step in a fresh process, next to its anchors.

    python scripts/bench_pipeline.py --ratings 200000 --work /tmp/bp_small      # quick check
    flock /tmp/big.lock python scripts/bench_pipeline.py --fraction 1/8 --work /tmp/big/bp
    flock /tmp/big.lock python scripts/bench_pipeline.py --fraction 1/8,1/4,1/2,1 \\
        --source /tmp/lead/ml-32m-synthetic --work /tmp/big/bp      # issue 15's size sweep

A shape is ``--fraction F`` of the generated ml-32m shape (users, movies, ratings and tags
scaled by :func:`recspark.synthetic.scaled_config`; ``--source`` is used as it is for F = 1)
or ``--ratings N`` (F = N / 32,000,204). For each shape, in this order, each its own process
(fresh JVM, the same Spark settings):

- ``generate``: the synthetic CSV folder (not part of the pipeline; skipped with --source at F = 1)
- ``bare``: the anchor of ingest, a bare Spark CSV -> Parquet of ratings.csv
  (:func:`bench_ingest.bare_csv_to_parquet`)
- ``ingest``, ``train`` (bias, als, svd, iterative_svd, top-10 of each), ``segment``,
  ``rescore`` (top-10 of all users): the jobs as a user runs them; their sum is the pipeline
- ``als``: ``scripts/bench_als.py`` on the ingested ratings, recspark ALS against MLlib ALS
  (rank 10, 10 iterations, same cached input)
- ``topn``: one MLlib ALS fit (rank 10, 10 iterations), then top-10 for all users on those
  factors twice: recspark's block scorer (:func:`recspark.serving.topn.recommend`, rated
  movies excluded) and MLlib's ``recommendForAllUsers`` (rated movies not excluded: less
  work), each written as Parquet.

Per step: wall seconds, CPU seconds of the process tree (sampled every second, so up to
a second of CPU at the end is missed), peak Σ RSS and Σ PSS (:class:`memwatch.TreeMemory`), seconds per million ratings,
and the load average before and after; per job the stage times of its log ("<stage> done in
X s"), e.g. each model's fit and top-N. The ratios the issue names are computed against the
anchors measured in the same run. Everything goes to ``<work>/results.json``; with several
shapes, ``<work>/scaling.png`` plots wall and CPU seconds per million ratings against size
(the CPU panel moves less when other work shares the cores). Each step's
results are also kept in ``<work>/f<p>_<q>/<step>.json``; ``--reuse`` takes them from there
instead of running the step again, so a sweep can be built up over several sittings (the
load averages recorded with each step tell the sittings apart).
Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from memwatch import TreeMemory, tree_cpu_seconds  # noqa: E402

FULL_RATINGS = 32_000_204  # the generated ml-32m shape
RUN_ID = "bench"
_DONE = re.compile(r"INFO \S+: (.+) done in ([0-9.]+) s")
#: The train run's models and settings (those of the README's ml-32m train run).
TRAIN_SETTINGS = [
    "train.models=bias,als,svd,iterative_svd", "svd.rank=16", "svd.max_rounds=5",
    "svd.patience=5", "svd.shrinkage=270", "train.validation_fraction=0.05", "svd.blocks=8",
    "recommend.extra_splits=",
]


class TreeUsage(TreeMemory):
    """:class:`memwatch.TreeMemory` that also keeps the tree's CPU seconds at its last
    sample (every 1 s): the JVM a PySpark driver starts is not reaped by it, so the
    parent's ``RUSAGE_CHILDREN`` would miss it."""

    cpu_s = 0.0

    def sample(self, *, pss: bool = False) -> None:
        super().sample(pss=pss)
        if self._polls % 5 == 0:
            self.cpu_s = max(self.cpu_s, tree_cpu_seconds(self.root))


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_step(name: str, argv: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``argv`` (stdout and stderr to ``log``); its wall and CPU seconds, peak memory,
    load before/after and the stage times its log reports. Raises on a non-zero exit."""
    load = _load()
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        with TreeUsage(proc.pid) as mem:
            code = proc.wait()
    wall = time.perf_counter() - start
    if code:
        raise RuntimeError(f"step {name} failed (exit {code}); see {log}")
    stages: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        m = _DONE.search(line)
        if m:
            stages[m.group(1)] = stages.get(m.group(1), 0.0) + float(m.group(2))
    cpu = mem.cpu_s
    result = {
        "step": name, "wall_s": wall, "cpu_s": cpu, "peak_rss_gb": mem.peak_rss / 1e9,
        "peak_pss_gb": mem.peak_pss / 1e9, "load_before": load, "load_after": _load(),
        "stages": stages,
    }
    print(f"  {name:<9} {wall:8.1f} s  CPU {cpu:8.1f} s  peak PSS {mem.peak_pss / 1e9:5.2f} GB"
          f"  load {load[0]:.1f} -> {_load()[0]:.1f}", flush=True)
    return result


def run_or_reuse(name: str, argv: list[str], env: dict[str, str], work: Path, *, reuse: bool) -> dict:
    """:func:`run_step` with its log in ``work/<name>.log``, its results kept in
    ``work/<name>.json``; with ``reuse``, an existing ``<name>.json`` is returned instead."""
    done = work / f"{name}.json"
    if reuse and done.is_file():
        print(f"  {name:<9} reused from {done}", flush=True)
        return json.loads(done.read_text())
    result = run_step(name, argv, env, work / f"{name}.log")
    done.write_text(json.dumps(result, indent=2))
    return result


# --------------------------------------------------------------------------- child steps


def _session(a: argparse.Namespace):
    from recspark.config import load_config
    from recspark.session import build_session

    cfg = load_config(overrides=_spark_settings(a))
    return build_session(cfg.spark)


def bare_step(a: argparse.Namespace) -> None:
    from bench_ingest import bare_csv_to_parquet

    spark = _session(a)
    seconds = bare_csv_to_parquet(spark, f"{a.data}/ratings.csv", f"{a.work}/bare")
    print(f"bare CSV -> Parquet done in {seconds:.1f} s")
    spark.stop()


def topn_step(a: argparse.Namespace) -> None:
    """MLlib ALS once, then top-10 for all users by recspark and by recommendForAllUsers."""
    import logging

    from recspark.io import storage
    from recspark.io.ingested import read_ratings
    from recspark.log import setup_logging
    from recspark.models.bias import BiasConfig, fit_bias
    from recspark.models.mllib_als import MllibAlsConfig, fit_mllib_als
    from recspark.schema import MOVIE_ID, RATING, USER_ID
    from recspark.serving.topn import recommend

    setup_logging("INFO")
    log = logging.getLogger("bench_pipeline")
    spark = _session(a)
    ratings = read_ratings(spark, a.ingest).cache()
    n_ratings = ratings.count()
    with storage.checkpoints(spark, f"{a.work}/checkpoints", work_dir=a.work, name="topn"):
        bias = fit_bias(ratings, cfg=BiasConfig())
        model = fit_mllib_als(ratings, cfg=MllibAlsConfig(reg_param=0.1), seed=42, bias=bias)
        model.user_factors.cache().count()
        model.item_factors.cache().count()
    rated = ratings.select(USER_ID, MOVIE_ID, RATING)
    start = time.perf_counter()
    recommend(model, rated, n=10).write.mode("overwrite").parquet(f"{a.work}/topn_recspark")
    log.info("top-10 recspark done in %.1f s", time.perf_counter() - start)
    start = time.perf_counter()
    model.als.recommendForAllUsers(10).write.mode("overwrite").parquet(f"{a.work}/topn_mllib")
    log.info("top-10 mllib recommendForAllUsers done in %.1f s", time.perf_counter() - start)
    log.info("ratings %d", n_ratings)
    spark.stop()


# --------------------------------------------------------------------------- parent


def _spark_settings(a: argparse.Namespace) -> list[str]:
    return [f"spark.driver_memory={a.driver_memory}",
            f"spark.shuffle_partitions={a.shuffle_partitions}"]


def _fraction(text: str) -> Fraction:
    value = Fraction(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"a fraction must be in (0, 1], got {text}")
    return value


def _generate_args(fraction: Fraction, out: Path) -> list[str]:
    from recspark.config import GenerateConfig
    from recspark.synthetic import scaled_config

    gen = scaled_config(GenerateConfig(), float(fraction))
    return [f"generate.{k}={getattr(gen, k)}" for k in ("users", "movies", "ratings", "tags")] + [
        f"generate.output_dir={out}"
    ]


def run_shape(a: argparse.Namespace, fraction: Fraction, env: dict[str, str]) -> dict:
    """Every step at one shape; the shape's results (steps, ratios)."""
    work = Path(a.work) / f"f{fraction.numerator}_{fraction.denominator}"
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    spark = [x for s in _spark_settings(a) for x in ("--set", s)]
    steps: dict[str, dict] = {}
    if fraction == 1 and a.source:
        data = Path(a.source)
    else:
        data = work / "data"
        if not (data / "ratings.csv").is_file():
            gen = [x for s in _generate_args(fraction, data) for x in ("--set", s)]
            steps["generate"] = run_step("generate", [py, str(REPO / "scripts/generate_synthetic.py"),
                                                      *spark, *gen], env, work / "generate.log")
    ingest = work / "ingest"
    common = [*spark, "--set", f"data.dir={data}", "--set", "data.dataset=bench",
              "--set", f"ingest.output_dir={ingest}", "--set", f"train.output_dir={work}/runs",
              "--set", f"spark.checkpoint_dir={work}/checkpoints"]
    child = [py, __file__, "--work", str(work), "--driver-memory", a.driver_memory,
             "--shuffle-partitions", str(a.shuffle_partitions)]
    jobs = REPO / "jobs"
    train_set = [x for s in TRAIN_SETTINGS for x in ("--set", s)]
    plan = [
        ("bare", [*child, "_bare", "--data", str(data)]),
        ("ingest", [py, str(jobs / "ingest.py"), *common]),
        ("train", [py, str(jobs / "train.py"), *common, *train_set, "--set", f"train.run_id={RUN_ID}"]),
        ("segment", [py, str(jobs / "segment.py"), *common, "--set", f"segment.run_id={RUN_ID}",
                     "--set", "segment.source=run", "--set", f"segment.output_dir={work}/segments"]),
        ("rescore", [py, str(jobs / "rescore.py"), *common, "--set", f"rescore.run_id={RUN_ID}",
                     "--set", "rescore.mode=all", "--set", f"rescore.output_dir={work}/scores"]),
        ("als", [py, str(REPO / "scripts/bench_als.py"), "--ratings", str(ingest), "--work",
                 str(work / "als"), "--models", "recspark,mllib", "--driver-memory",
                 a.driver_memory, "--shuffle-partitions", str(a.shuffle_partitions)]),
        ("topn", [*child, "_topn", "--ingest", str(ingest)]),
    ]
    for name, argv in plan:
        if name in a.skip.split(","):
            continue
        steps[name] = run_or_reuse(name, argv, env, work, reuse=a.reuse)
    return {"fraction": str(fraction), "data": str(data), "steps": steps,
            **_figures(steps, work)}


def _figures(steps: dict[str, dict], work: Path) -> dict:
    """Ratings, seconds per million ratings of every step, the issue's ratios (nothing
    per rating when the ingest step was skipped and never ran in ``work``)."""
    report_path = work / "ingest" / "report.json"
    if not report_path.is_file():
        return {"ratings": None, "s_per_m_ratings": {}, "cpu_s_per_m_ratings": {}, "ratios": {},
                "pipeline_s": 0.0, "peak_pss_gb": 0.0}
    report = json.loads(report_path.read_text())
    ratings = report["files"]["ratings.csv"]["rows_read"]
    timed = {k: s for k, s in steps.items() if k != "generate"}
    per_m = {k: s["wall_s"] / (ratings / 1e6) for k, s in timed.items()}
    cpu_per_m = {k: s["cpu_s"] / (ratings / 1e6) for k, s in timed.items()}
    out: dict = {"ratings": ratings, "s_per_m_ratings": per_m, "cpu_s_per_m_ratings": cpu_per_m,
                 "ratios": {}}
    pipeline = [k for k in ("ingest", "train", "segment", "rescore") if k in steps]
    out["pipeline_s"] = sum(steps[k]["wall_s"] for k in pipeline)
    out["peak_pss_gb"] = max((steps[k]["peak_pss_gb"] for k in pipeline), default=0.0)
    if "bare" in steps and "ingest" in steps:
        out["ratios"]["ingest / bare (<= 1.5)"] = steps["ingest"]["wall_s"] / steps["bare"]["wall_s"]
    if (work / "als" / "results.json").is_file():
        fits = {r["model"]: r["fit_s"] for r in json.loads((work / "als" / "results.json").read_text())["results"]}
        out["als_fit_s"] = fits
        if {"recspark", "mllib"} <= fits.keys():
            out["ratios"]["als fit / MLlib fit (<= 0.3)"] = fits["recspark"] / fits["mllib"]
    if "topn" in steps:
        st = steps["topn"]["stages"]
        ours, theirs = st.get("top-10 recspark"), st.get("top-10 mllib recommendForAllUsers")
        if ours and theirs:
            out["ratios"]["top-10 recspark / recommendForAllUsers (< 1)"] = ours / theirs
    return out


def _print_shape(r: dict) -> None:
    if r["ratings"] is None:
        print(f"\nshape {r['fraction']}: no ingested ratings in the work folder (ingest skipped)")
        return
    print(f"\nshape {r['fraction']}: {r['ratings']:,} ratings; pipeline (ingest+train+segment+rescore) "
          f"{r['pipeline_s']:.0f} s (<= 1200), peak PSS {r['peak_pss_gb']:.2f} GB (< 16)")
    print(f"{'step':<10} {'wall s':>8} {'CPU s':>8} {'s / M ratings':>14} {'CPU s / M':>10} {'peak PSS GB':>12} {'load before -> after':>24}")
    for name, s in r["steps"].items():
        per_m = r["s_per_m_ratings"].get(name, float("nan"))
        cpu_m = r.get("cpu_s_per_m_ratings", {}).get(name, float("nan"))
        print(f"{name:<10} {s['wall_s']:>8.1f} {s['cpu_s']:>8.1f} {per_m:>14.2f} {cpu_m:>10.2f} {s['peak_pss_gb']:>12.2f} "
              f"{' '.join(map(str, s['load_before'])):>12} -> {' '.join(map(str, s['load_after']))}")
    train = r["steps"].get("train", {}).get("stages", {})
    for key in sorted(k for k in train if k.startswith(("fit ", "top-"))):
        print(f"  train: {key:<40} {train[key]:8.1f} s")
    for key, value in r["ratios"].items():
        print(f"ratio {key:<48} {value:7.3f}")


def _plot(shapes: list[dict], path: Path) -> None:
    """Two panels against size: wall seconds and CPU seconds per million ratings of every
    step (the CPU panel moves less when other work shares the cores)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    sizes = [s["ratings"] / 1e6 for s in shapes]
    for ax, key, what in ((axes[0], "s_per_m_ratings", "wall"), (axes[1], "cpu_s_per_m_ratings", "CPU")):
        for step in shapes[0]["s_per_m_ratings"]:
            ax.plot(sizes, [s.get(key, {}).get(step, float("nan")) for s in shapes], "o-", label=step)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ratings (millions)")
        ax.set_ylabel(f"{what} seconds per million ratings")
        ax.set_title(f"{what} cost per rating against size (flat = linear)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    loads = ", ".join(f"{s['fraction']}: {_load_range(s)}" for s in shapes)
    fig.suptitle(f"recspark pipeline, load averages during each shape: {loads}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _load_range(shape: dict) -> str:
    """The lowest and highest 1-minute load average recorded around a shape's steps."""
    loads = [s[k][0] for s in shape["steps"].values() for k in ("load_before", "load_after")]
    return f"{min(loads):.1f}–{max(loads):.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", nargs="?", default="all", choices=["all", "_bare", "_topn"])
    p.add_argument("--fraction", default="", help="comma-separated fractions of the ml-32m shape, e.g. 1/8,1/4")
    p.add_argument("--ratings", type=int, default=0, help="or: this many synthetic ratings")
    p.add_argument("--source", default="", help="a ml-32m-shape CSV folder used as is at fraction 1")
    p.add_argument("--work", default="/tmp/bench_pipeline")
    p.add_argument("--skip", default="", help="comma-separated steps to skip (e.g. als,topn)")
    p.add_argument("--reuse", action="store_true",
                   help="take a step's results from an earlier run's <work>/f*/<step>.json")
    p.add_argument("--driver-memory", default="14g")
    p.add_argument("--shuffle-partitions", type=int, default=32)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--ingest", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.step == "_bare":
        bare_step(a)
        return 0
    if a.step == "_topn":
        topn_step(a)
        return 0
    fractions = [_fraction(f) for f in a.fraction.split(",") if f.strip()]
    if a.ratings:
        fractions.append(Fraction(a.ratings, FULL_RATINGS))
    if not fractions:
        p.error("give --fraction or --ratings")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    Path(a.work).mkdir(parents=True, exist_ok=True)
    shapes = []
    for fraction in fractions:
        print(f"shape {fraction} of ml-32m ...", flush=True)
        shapes.append(run_shape(a, fraction, env))
        _print_shape(shapes[-1])
        (Path(a.work) / "results.json").write_text(json.dumps({"args": vars(a), "shapes": shapes}, indent=2))
    measured = [s for s in shapes if s["ratings"] is not None]
    if len(measured) > 1:
        _plot(measured, Path(a.work) / "scaling.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
