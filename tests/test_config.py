import re
import tomllib

import pytest

from recspark.config import config_from_dict, load_config, parse_override, to_toml
from recspark.errors import ConfigError


def test_defaults_come_from_base_toml():
    cfg = load_config()
    assert cfg.seed == 42
    assert cfg.data.dataset == "ml-latest-small"
    assert cfg.train.models == ("bias", "popularity", "mllib_als")


def test_overrides_are_typed():
    cfg = load_config(
        overrides=["mllib_als.rank=20", "bias.user_reg=2", "train.models=bias,als", "spark.master=local[1]"]
    )
    assert cfg.mllib_als.rank == 20 and isinstance(cfg.mllib_als.rank, int)
    assert cfg.bias.user_reg == 2.0 and isinstance(cfg.bias.user_reg, float)
    assert cfg.train.models == ("bias", "als")
    assert cfg.spark.master == "local[1]"


def test_overlay_file_applies_in_order(tmp_path):
    overlay = tmp_path / "x.toml"
    overlay.write_text("seed = 7\n[bias]\nrounds = 9\n")
    cfg = load_config([overlay], ["bias.rounds=4"])
    assert (cfg.seed, cfg.bias.rounds, cfg.bias.user_reg) == (7, 4, 5.0)


@pytest.mark.parametrize(
    "override, message",
    [
        ("bias.rnds=3", "[bias] unknown key(s) rnds; valid keys: item_reg, rounds, user_reg"),
        ("nosuch.key=1", "unknown key(s) nosuch"),
        ("bias.rounds=three", "bias.rounds: input should be a valid integer"),
        ("data.download=maybe", "data.download: input should be a valid boolean"),
        ("als.rank=-3", "als.rank: input should be greater than or equal to 1 (got -3)"),
        ("split.test_fraction=1.5", "split.test_fraction: input should be less than 1 (got 1.5)"),
        ("train.models=bias,foo", "train.models: unknown model 'foo'"),
        ("segment.model=bias", "segment.model: model 'bias' cannot provide latent factors"),
        ("spark.log_level=foo", "spark.log_level: input should be"),
        ("noequals", "expected section.key=value"),
        # a check shared by several sections says which section failed
        ("user_knn.k=2000", "[user_knn] k (2000) must not exceed neighbours (100)"),
        ("content_knn.k=101", "[content_knn] k (101) must not exceed neighbours (100)"),
        ("ease.max_items=50000", "ease.max_items: input should be less than or equal to 20000"),
    ],
)
def test_bad_config_names_the_problem(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(overrides=[override])


def test_missing_config_file_is_a_config_error():
    with pytest.raises(ConfigError, match="not found"):
        load_config(["no-such-file.toml"])


def test_resolved_config_round_trips_through_toml():
    cfg = load_config(overrides=["spark.extra={'spark.executor.cores' = '2'}", "train.models=bias"])
    assert config_from_dict(tomllib.loads(to_toml(cfg))) == cfg


def test_override_values_are_read_as_toml_when_they_can_be():
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    assert parse_override("a.b=hello world") == {"a": {"b": "hello world"}}
    # TOML would read these as a date and a time; settings keep them as the text typed
    assert parse_override("rescore.score_date=2025-01-01") == {"rescore": {"score_date": "2025-01-01"}}
    assert load_config([], ["rescore.score_date=2025-01-01"]).rescore.score_date == "2025-01-01"


def test_base_toml_documents_exactly_the_defaults():
    # the library shipped as a zip has no conf/ folder and relies on the sections' defaults
    from recspark.config import default_config

    assert load_config() == default_config()


def test_base_toml_lists_every_key_of_every_section():
    # a user reads conf/base.toml to learn what can be set: no key may be missing from it
    from pydantic import BaseModel

    from recspark.config import CONF_DIR, default_config

    raw = tomllib.loads((CONF_DIR / "base.toml").read_text(encoding="utf-8"))

    def keys(obj: BaseModel, prefix: str = "") -> set[str]:
        out = set()
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            out |= keys(value, f"{prefix}{name}.") if isinstance(value, BaseModel) else {prefix + name}
        return out

    def listed(table: dict, prefix: str = "") -> set[str]:
        out = set()
        for name, value in table.items():
            free_form = prefix + name == "spark.extra"  # a table of arbitrary spark.* keys
            nested = isinstance(value, dict) and not free_form
            out |= listed(value, f"{prefix}{name}.") if nested else {prefix + name}
        return out

    assert listed(raw) == keys(default_config())
