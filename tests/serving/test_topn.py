from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from chispa import assert_approx_df_equality

from recspark.errors import ConfigError
from recspark.models.contract import RankingInputs
from recspark.models.factor import FactorScorer, factor_ranking_inputs
from recspark.models.popularity import PopularityScorer
from recspark.schema import (
    BIAS, FACTORS, MODEL, MOVIE_ID, N_RATINGS, RANK, RATING, SCORE, TITLE, USER_ID,
)
from recspark.serving import topn
from recspark.serving.topn import (
    recommend, top_columns, top_n, user_block, with_min_support, with_titles,
)


def brute_top_n(scores: np.ndarray, rated: list[set[int]], n: int) -> list[list[tuple[int, float]]]:
    """Full sort of every row by (−score, index), rated items dropped: the reference."""
    out = []
    for u, row in enumerate(scores):
        cand = [(j, row[j]) for j in range(row.size) if j not in rated[u]]
        cand.sort(key=lambda t: (-t[1], t[0]))
        out.append(cand[:n])
    return out


def _block(p: np.ndarray, bu: np.ndarray, rated: list[set[int]], item_ids: np.ndarray):
    """A UserBlock of users 0..U-1 with factor/bias columns and the given rated positions."""
    users = np.array([u for u, r in enumerate(rated) for _ in r], dtype=np.int64)
    movies = np.array([item_ids[j] for r in rated for j in sorted(r)], dtype=np.int64)
    columns = pa.table(
        {
            USER_ID: pa.array(np.arange(len(rated), dtype=np.int64)),
            BIAS: pa.array(bu),
            FACTORS: pa.array([row.tolist() for row in p], pa.list_(pa.float64())),
        }
    )
    return user_block(
        np.arange(len(rated), dtype=np.int64), columns, users[::-1].copy(), movies[::-1].copy(),
        item_ids=item_ids,
    )


@pytest.mark.parametrize("kind", ["factors", "biases only", "shared"])
@pytest.mark.parametrize("chunk_cells", [1, 37, 10_000])
def test_top_n_kernel_matches_brute_force_with_ties_and_exclusions(chunk_cells, kind):
    rng = np.random.default_rng(3)
    users, items, n = 23, 17, 5
    k = 3 if kind == "factors" else 0
    # integer factors and biases make many exact ties, so the tie rule is exercised
    p = rng.integers(-2, 3, (users, k)).astype(float)
    q = rng.integers(-2, 3, (items, k)).astype(float)
    bu = rng.integers(-1, 2, users).astype(float)
    bi = rng.integers(-1, 2, items).astype(float)
    rated = [set(rng.choice(items, size=rng.integers(0, items + 1), replace=False).tolist())
             for _ in range(users)]
    rated[0] = set(range(items))  # rated everything: no row
    rated[1] = set(range(items - 2))  # two left: a short list
    item_ids = np.arange(100, 100 + 3 * items, 3, dtype=np.int64)
    if kind == "shared":  # one order for every user: the O(n + rated) path
        scorer = PopularityScorer(item_ids, bi)
        expected = brute_top_n(np.broadcast_to(bi, (users, items)), rated, n)
    else:
        scorer = FactorScorer(item_ids, bi, q, global_mean=3.5)
        expected = brute_top_n(3.5 + bu[:, None] + bi[None, :] + p @ q.T, rated, n)
    idx, score = top_n(scorer, _block(p, bu, rated, item_ids), n=n, max_chunk_cells=chunk_cells)
    for u in range(users):
        got = [(int(j), float(s)) for j, s in zip(idx[u], score[u]) if np.isfinite(s)]
        assert got == expected[u], u
    assert not np.isfinite(score[0]).any() and np.isfinite(score[1]).sum() == 2


def _full_sort(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row sorted whole by (−score, column), first n kept: the reference."""
    cols = np.array([sorted(range(row.size), key=lambda j: (-row[j], j))[:n] for row in scores])
    return cols, np.take_along_axis(scores, cols, axis=1)


@pytest.mark.parametrize("m", [1000, 1024, 700, 40])
def test_top_columns_equals_a_full_sort_with_planted_ties(m):
    rng = np.random.default_rng(m)
    n, w = 10, topn._GROUP_WIDTH
    g = m // w
    scores = rng.integers(0, 6, (9, m)).astype(float)  # 6 values in 1000 cells: ties everywhere
    scores[1] = rng.normal(size=m)  # distinct scores
    scores[2] = -np.inf
    scores[2, [5, 900 % m, 17]] = [1.0, 2.0, 1.0]  # three finite: the rest is −∞, by column
    scores[3] = 0.0
    if g >= 1:
        scores[3, 7 + g * np.arange(w)] = 5.0  # the whole top n in one group
    scores[4] = rng.normal(size=m)
    scores[4, m - (m % w or 1):] = 9.0  # the best in the tail no group covers
    scores[5] = np.where(rng.integers(0, 2, m) == 1, -np.inf, rng.integers(0, 3, m))  # half −∞
    scores[6] = 3.0  # all tied: the first n columns
    scores[7] = rng.normal(size=m).round(1)  # ties among the top
    cols, vals = top_columns(scores, n)
    ref_cols, ref_vals = _full_sort(scores, n)
    np.testing.assert_array_equal(cols, ref_cols)
    np.testing.assert_array_equal(vals, ref_vals)
    np.testing.assert_array_equal(cols[6], np.arange(n))
    assert cols.shape == (9, min(n, m))


def test_top_columns_keeps_every_column_when_n_is_large_and_rejects_nan():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 3, (3, 50)).astype(float)
    cols, vals = top_columns(scores, 80)  # n > m: every column, sorted
    np.testing.assert_array_equal(cols, _full_sort(scores, 50)[0])
    big = rng.normal(size=(2, 2000))
    big[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        top_columns(big, 10)


def test_user_block_keeps_known_users_and_movies_in_csr_order():
    item_ids = np.array([10, 20, 30])
    # pairs in any order: user 2 rated 20 and 10, user 1 rated 30 and an unknown 99,
    # an unknown user 7 rated 10
    block = user_block(
        np.array([1, 2]), pa.table({USER_ID: [1, 2]}), np.array([2, 1, 7, 1, 2]),
        np.array([20, 30, 10, 99, 10]), item_ids=item_ids,
    )
    assert block.rated_indptr.tolist() == [0, 1, 3]
    assert block.rated_items.tolist() == [2, 0, 1]


def _tables(spark, rng, users, items, k, *, biased=True):
    user_ids = rng.choice(np.arange(1, 10 * users), size=users, replace=False)
    movie_ids = rng.choice(np.arange(1, 10 * items), size=items, replace=False)
    p, q = rng.normal(size=(users, k)), rng.normal(size=(items, k))
    bu, bi = rng.normal(size=users), rng.normal(size=items)
    ut = [(int(i), float(b), f.tolist()) for i, b, f in zip(user_ids, bu, p)]
    it = [(int(i), float(b), f.tolist()) for i, b, f in zip(movie_ids, bi, q)]
    schema_u = f"{USER_ID} long, {BIAS} double, {FACTORS} array<double>"
    schema_i = f"{MOVIE_ID} long, {BIAS} double, {FACTORS} array<double>"
    udf, idf = spark.createDataFrame(ut, schema_u), spark.createDataFrame(it, schema_i)
    if not biased:
        udf, idf = udf.drop(BIAS), idf.drop(BIAS)
        bu, bi = np.zeros(users), np.zeros(items)
    return user_ids, movie_ids, p, q, bu, bi, udf, idf


@pytest.mark.parametrize("biased", [True, False])
def test_recommend_equals_numpy_brute_force(spark, biased):
    rng = np.random.default_rng(11)
    users, items, k, n, mu = 19, 13, 3, 4, 3.2
    user_ids, movie_ids, p, q, bu, bi, udf, idf = _tables(spark, rng, users, items, k, biased=biased)
    rated = [set(rng.choice(items, size=rng.integers(0, 8), replace=False).tolist())
             for _ in range(users)]
    pairs = [(int(user_ids[u]), int(movie_ids[j]), 4.0) for u in range(users) for j in rated[u]]
    pairs.append((int(user_ids[0]), 999_999, 1.0))  # a rated movie unknown to the model: ignored
    pairs.append((0, int(movie_ids[0]), 2.0))  # a user the model cannot rank (ids start at 1): no list
    rated_df = spark.createDataFrame(pairs, f"{USER_ID} long, {MOVIE_ID} long, {RATING} double")
    mean = mu if biased else 0.0
    inputs = factor_ranking_inputs(udf, idf, global_mean=mean)
    got = recommend(inputs, rated_df, n=n, model="m", block_users=5, max_chunk_cells=20)
    expected = brute_top_n(mean + bu[:, None] + bi[None, :] + p @ q.T, rated, n)
    rows = [
        (int(user_ids[u]), r + 1, int(movie_ids[j]), float(s), "m")
        for u in range(users)
        for r, (j, s) in enumerate(expected[u])
    ]
    expected_df = spark.createDataFrame(rows, got.schema)
    # one shuffle per side into the blocks, none for the cogroup itself
    plan = got._jdf.queryExecution().executedPlan().toString()
    assert plan.count("Exchange hashpartitioning") == 2, plan
    # ids and ranks exactly; scores up to float rounding (the sum is formed in another order)
    assert_approx_df_equality(got, expected_df, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_with_titles_and_bad_n(spark):
    recs = spark.createDataFrame(
        [(1, 1, 10, 4.0, "m"), (1, 2, 20, 3.0, "m")],
        f"{USER_ID} long, {RANK} int, {MOVIE_ID} long, {SCORE} double, {MODEL} string",
    )
    movies = spark.createDataFrame([(10, "Heat (1995)", "Action")], "movie_id long, title string, genres string")
    out = with_titles(recs, movies).orderBy(RANK).select(TITLE).collect()
    assert [r[TITLE] for r in out] == ["Heat (1995)", None]
    inputs = RankingInputs(recs.select(USER_ID), PopularityScorer(np.array([10]), np.array([1.0])))
    with pytest.raises(ConfigError, match="recommend.n"):
        recommend(inputs, recs, n=0, model="m")


@pytest.mark.parametrize("shared", [False, True])
def test_min_support_keeps_movies_with_few_ratings_out_of_every_list(spark, shared):
    item_ids = np.array([10, 20, 30, 40], dtype=np.int64)
    scores = np.array([4.0, 3.0, 2.0, 1.0])  # 10 is best for everyone, but has one rating
    if shared:
        inputs = RankingInputs(spark.createDataFrame([(1,), (2,)], "user_id long"),
                               PopularityScorer(item_ids, scores))
    else:
        users = spark.createDataFrame([(1, 0.0, [1.0]), (2, 0.0, [1.0])],
                                      f"{USER_ID} long, {BIAS} double, {FACTORS} array<double>")
        items = spark.createDataFrame([(int(m), 0.0, [float(s)]) for m, s in zip(item_ids, scores)],
                                      f"{MOVIE_ID} long, {BIAS} double, {FACTORS} array<double>")
        inputs = factor_ranking_inputs(users, items)
    counts = spark.createDataFrame([(10, 1), (20, 5), (30, 2)], f"{MOVIE_ID} long, {N_RATINGS} long")
    rated = spark.createDataFrame([(2, 20, 4.0)], f"{USER_ID} long, {MOVIE_ID} long, {RATING} double")

    assert with_min_support(inputs, counts, min_support=1) is inputs  # no rule
    kept = with_min_support(inputs, counts, min_support=2)
    lists = recommend(kept, rated, n=3, model="m").orderBy(USER_ID, RANK).collect()

    # 10 (1 rating) and 40 (none) are never listed; user 2 rated 20, so only 30 is left
    assert [(r[USER_ID], r[MOVIE_ID]) for r in lists] == [(1, 20), (1, 30), (2, 30)]
