#!/usr/bin/env python
"""The top-N NumPy kernel alone, on one synthetic block of users × every movie.

    OPENBLAS_NUM_THREADS=1 python scripts/bench_topn_kernel.py                 # 2048 × 87,585, rank 16
    OPENBLAS_NUM_THREADS=1 python scripts/bench_topn_kernel.py --users 512 --rank 10 --chunk 1000000

Builds a :class:`~recspark.models.factor.FactorScorer` with Gaussian factors (the ml-32m
shape by default: 87,585 movies) and a :class:`~recspark.models.contract.UserBlock` whose
users rated ``--rated`` random movies each, then times, per phase and per chunk of
``--chunk`` cells: the scorer's ``scores`` (the GEMM), masking the rated cells, and the
selection of the top n (:func:`recspark.serving.topn.top_n` as a whole, too). Prints seconds
and nanoseconds per cell; checks that :func:`top_n` equals a full ``np.lexsort`` reference on
a few rows. Then similar movies' kernel (the same selection on a cosine GEMM) against the
argpartition selection it replaced, on ``--users`` query movies. Not a test: it asserts
nothing beyond those checks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recspark.models.factor import FactorScorer  # noqa: E402
from recspark.schema import BIAS, FACTORS, USER_ID  # noqa: E402
from recspark.serving import similar, topn  # noqa: E402


def synthetic(users: int, movies: int, rank: int, rated: int, seed: int = 0):
    """A scorer and a block like a factor model's at the ml-32m shape."""
    rng = np.random.default_rng(seed)
    item_ids = np.sort(rng.choice(10 * movies, size=movies, replace=False)).astype(np.int64)
    q = rng.normal(scale=0.3, size=(movies, rank))
    scorer = FactorScorer(item_ids, rng.normal(scale=0.3, size=movies), q, global_mean=3.5)
    p = rng.normal(scale=0.3, size=(users, rank))
    columns = pa.table(
        {
            USER_ID: pa.array(np.arange(users, dtype=np.int64)),
            BIAS: pa.array(rng.normal(scale=0.3, size=users)),
            FACTORS: pa.ListArray.from_arrays(
                pa.array(np.arange(0, (users + 1) * rank, rank, dtype=np.int32)), pa.array(p.ravel())
            ),
        }
    )
    movies_rated = np.concatenate([rng.choice(item_ids, size=rated, replace=False) for _ in range(users)])
    block = topn.user_block(
        np.arange(users, dtype=np.int64), columns, np.repeat(np.arange(users, dtype=np.int64), rated),
        movies_rated, item_ids=item_ids,
    )
    return scorer, block


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2048)
    ap.add_argument("--movies", type=int, default=87_585)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--rated", type=int, default=160)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=topn.MAX_CHUNK_CELLS, help="max cells per chunk")
    a = ap.parse_args(argv)
    scorer, block = synthetic(a.users, a.movies, a.rank, a.rated)
    cells = a.users * a.movies
    rows = max(1, a.chunk // a.movies)
    print(f"{a.users} users × {a.movies} movies, rank {a.rank}, {a.rated} rated each, "
          f"chunk {rows} rows ({rows * a.movies / 1e6:.1f} M cells)")

    phases = {"scores (GEMM)": 0.0, "mask rated": 0.0, "select top n": 0.0}
    counts = np.diff(block.rated_indptr)
    for r0 in range(0, a.users, rows):
        r1 = min(a.users, r0 + rows)
        t0 = time.perf_counter()
        s = scorer.scores(block, slice(r0, r1))
        t1 = time.perf_counter()
        lo, hi = int(block.rated_indptr[r0]), int(block.rated_indptr[r1])
        s[np.repeat(np.arange(r1 - r0), counts[r0:r1]), block.rated_items[lo:hi]] = -np.inf
        t2 = time.perf_counter()
        topn.top_columns(s, a.n)
        t3 = time.perf_counter()
        phases["scores (GEMM)"] += t1 - t0
        phases["mask rated"] += t2 - t1
        phases["select top n"] += t3 - t2
    for name, sec in phases.items():
        print(f"  {name:<16} {sec:7.3f} s  {sec / cells * 1e9:6.3f} ns/cell")
    t0 = time.perf_counter()
    idx, score = topn.top_n(scorer, block, n=a.n, max_chunk_cells=a.chunk)
    sec = time.perf_counter() - t0
    print(f"  top_n total      {sec:7.3f} s  {sec / cells * 1e9:6.3f} ns/cell  "
          f"(ml-32m, 200,948 users: {sec * 200_948 / a.users:.1f} s on one core)")

    check = slice(0, min(a.users, rows))  # the first chunk: the same GEMM shape, the same bits
    s = scorer.scores(block, check)
    lo, hi = 0, int(block.rated_indptr[check.stop])
    s[np.repeat(np.arange(check.stop), counts[check]), block.rated_items[lo:hi]] = -np.inf
    ref = np.lexsort((np.broadcast_to(np.arange(a.movies), s.shape), -s), axis=1)[:, : a.n]
    same = np.array_equal(ref, idx[check]) and np.array_equal(np.take_along_axis(s, ref, 1), score[check])
    print(f"  matches the full-sort reference on {check.stop} rows: {same}")
    similar_movies(a.users, a.movies, a.rank, a.n)
    return 0


def _argpartition_top_k(sims: np.ndarray, k: int) -> np.ndarray:
    """The selection similar movies used before ``top_columns``: partition, then sort k."""
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(sims, part, axis=1)
    return np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1)


def similar_movies(queries: int, movies: int, rank: int, k: int) -> None:
    """Similar movies' kernel (:func:`recspark.serving.similar.top_k_cosine`) on ``queries``
    rows of unit Gaussian vectors, against the same GEMM with the argpartition selection."""
    normed = similar.normalise_rows(np.random.default_rng(1).normal(size=(movies, rank)))
    rows = np.arange(min(queries, movies))
    t0 = time.perf_counter()
    idx, _ = similar.top_k_cosine(normed, rows, k=k)
    ours = time.perf_counter() - t0
    chunk = max(1, topn.MAX_CHUNK_CELLS // movies)
    t0 = time.perf_counter()
    ref = []
    for r0 in range(0, rows.size, chunk):
        q = rows[r0 : r0 + chunk]
        sims = normed[q] @ normed.T
        sims[np.arange(q.size), q] = -np.inf
        ref.append(_argpartition_top_k(sims, k))
    base = time.perf_counter() - t0
    cells = rows.size * movies
    print(f"similar movies, {rows.size} × {movies}, rank {rank}, k {k}: top_k_cosine "
          f"{ours / cells * 1e9:.2f} ns/cell, with argpartition {base / cells * 1e9:.2f} ns/cell "
          f"(ratio {ours / base:.2f}); same neighbours: {np.array_equal(idx, np.vstack(ref))}")


if __name__ == "__main__":
    sys.exit(main())
