"""Heavy-tailed counts, the two distinct samplers, skewed biases."""

from __future__ import annotations

import numpy as np
import pytest

from recspark.errors import ConfigError
from recspark.synthetic.sampling import sample_distinct, skewed_bias, user_rating_counts


def test_user_counts_are_exact_bounded_and_heavy_tailed():
    counts = user_rating_counts(
        users=5000, total=5000 * 80, minimum=20, maximum=3000, exponent=1.2,
        rng=np.random.default_rng(1),
    )
    assert counts.sum() == 5000 * 80
    assert counts.min() >= 20 and counts.max() <= 3000
    assert counts.max() >= 20 * np.median(counts)  # heavy tail
    assert np.median(counts) < 80  # most users below the mean, as in MovieLens
    with pytest.raises(ConfigError, match="cannot give"):
        user_rating_counts(users=10, total=10 * 19, minimum=20, maximum=50, exponent=1.2,
                           rng=np.random.default_rng(1))


def test_user_counts_all_at_the_cap():
    counts = user_rating_counts(users=7, total=7 * 30, minimum=20, maximum=30, exponent=1.2,
                                rng=np.random.default_rng(1))
    assert counts.tolist() == [30] * 7


def _check_distinct(owner, item, counts):
    assert np.bincount(owner, minlength=counts.size).tolist() == counts.tolist()
    key = owner * 10_000 + item
    assert np.unique(key).size == key.size  # no repeated (owner, item)
    assert (np.diff(key) > 0).all()  # sorted by owner then item


def test_sample_distinct_both_samplers_draw_the_same_law():
    probs = (np.arange(1, 41) + 1.0) ** -1.5
    probs /= probs.sum()
    counts = np.full(6000, 8)
    freq = {}
    for name, exact_above in (("draws", np.inf), ("gumbel", 0.0)):
        owner, item = sample_distinct(counts=counts, probs=probs, exact_above=exact_above,
                                      rng=np.random.default_rng(7))
        _check_distinct(owner, item, counts)
        freq[name] = np.bincount(item, minlength=40) / counts.size
    # Inclusion frequencies agree (se of a difference ~0.009) and follow popularity.
    assert np.abs(freq["draws"] - freq["gumbel"]).max() < 0.04
    assert freq["draws"][0] > 0.8 and freq["draws"][-1] < 0.15


def test_sample_distinct_falls_back_when_draws_run_short():
    probs = np.full(50, 1 / 50)
    counts = np.array([0, 1, 30, 50, 12])
    # A table claiming 2 draws give 1e9 distinct items makes every light owner fall short.
    owner, item = sample_distinct(counts=counts, probs=probs, rng=np.random.default_rng(3),
                                  table=(np.array([1.0, 1e9]), np.array([1.0, 2.0])),
                                  exact_above=np.inf)
    _check_distinct(owner, item, counts)
    assert item[owner == 3].tolist() == list(range(50))


def test_sample_distinct_rejects_more_than_all_items():
    with pytest.raises(ValueError, match="more than the 3 items"):
        sample_distinct(counts=np.array([4]), probs=np.full(3, 1 / 3), rng=np.random.default_rng(0))


def test_skewed_bias_has_mean_zero_the_sd_and_a_left_tail():
    b = skewed_bias(200_000, 0.5, np.random.default_rng(2))
    assert abs(b.mean()) < 0.01 and b.std() == pytest.approx(0.5, rel=0.02)
    skew = np.mean(((b - b.mean()) / b.std()) ** 3)
    assert skew == pytest.approx(-np.sqrt(2), abs=0.1)  # Gamma(2) negated: skewness −√2
