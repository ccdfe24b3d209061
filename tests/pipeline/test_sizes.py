"""Size parameters against the data: fixed values that cannot work stop, ranges are capped."""

from __future__ import annotations

import logging

import pytest

from recspark.config import load_config
from recspark.errors import ConfigError
from recspark.pipeline.sizes import DataSize, fit_to_data

FOUR_USERS = DataSize(users=4, movies=30)


def test_a_fixed_k_above_the_users_names_setting_and_size() -> None:
    # issue 11: four users and segment.k = 6 died with ArrayIndexOutOfBoundsException
    cfg = load_config(overrides=["segment.k=6"])
    with pytest.raises(ConfigError, match=r"segment.k = 6 cannot work: the data has 4 users"):
        fit_to_data(cfg, FOUR_USERS, models=["als"], segment=True)


def test_the_automatic_k_range_is_capped_with_a_log_line(caplog) -> None:
    caplog.set_level(logging.INFO)
    cfg = fit_to_data(load_config(), FOUR_USERS, models=["als"], segment=True)
    assert (cfg.segment.k_min, cfg.segment.k_max) == (2, 3)  # k <= users - 1
    assert "segment.k_max = 8 capped to 3" in caplog.text
    with pytest.raises(ConfigError, match="segment.k_min = 2 cannot work: the data has 2 users"):
        fit_to_data(load_config(), DataSize(users=2, movies=30), models=["als"], segment=True)


def test_a_rank_above_the_data_stops_and_blocks_are_capped() -> None:
    small = DataSize(users=50, movies=12)
    with pytest.raises(ConfigError, match=r"svd.rank = 15 cannot work: .* 12 movies"):
        fit_to_data(load_config(), small, models=["svd"])
    with pytest.raises(ConfigError, match=r"svd.sweep = \(4, 20\)"):
        fit_to_data(load_config(overrides=["svd.rank=10", "svd.sweep=4,20"]), small, models=["svd"])
    # models not in use are not checked; blocks are capped to the users
    cfg = fit_to_data(
        load_config(overrides=["als.blocks=8"]), DataSize(3, 12), models=["bias", "als"]
    )
    assert cfg.als.blocks == 3 and cfg.svd.rank == 15
