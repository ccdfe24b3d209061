"""CPU cost of the item-neighbour blocks on a full ratings.csv, sampled, in one process.

    python scripts/bench_knn_blocks.py --ratings-csv /tmp/lead/ml-32m-synthetic/ratings.csv --every 25

Reads the ratings with pyarrow (no Spark), builds the users × movies matrix as ``item_knn``
does (:func:`recspark.models.neighbours.matrix.from_triples`, users capped at
``--max-user-ratings`` sampled ratings), and runs the block function of the Spark tasks
(``knn._neighbour_block``: cosine, shrinkage 100, top ``--k``) on every ``--every``-th block
of movies, on one core. Prints the CPU seconds of the sampled blocks, the estimate for all
blocks and the peak RSS of this process. The values are the ratings centred by their mean:
the cost depends on the matrix's pattern, not on its values. Asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pyarrow.csv as pc

from recspark.models.neighbours.knn import ITEM, KnnConfig, _neighbour_block, _with_columns
from recspark.models.neighbours.matrix import block_width, from_triples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings-csv", required=True)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--max-user-ratings", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    start = time.perf_counter()
    cols = ["userId", "movieId", "rating"]
    tab = pc.read_csv(args.ratings_csv, convert_options=pc.ConvertOptions(include_columns=cols))
    u, i, r = (tab.column(c).to_numpy() for c in cols)
    del tab
    m = from_triples(u, i, r - r.mean(), max_row_entries=args.max_user_ratings, seed=args.seed)
    del u, i, r
    print(f"matrix {m.shape}, {m.matrix.nnz} entries, {m.capped} sampled out by the cap", flush=True)
    data = _with_columns(m.matrix)
    cfg = KnnConfig(measure="cosine", k=args.k, neighbours=args.k, shrinkage=100.0,
                    max_row_entries=args.max_user_ratings)
    width = block_width(m.shape[1], cfg.max_cells)
    n_blocks = -(-m.shape[1] // width)
    cpu, done = 0.0, 0
    for b in range(0, n_blocks, args.every):
        block = np.arange(b * width, min((b + 1) * width, m.shape[1]))
        t = time.process_time()
        _neighbour_block(data, block, ids=m.col_ids, cfg=cfg, side=ITEM)
        cpu, done = cpu + time.process_time() - t, done + 1
    print(
        f"{done} of {n_blocks} blocks of {width} movies: {cpu:.1f} s CPU; all blocks ≈ "
        f"{cpu / done * n_blocks:.0f} s CPU; peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB; wall "
        f"{time.perf_counter() - start:.0f} s", flush=True,
    )


if __name__ == "__main__":
    main()
