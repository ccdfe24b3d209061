"""The block-wise join helpers of recspark.blocks: transpose, zip, route, gather."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.blocks import (
    RouteTable,
    build_blocks,
    gather_rows,
    plan_routes,
    route_rows,
    zip_blocks,
)
from recspark.schema import MOVIE_IDX, RATING, USER_IDX

ROWS = [(0, 2, 4.0), (0, 0, 3.0), (1, 1, 5.0), (2, 0, 1.0), (2, 2, 2.5), (4, 1, 3.5), (5, 4, 2.0)]


def test_zip_blocks_combines_partition_by_partition_without_a_shuffle(spark):
    df = spark.createDataFrame(ROWS, [USER_IDX, MOVIE_IDX, RATING])
    users = build_blocks(df, row_col=USER_IDX, col_col=MOVIE_IDX, n_blocks=3)
    labels = users.mapValues(lambda b: f"block {b.block}")
    zipped = zip_blocks(
        [users, labels], lambda b, vals: [(b, sorted(type(v).__name__ for v in vals))], n_blocks=3
    )
    assert dict(zipped.collect()) == {b: ["Block", "str"] for b in (0, 1, 2)}
    # zip -> union of the inputs' own partitions, through narrow dependencies only
    union = zipped._jrdd.rdd().dependencies().head().rdd()
    assert union.getClass().getSimpleName() == "PartitionerAwareUnionRDD"
    deps = union.dependencies()
    kinds = {deps.apply(i).getClass().getSimpleName() for i in range(deps.size())}
    assert kinds and not any("Shuffle" in k for k in kinds)


def test_routes_deliver_exactly_the_rows_each_block_needs(spark):
    sc = spark.sparkContext
    n = 3
    # Source entities 0..10 live in block id % 3; each row of a source is (10 * id, -id).
    held = {s: np.arange(s, 11, n) for s in range(n)}
    sources = sc.parallelize([(s, ids) for s, ids in held.items()], n)
    values = sc.parallelize([(s, np.stack([10.0 * ids, -ids], 1)) for s, ids in held.items()], n)
    needs = {0: np.array([1, 2, 7, 9]), 1: np.array([0, 10]), 2: np.array([3])}
    routes = plan_routes(sc.parallelize(list(needs.items()), 2), sources, n_blocks=n)

    tables = dict(routes.collect())
    assert isinstance(tables[1], RouteTable) and tables[1].dests == (0, 1)  # ids 1, 7 and 10
    np.testing.assert_array_equal(tables[1].positions[0], [0, 2])  # 1 and 7 in [1, 4, 7, 10]

    aligned = zip_blocks([values], lambda b, vals: [(b, vals[0])], n_blocks=n)
    routed = route_rows(aligned, routes, n_blocks=n)
    got = zip_blocks(
        [routed],
        lambda d, pieces: [(d, gather_rows(needs[d], pieces, n_blocks=n, width=2))],
        n_blocks=n,
    )
    for d, rows in got.collect():
        np.testing.assert_array_equal(rows, np.stack([10.0 * needs[d], -needs[d]], 1))


def test_routing_to_an_id_no_block_holds_fails_clearly(spark):
    sc = spark.sparkContext
    sources = sc.parallelize([(0, np.array([0, 2])), (1, np.array([1]))], 2)
    routes = plan_routes(sc.parallelize([(0, np.array([2, 4]))], 1), sources, n_blocks=2)
    with pytest.raises(Exception, match="needs ids \\[4\\] that source block 0 does not hold"):
        routes.collect()


def test_gather_rows_rejects_incomplete_pieces():
    from recspark.blocks import RoutedRows

    with pytest.raises(ValueError, match="received 1 rows for 2 needed ids"):
        gather_rows(np.array([0, 1]), [RoutedRows(0, np.zeros((1, 3)))], n_blocks=2)
