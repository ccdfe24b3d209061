"""The compiled SGD loops (recspark.models.sgd.kernel) against hand-computed updates."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.models.sgd import kernel


def test_one_sgd_step_matches_the_hand_computed_update():
    # μ = 3, b_u = 0.1, b_i = -0.2, p_u = (1, 0), q_i = (0.5, 2): r̂ = 3 - 0.1 + 0.5 = 3.4,
    # r = 4, so e = 0.6; γ = 0.1, λ_f = 0.2, λ_b = 0.5.
    p, bu = np.array([[1.0, 0.0]]), np.array([0.1])
    q, bi = np.array([[0.5, 2.0]]), np.array([-0.2])
    one = np.array([0], dtype=np.int64)
    sse = kernel.sgd_pass(one, np.array([0], np.int32), np.array([0], np.int32),
                          np.array([4.0]), 3.0, p, bu, q, bi, 0.1, 0.2, 0.5)
    assert sse == pytest.approx(0.36)
    assert bu[0] == pytest.approx(0.1 + 0.1 * (0.6 - 0.5 * 0.1))  # 0.155
    assert bi[0] == pytest.approx(-0.2 + 0.1 * (0.6 + 0.5 * 0.2))  # -0.13
    # p += γ(e q − λ p) = (1, 0) + 0.1 (0.3 − 0.2, 1.2) = (1.01, 0.12)
    np.testing.assert_allclose(p, [[1.01, 0.12]])
    # q += γ(e p_old − λ q) = (0.5, 2) + 0.1 (0.6 − 0.1, 0 − 0.4) = (0.55, 1.96)
    np.testing.assert_allclose(q, [[0.55, 1.96]])


def test_one_svdpp_user_visit_matches_the_hand_computed_updates():
    # One user with N(u) = {0, 1} (|N|^-½ = s = 1/√2), rank 1, ratings 5 (movie 0) and
    # 2 (movie 1), visited movie 1 first. y = (1, 3): z = s·4 = 2√2, summed once per visit.
    s = 1 / np.sqrt(2)
    z = s * 4.0
    lr, reg_f, reg_b, reg_y = 0.1, 0.05, 0.3, 0.2
    y = np.array([[1.0], [3.0]])
    p, bu, q, bi = np.array([[0.5]]), np.zeros(1), np.array([[1.0], [-0.4]]), np.zeros(2)
    # rating of movie 1 (r = 2): r̂ = 3 + (-0.4)(0.5 + z)
    e1 = 2.0 - (3.0 - 0.4 * (0.5 + z))
    bu1 = lr * e1
    p1 = 0.5 + lr * (e1 * -0.4 - reg_f * 0.5)
    q1 = -0.4 + lr * (e1 * (0.5 + z) + reg_f * 0.4)
    # rating of movie 0 (r = 5), with the b_u and p_u the first step left
    e0 = 5.0 - (3.0 + bu1 + 1.0 * (p1 + z))
    # y_j += γ (s (e1 q_1 + e0 q_0) − λ_y y_j), with q_i as each rating saw it
    g = s * (e1 * -0.4 + e0 * 1.0)
    indptr = np.array([0, 2], np.int64)
    cols = np.array([0, 1], np.int32)
    vals = np.array([5.0, 2.0])
    sse = kernel.svdpp_pass(np.array([0], np.int64), np.array([1, 0], np.int64), indptr, cols,
                            vals, 3.0, p, bu, np.zeros((1, 1)), np.array([s]), q, bi, y,
                            lr, reg_f, reg_b, reg_y)
    assert sse == pytest.approx(e1 * e1 + e0 * e0)
    assert bu[0] == pytest.approx(bu1 + lr * (e0 - reg_b * bu1))
    assert bi[1] == pytest.approx(lr * e1)
    assert p[0, 0] == pytest.approx(p1 + lr * (e0 * 1.0 - reg_f * p1))
    assert q[1, 0] == pytest.approx(q1)
    assert q[0, 0] == pytest.approx(1.0 + lr * (e0 * (p1 + z) - reg_f * 1.0))
    np.testing.assert_allclose(y[:, 0], np.array([1.0, 3.0]) + lr * (g - reg_y * np.array([1.0, 3.0])))


def test_user_order_groups_each_users_ratings():
    users = np.array([0, 0, 0, 2, 2, 3], np.int32)
    uorder, rorder = kernel.user_order(5, 1, 0, 0, users, 4)
    assert sorted(uorder.tolist()) == [0, 1, 2, 3]
    assert sorted(rorder[:3].tolist()) == [0, 1, 2] and sorted(rorder[3:5].tolist()) == [3, 4]
    assert rorder[5] == 5
    again = kernel.user_order(5, 1, 0, 0, users, 4)
    np.testing.assert_array_equal(uorder, again[0])
    np.testing.assert_array_equal(rorder, again[1])


def test_implicit_sums_equal_a_direct_sum():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 3))
    indptr = np.array([0, 2, 2, 5], np.int64)
    cols = np.array([1, 4, 0, 2, 5], np.int32)
    scale = np.array([0.5, 0.0, 2.0])
    out = kernel.implicit_sums(indptr, cols, y, scale, np.zeros((3, 3)))
    np.testing.assert_allclose(out, [0.5 * (y[1] + y[4]), np.zeros(3), 2.0 * (y[0] + y[2] + y[5])])


def test_rating_order_is_a_seeded_permutation():
    a = kernel.rating_order(5, 1, 0, 2, 50)
    assert sorted(a.tolist()) == list(range(50))
    np.testing.assert_array_equal(a, kernel.rating_order(5, 1, 0, 2, 50))
    assert not np.array_equal(a, kernel.rating_order(5, 2, 0, 2, 50))
