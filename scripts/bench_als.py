#!/usr/bin/env python
"""Benchmark recspark's block ALS against MLlib ALS: same data, split, rank, iterations, λ;
explicit (``recspark`` vs ``mllib``) and implicit feedback (``recspark_implicit``, i.e.
``als_implicit``, vs ``mllib_implicit``, MLlib with ``implicitPrefs=True``, both with
confidence 1 + α·r, α = ``--alpha``), all four in the same run by default. ``sgd_mf``
(stratified SGD, :mod:`recspark.models.sgd`; ``--iters`` epochs) runs only when named, and
is measured against recspark's explicit ALS in the same run (issue 12: at most 2 × its fit):

    python scripts/bench_als.py --synthetic 200000 --models recspark,sgd_mf

    python scripts/bench_als.py --ratings /work/shared/data/ml-latest-small
    python scripts/bench_als.py --ratings /work/shared/data/ml-latest-small --models recspark_implicit,mllib_implicit
    python scripts/bench_als.py --ratings /work/shared/data/ml-latest-small --replicate 20
    python scripts/bench_als.py --synthetic 2000000          # ml-32m shape, scaled down
    python scripts/bench_als.py --ratings out/ingest/ml-32m  # an ingested Parquet folder

``numpy`` (run by default) is the yardstick of issue 15's "per-iteration time within 2 × of
a single-process NumPy/SciPy iteration": ``scripts/als_numpy_ref.py``, recspark's explicit
model written plainly (one CSR matrix per side, one sparse × dense product for all Gram
matrices, one batched solve) in this one process with one BLAS thread, no Spark, on the
same train split, from the same seeded start. The summary prints recspark's mean (and
fastest) iteration over the reference's, and the largest gap between the two fits'
per-iteration training RMSE (same start, same maths: it should be ~1e-12).

``--ratings`` is a MovieLens folder with ``ratings.csv`` in the ml-latest layout
(``userId,movieId,rating,timestamp``, read with an explicit schema and indexed with
:mod:`recspark.index`), or an ingest output folder (already indexed). ``--replicate K``
stacks K copies of the ratings with disjoint user ids (K times the users and ratings, same
movies). ``--synthetic N`` generates N ratings with :mod:`recspark.synthetic`, users and
movies scaled from the ml-32m shape by N / 32M (:func:`recspark.synthetic.scaled_config`),
1000 tags.

Every step runs in its own process with a fresh JVM and identical Spark settings
(``--master``, ``--driver-memory``, and the settings recspark's jobs always have,
:data:`recspark.session.FIXED_SETTINGS`): first one that prepares the data and writes the
train/test split as Parquet under ``--work`` (``--input-partitions`` files, read one file per
task), then one per model. In a model's process the train set is read and cached (and
counted) *before* the clock starts, and the same model is fitted once, untimed, on a 0.2 %
sample with 2 iterations (``--cold`` skips it), so that neither model's timed fit pays the
process's one-time start: the JVM compiling MLlib's code, or recspark's Python workers,
their imports, the JVM's Arrow path and numba's cached kernels (its seconds are printed
below the table). Then the clock covers
``fit`` until both factor tables are materialised: for recspark, partitioning the ratings
into blocks, the iterations and the cached (idx, bias, factors) tables; for MLlib, its own
blocking, iterations and factor DataFrames (which ``fit`` materialises; they are counted
too). recspark's id-keyed ``user_factors``/``item_factors`` (a join with the training
ids, which MLlib has no equivalent of) are timed separately and printed below the table. Test RMSE (untimed) is over the test pairs whose user and movie are in training
(MLlib's ``coldStartStrategy="drop"``), predictions clipped to [0.5, 5] for both; the
implicit models' scores are not ratings, so they get no RMSE. The load average
(``os.getloadavg``) is printed before and after: the machine should be quiet.

Peak memory is the peak of Σ RSS over the whole process tree of the model's process
(driver JVM, PySpark daemon and workers), polled by :class:`memwatch.TreeMemory` from a
thread in this parent process (an upper bound: pages shared by forked workers count once
per process).

Results are printed as a table and written to ``<work>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from memwatch import TreeMemory, tree_cpu_seconds  # noqa: E402

MODELS = ("recspark", "mllib", "numpy", "recspark_implicit", "mllib_implicit", "sgd_mf")
#: The models run by default (sgd_mf only when asked for: ``--models recspark,sgd_mf``).
DEFAULT_MODELS = MODELS[:5]
#: The pairs compared in the ratio rows: the model, then the one it is measured against.
PAIRS = (("recspark", "mllib"), ("recspark_implicit", "mllib_implicit"), ("sgd_mf", "recspark"))


class PhaseClock(logging.Handler):
    """Wall and tree-CPU seconds of recspark's logged stages ("<name> ..." / "<name> done in").

    Phases: ``blocks`` (partitioning the ratings), ``iterations`` (all of them) and
    ``tables`` (the factor tables), so a slow fit at scale shows where the time went.
    """

    PHASES = {
        f"{name}{suffix}": phase
        for name in ("als", "als_implicit", "sgd_mf")
        for suffix, phase in ((": partition ratings into blocks", "blocks"),
                              (" iteration", "iterations"), (": factor tables", "tables"))
    }

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.open: dict[str, tuple[float, float]] = {}
        self.totals: dict[str, list[float]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        for prefix, phase in self.PHASES.items():
            if not msg.startswith(prefix):
                continue
            now = (time.perf_counter(), tree_cpu_seconds(os.getpid()))
            if msg.endswith(" ..."):
                self.open[phase] = now
            elif " done in " in msg and phase in self.open:
                (w0, c0), total = self.open.pop(phase), self.totals.setdefault(phase, [0.0, 0.0])
                total[0] += now[0] - w0
                total[1] += now[1] - c0


def run_child(args: list[str], env: dict[str, str]) -> tuple[int, float, TreeMemory]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], env=env)
    with TreeMemory(proc.pid) as mem:
        code = proc.wait()
    return code, time.perf_counter() - start, mem


# --------------------------------------------------------------------------- child processes


def _session(a: argparse.Namespace, name: str):
    from pyspark.sql import SparkSession

    from recspark.log import setup_logging
    from recspark.session import FIXED_SETTINGS

    setup_logging("INFO")
    spark = (
        SparkSession.builder.master(a.master)
        .appName(f"bench-als-{name}")
        # Every model runs with the settings recspark's jobs always have (Unix sockets,
        # Arrow batches cut by rows only, uncompressed DataFrame caches, ...).
        .config(map=FIXED_SETTINGS)
        .config("spark.driver.memory", a.driver_memory)
        .config("spark.sql.shuffle.partitions", str(a.shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.local.dir", str(Path(a.work) / "spark-local"))
        # One input partition per train file (written as --input-partitions files): without
        # it Spark packs the files into 128 MB splits, e.g. 8 files into 3 tasks on 2 cores.
        .config("spark.sql.files.minPartitionNum", str(a.input_partitions))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    spark.sparkContext.setCheckpointDir(str(Path(a.work) / "checkpoints" / name))
    return spark


def prepare(a: argparse.Namespace) -> None:
    """Read / generate the ratings, index them, split them, write train and test Parquet."""

    from pyspark.sql import functions as F

    from recspark.config import GenerateConfig, default_config
    from recspark.index import add_indices, movie_index, user_index
    from recspark.schema import MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX
    from recspark.seeds import derive_seed
    from recspark.split import random_split

    spark = _session(a, "prepare")
    work = Path(a.work)
    source = a.ratings
    if a.synthetic:
        from recspark.synthetic import generate_movielens, scaled_config

        full = GenerateConfig(partitions=8)  # the ml-32m shape
        gen = scaled_config(full, a.synthetic / full.ratings).replace(tags=1000)
        source = str(work / "synthetic")
        generate_movielens(spark, cfg=default_config().replace(seed=a.seed, generate=gen), output=source)
    src = Path(source)
    if (src / "ratings.csv").is_file():
        from recspark.io.ingested import read_ratings_csv

        ratings = read_ratings_csv(spark, str(src)).select(USER_ID, MOVIE_ID, RATING)
        if a.replicate > 1:
            top = ratings.agg(F.max(USER_ID)).first()[0] + 1
            ratings = ratings.crossJoin(spark.range(a.replicate).withColumnRenamed("id", "_copy")).select(
                (F.col(USER_ID) + F.col("_copy") * F.lit(top)).alias(USER_ID), MOVIE_ID, RATING
            )
        ratings = add_indices(
            ratings, users=user_index(ratings), movies=movie_index(ratings), user_blocks=1
        )
    else:
        from recspark.io.ingested import read_ratings

        ratings = read_ratings(spark, str(src))
    ratings = ratings.select(USER_ID, MOVIE_ID, USER_IDX, MOVIE_IDX, RATING)
    train, test = random_split(ratings, test_fraction=a.test_fraction, seed=derive_seed(a.seed, "split"))
    # Written as --input-partitions files, so the cached input is read evenly by all cores
    # (for both models) rather than in however many splits the source happened to have.
    train.repartition(a.input_partitions).write.mode("overwrite").parquet(str(work / "train"))
    test.write.mode("overwrite").parquet(str(work / "test"))
    t = spark.read.parquet(str(work / "train"))
    info = t.agg(
        F.count(F.lit(1)).alias("ratings"),
        F.countDistinct(USER_IDX).alias("users"),
        F.countDistinct(MOVIE_IDX).alias("movies"),
    ).first().asDict()
    info["test_ratings"] = spark.read.parquet(str(work / "test")).count()
    (work / "data.json").write_text(json.dumps(info))
    spark.stop()


def fit(a: argparse.Namespace) -> None:
    """Fit one model in this process and write its figures as JSON."""
    if a.model == "numpy":
        _fit_numpy(a)
        return
    from pyspark.sql import functions as F

    from recspark.schema import PREDICTION, RATING

    spark = _session(a, a.model)
    work = Path(a.work)
    train = spark.read.parquet(str(work / "train")).cache()
    test = spark.read.parquet(str(work / "test"))
    train.count()  # the input is materialised before the clock starts, for every model
    result: dict = {"model": a.model}
    fitter = _fit_mllib if a.model.startswith("mllib") else _fit_recspark
    result["warm_up_s"] = 0.0 if a.cold else _warm_up(a, spark, train, fitter)
    pred = fitter(a, spark, train, test, result)
    result["test_rmse"], result["test_rows"] = float("nan"), 0
    if pred is not None:
        err = F.col(RATING) - F.col(PREDICTION)
        row = pred.agg(F.sqrt(F.avg(err * err)).alias("rmse"), F.count(F.lit(1)).alias("n")).first()
        result["test_rmse"], result["test_rows"] = float(row["rmse"]), int(row["n"])
    (work / f"result_{a.model}.json").write_text(json.dumps(result))
    spark.stop()


def _warm_up(a: argparse.Namespace, spark, train, fitter) -> float:
    """Fit the same model once, untimed, on a 0.2 % sample of ``train`` with 2 iterations,
    so that neither model pays its process's one-time start inside the timed fit (the JVM's
    JIT compiling MLlib's code; for recspark: starting the Python workers, their imports,
    the JVM's Arrow path, numba's cached kernels). Returns the warm-up's wall seconds."""
    sample = train.sample(fraction=0.002, seed=a.seed).cache()
    sample.count()
    start = time.perf_counter()
    fitter(argparse.Namespace(**{**vars(a), "iters": 2}), spark, sample, sample, {})
    seconds = time.perf_counter() - start
    sample.unpersist()
    return seconds


def _fit_numpy(a: argparse.Namespace) -> None:
    """The single-process NumPy/SciPy reference of recspark's explicit ALS
    (``scripts/als_numpy_ref.py``) on the same train/test Parquet, no Spark: the clock covers
    building the two CSR matrices and the iterations (the Parquet read is not timed)."""
    import numpy as np
    import pyarrow.parquet as pq

    import als_numpy_ref
    from recspark.schema import MOVIE_IDX, RATING, USER_IDX
    from recspark.seeds import derive_seed

    work = Path(a.work)
    cols = [USER_IDX, MOVIE_IDX, RATING]
    train = pq.read_table(str(work / "train"), columns=cols)
    users, items, vals = (train.column(c).to_numpy() for c in cols)
    start, cpu = time.perf_counter(), tree_cpu_seconds(os.getpid())
    ref = als_numpy_ref.fit(
        users.astype(np.int64), items.astype(np.int64), vals, rank=a.rank, iters=a.iters,
        reg=a.reg, init_seed=derive_seed(a.seed, "init", "movies"),
    )
    result: dict = {"model": "numpy", "fit_s": time.perf_counter() - start}
    result["fit_cpu_s"] = tree_cpu_seconds(os.getpid()) - cpu
    result["iteration_s"] = float(np.mean(ref.iteration_s))
    result["iteration_min_s"] = float(np.min(ref.iteration_s))
    result["build_s"] = ref.build_s
    result["train_rmse"] = ref.train_rmse
    result["id_tables_s"] = float("nan")
    result["phases"] = {"blocks": [ref.build_s, float("nan")], "iterations": [sum(ref.iteration_s), float("nan")]}
    # Test RMSE as for the Spark models: pairs whose user and movie were trained, clipped.
    test = pq.read_table(str(work / "test"), columns=cols)
    tu, ti, tv = (test.column(c).to_numpy() for c in cols)
    known_u = np.zeros(ref.users.shape[0] + 1, dtype=bool)
    known_u[np.unique(users)] = True
    known_i = np.zeros(ref.items.shape[0] + 1, dtype=bool)
    known_i[np.unique(items)] = True
    tu = np.minimum(tu.astype(np.int64), ref.users.shape[0])
    ti = np.minimum(ti.astype(np.int64), ref.items.shape[0])
    keep = known_u[tu] & known_i[ti]
    pred = als_numpy_ref.predict(tu[keep], ti[keep], ref.users, ref.items, ref.mu)
    err = tv[keep] - pred
    result["test_rmse"], result["test_rows"] = float(np.sqrt(err @ err / max(err.size, 1))), int(keep.sum())
    result["blas"] = _numpy_blas()
    (work / "result_numpy.json").write_text(json.dumps(result))


def _numpy_blas() -> str:
    """The BLAS NumPy calls in this process: library, version, file and threads."""
    import threadpoolctl

    blas = [
        f"{i.get('internal_api')} {i.get('version')} ({Path(i.get('filepath', '')).name}, "
        f"{i.get('num_threads')} thread)"
        for i in threadpoolctl.threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return "numpy: " + "; ".join(blas)


def _fit_recspark(a: argparse.Namespace, spark, train, test, result: dict):
    """recspark's explicit or implicit ALS, or ``sgd_mf`` (``--iters`` epochs of DSGD
    over ``--sgd-blocks`` × ``--sgd-blocks`` blocks, λ_f = ``--reg``): timed fit, phases;
    the clipped test predictions of the explicit models (None for the implicit one)."""
    from pyspark.sql import functions as F

    from recspark.models.als import AlsConfig, fit_als
    from recspark.models.als.implicit import AlsImplicitConfig, fit_als_implicit
    from recspark.models.sgd import SgdMfConfig, fit_sgd_mf
    from recspark.schema import PERSONALISED

    clock = PhaseClock()
    logging.getLogger("recspark").addHandler(clock)  # removed once the fit is timed
    start, cpu = time.perf_counter(), tree_cpu_seconds(os.getpid())
    if a.model == "recspark":
        cfg = AlsConfig(rank=a.rank, max_iter=a.iters, reg_factors=a.reg, reg_bias=a.reg,
                        weighted_reg=True, blocks=a.blocks, mode=a.mode)
        model = fit_als(train, cfg=cfg, seed=a.seed)  # returns with (idx, bias, factors) cached
    elif a.model == "sgd_mf":
        cfg = SgdMfConfig(rank=a.rank, epochs=a.iters, learning_rate=a.sgd_lr, reg_factors=a.reg,
                          reg_bias=a.sgd_reg_bias, blocks=a.sgd_blocks)
        model = fit_sgd_mf(train, cfg=cfg, seed=a.seed)  # (idx, bias, factors) cached too
    else:
        cfg = AlsImplicitConfig(rank=a.rank, max_iter=a.iters, reg=a.reg, alpha=a.alpha,
                                weighted_reg=True, blocks=a.blocks, mode=a.mode)
        model = fit_als_implicit(train, cfg=cfg, seed=a.seed)
    result["fit_s"] = time.perf_counter() - start
    result["fit_cpu_s"] = tree_cpu_seconds(os.getpid()) - cpu
    logging.getLogger("recspark").removeHandler(clock)
    result["phases"] = clock.totals
    # The id-keyed tables join (user_id, user_idx) of the training set: a scan of it.
    start = time.perf_counter()
    model.user_factors.count()
    model.item_factors.count()
    result["id_tables_s"] = time.perf_counter() - start
    result["iteration_s"] = float(model.history["seconds"].mean())
    result["iteration_min_s"] = float(model.history["seconds"].min())
    result["train_rmse"] = [float(v) for v in model.history["train_rmse"]]
    result["blas"] = _numpy_blas()
    return None if a.model == "recspark_implicit" else model.predict(test).where(F.col(PERSONALISED))


def _fit_mllib(a: argparse.Namespace, spark, train, test, result: dict):
    """MLlib ALS, explicit or ``implicitPrefs``: timed fit (factor tables counted); the
    clipped test predictions of the explicit model (None for the implicit one)."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from recspark.schema import MOVIE_IDX, PREDICTION, RATING, USER_IDX

    implicit = a.model == "mllib_implicit"
    als = ALS(
        rank=a.rank,
        maxIter=a.iters,
        regParam=a.reg,
        implicitPrefs=implicit,
        alpha=a.alpha,
        numUserBlocks=a.mllib_blocks,
        numItemBlocks=a.mllib_blocks,
        checkpointInterval=10,
        userCol=USER_IDX,
        itemCol=MOVIE_IDX,
        ratingCol=RATING,
        coldStartStrategy="drop",
        seed=a.seed,
    )
    start, cpu = time.perf_counter(), tree_cpu_seconds(os.getpid())
    model = als.fit(train.select(USER_IDX, MOVIE_IDX, RATING))
    model.userFactors.count()
    model.itemFactors.count()
    result["fit_s"] = time.perf_counter() - start
    result["fit_cpu_s"] = tree_cpu_seconds(os.getpid()) - cpu
    result["iteration_s"] = float("nan")
    result["id_tables_s"] = float("nan")  # MLlib keeps the ids it was given (user_idx)
    jvm = spark.sparkContext._jvm
    result["blas"] = "JVM: BLAS {}, LAPACK {}".format(
        jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName(),
        jvm.dev.ludovic.netlib.lapack.LAPACK.getInstance().getClass().getName(),
    )
    if implicit:
        return None
    return model.transform(test).withColumn(
        PREDICTION, F.least(F.greatest(F.col(PREDICTION), F.lit(0.5)), F.lit(5.0))
    )


# --------------------------------------------------------------------------- parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", nargs="?", default="all", choices=["all", "_prepare", "_fit"])
    p.add_argument("--ratings", default=str(REPO.parent / "shared" / "data" / "ml-latest-small"))
    p.add_argument("--replicate", type=int, default=1)
    p.add_argument("--synthetic", type=int, default=0, help="generate this many ratings instead")
    p.add_argument("--work", default="/tmp/bench_als")
    p.add_argument("--reuse", action="store_true", help="reuse the prepared split in --work")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--reg", type=float, default=0.1)
    p.add_argument("--alpha", type=float, default=1.0, help="implicit models' confidence 1 + α·r")
    p.add_argument("--blocks", type=int, default=0,
                   help="recspark als.blocks (0: twice the cores Spark reports)")
    p.add_argument("--mode", default="auto", help="recspark als.mode")
    p.add_argument("--mllib-blocks", type=int, default=10, help="MLlib numUser/ItemBlocks")
    # sgd_mf: conf/sgd_mf.toml's γ and λ_b (λ_f is --reg, the same as ALS's λ); d = 2, one
    # task per core of local[2] in each sub-epoch
    p.add_argument("--sgd-blocks", type=int, default=2, help="sgd_mf.blocks (d)")
    p.add_argument("--sgd-lr", type=float, default=0.01, help="sgd_mf.learning_rate")
    p.add_argument("--sgd-reg-bias", type=float, default=0.02, help="sgd_mf.reg_bias")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="8g")
    p.add_argument("--shuffle-partitions", type=int, default=8)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--input-partitions", type=int, default=8, help="files the train split is written as")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cold", action="store_true",
                   help="no untimed warm-up fit: the timed fit pays the process's one-time start")
    a = p.parse_args(argv)
    if a.step == "_prepare":
        prepare(a)
        return 0
    if a.step == "_fit":
        fit(a)
        return 0

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYSPARK_PYTHON"] = env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    common = [
        "--work", a.work, "--master", a.master, "--driver-memory", a.driver_memory,
        "--shuffle-partitions", str(a.shuffle_partitions), "--seed", str(a.seed),
        "--input-partitions", str(a.input_partitions),
    ]
    if not (a.reuse and (work / "data.json").is_file()):
        code, secs, _ = run_child(
            ["_prepare", *common, "--ratings", a.ratings, "--replicate", str(a.replicate),
             "--synthetic", str(a.synthetic), "--test-fraction", str(a.test_fraction)],
            env,
        )
        if code:
            print(f"data preparation failed (exit {code})", file=sys.stderr)
            return code
        print(f"prepared the data in {secs:.0f} s", file=sys.stderr)
    data = json.loads((work / "data.json").read_text())
    load_before = os.getloadavg()
    rows = []
    for model in [m.strip() for m in a.models.split(",") if m.strip()]:
        code, wall, mem = run_child(
            ["_fit", *common, "--model", model, "--rank", str(a.rank), "--iters", str(a.iters),
             "--reg", str(a.reg), "--alpha", str(a.alpha), "--blocks", str(a.blocks), "--mode", a.mode,
             "--mllib-blocks", str(a.mllib_blocks), "--sgd-blocks", str(a.sgd_blocks),
             "--sgd-lr", str(a.sgd_lr), "--sgd-reg-bias", str(a.sgd_reg_bias),
             *(["--cold"] if a.cold else [])],
            env,
        )
        if code:
            print(f"{model} failed (exit {code})", file=sys.stderr)
            return code
        r = json.loads((work / f"result_{model}.json").read_text())
        r.update(process_s=wall, peak_rss_gb=mem.peak_rss / 2**30)
        rows.append(r)

    print()
    print(
        f"data: {data['ratings']:,} train ratings ({data['users']:,} users, {data['movies']:,} "
        f"movies), {data['test_ratings']:,} test; rank {a.rank}, {a.iters} iterations, "
        f"λ {a.reg} (weighted), α {a.alpha} (implicit), {a.master}, driver memory {a.driver_memory}"
    )
    print("load average (1, 5, 15 min): before the fits {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(
        *load_before, *os.getloadavg()))
    head = f"{'model':<18} {'fit s':>8} {'fit CPU s':>10} {'s/iter':>8} {'iter s*':>8} {'peak RSS GB':>12} {'test RMSE':>10} {'rows':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['model']:<18} {r['fit_s']:>8.1f} {r['fit_cpu_s']:>10.1f} {r['fit_s'] / a.iters:>8.2f} {r['iteration_s']:>8.2f} "
            f"{r['peak_rss_gb']:>12.2f} {r['test_rmse']:>10.4f} {r['test_rows']:>10,}"
        )
    byname = {r["model"]: r for r in rows}
    for ours, theirs in PAIRS:
        if ours in byname and theirs in byname:
            rs, ml = byname[ours], byname[theirs]
            print(
                f"{'ratio ' + ours:<18} {rs['fit_s'] / ml['fit_s']:>8.2f} {rs['fit_cpu_s'] / ml['fit_cpu_s']:>10.2f} {'':>8} {'':>8} "
                f"{rs['peak_rss_gb'] / ml['peak_rss_gb']:>12.2f} "
                f"{rs['test_rmse'] / ml['test_rmse']:>10.4f}"
            )
    if "recspark" in byname and "numpy" in byname:
        rs, ref = byname["recspark"], byname["numpy"]
        print(
            f"{'iteration recspark / numpy':<28} mean {rs['iteration_s']:.2f} / {ref['iteration_s']:.2f} s "
            f"= {rs['iteration_s'] / ref['iteration_s']:.2f} (<= 2), fastest "
            f"{rs['iteration_min_s']:.2f} / {ref['iteration_min_s']:.2f} s "
            f"= {rs['iteration_min_s'] / ref['iteration_min_s']:.2f}"
        )
        if len(rs.get("train_rmse", [])) == len(ref["train_rmse"]):
            gap = max(abs(x - y) for x, y in zip(rs["train_rmse"], ref["train_rmse"]))
            print(f"{'':<28} same start: largest gap in per-iteration train RMSE {gap:.2e}")
    for name in ("recspark", "numpy", "recspark_implicit", "sgd_mf"):
        if name not in byname:
            continue
        phases = byname[name].get("phases", {})
        print(
            f"{name} phases (wall s / CPU s): "
            + ", ".join(f"{k} {w:.1f} / {c:.1f}" for k, (w, c) in phases.items())
        )
        if name != "numpy":
            print(
                f"{name} id-keyed user/movie tables (join with the training ids, after fit): "
                f"{byname[name]['id_tables_s']:.1f} s"
            )
    print(
        "fit CPU s = user+system CPU of the model's whole process tree during the fit; "
        "s/iter = fit s / iterations (setup included); iter s* = recspark's mean iteration "
        "time from its history (numpy: the reference's, one process, one BLAS thread; its "
        "'blocks' phase is building the two CSR matrices)"
    )
    warm = [f"{r['model']} {r['warm_up_s']:.1f} s" for r in rows if "warm_up_s" in r]
    if warm and not a.cold:
        print("untimed warm-up fit before each clock (same model, 2 iterations, 0.2 % sample): "
              + ", ".join(warm))
    for r in rows:
        print(f"BLAS {r['model']}: {r['blas']}")
    (work / "results.json").write_text(json.dumps({"data": data, "args": vars(a), "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
