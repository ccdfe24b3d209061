"""The registered models: a name in ``train.models`` → the module holding its ``SPEC``.

Adding a model is one module (config section, fit function, a :class:`ModelSpec`; see
:mod:`recspark.models.contract`) plus one line here. The registry also assembles the root
config class from every model's section, and checks the settings that name models
(``train.models``, ``segment.model``, ``rescore.model``) before any Spark work starts.
"""

from __future__ import annotations

import functools
import importlib

from pydantic import Field, create_model

from recspark.config import Config
from recspark.errors import ConfigError
from recspark.models.contract import Ability, FitContext, ModelSpec, require

#: name → ``module:attribute`` of its :class:`ModelSpec` (imported on first use).
MODELS: dict[str, str] = {
    "bias": "recspark.models.bias:SPEC",
    "mllib_als": "recspark.models.mllib_als:SPEC",
    "als": "recspark.models.als:SPEC",
    "als_implicit": "recspark.models.als.implicit:SPEC",
    "mllib_als_implicit": "recspark.models.mllib_als:IMPLICIT_SPEC",
    "svd": "recspark.models.svd.truncated:SPEC",
    "iterative_svd": "recspark.models.svd.iterative:SPEC",
    "nmf": "recspark.models.nmf:SPEC",
    "nmf_als": "recspark.models.nmf:ALS_SPEC",
    "popularity": "recspark.models.popularity:SPEC",
    "blend": "recspark.models.blend:SPEC",
    "sgd_mf": "recspark.models.sgd:SPEC",
    "svdpp": "recspark.models.sgd:SVDPP_SPEC",
    "item_knn": "recspark.models.neighbours.knn:ITEM_SPEC",
    "user_knn": "recspark.models.neighbours.knn:USER_SPEC",
    "ease": "recspark.models.neighbours.ease:SPEC",
    "content_knn": "recspark.models.content:SPEC",
}


def spec(name: str) -> ModelSpec:
    """The spec registered as ``name`` (raises :class:`ConfigError` naming the choices)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    module, attribute = MODELS[name].split(":")
    found = getattr(importlib.import_module(module), attribute)
    if found.name != name:
        raise TypeError(f"{MODELS[name]} is named {found.name!r}, registered as {name!r}")
    return found


def specs() -> list[ModelSpec]:
    """Every registered spec, in registry order."""
    return [spec(name) for name in MODELS]


def with_ability(ability: Ability) -> list[str]:
    """Names of the registered models that have ``ability``."""
    return [s.name for s in specs() if s.can(ability)]


def config_class() -> type[Config]:
    """:class:`~recspark.config.Config` plus one section per model config (by section name)."""
    return _config_class(tuple(MODELS.items()))


@functools.lru_cache(maxsize=8)
def _config_class(registered: tuple[tuple[str, str], ...]) -> type[Config]:
    sections = {}
    for s in specs():
        if s.config is not None and s.section not in sections:
            sections[s.section] = (s.config, Field(default_factory=s.config))
    return create_model("Config", __base__=Config, **sections)


def check_config(cfg: Config) -> None:
    """Cross-section checks of the settings that name models; raises :class:`ConfigError`
    listing every problem."""
    problems = []
    for name in cfg.train.models:
        if name not in MODELS:
            problems.append(f"train.models: unknown model {name!r}; choose from {', '.join(MODELS)}")
    named = [("segment.model", cfg.segment.model, Ability.FACTORS)]
    if cfg.rescore.model:  # empty: the run's best saved model, found when rescoring
        named.append(("rescore.model", cfg.rescore.model, Ability.SAVE))
    for setting, name, ability in named:
        try:
            require(spec(name), ability, setting=setting, choices=with_ability(ability))
        except ConfigError as exc:
            problems.append(str(exc) if name in MODELS else f"{setting}: {exc}")
    if problems:
        raise ConfigError("; ".join(problems))


def fit(name: str, train, *, cfg: Config, bias=None, validation=None, fitted=None):
    """Fit the model registered as ``name`` on ``train`` through its spec's generic adapter
    (:meth:`ModelSpec.fit_model`); ``bias`` is the baseline fitted on the same ``train``,
    ``fitted`` the models already fitted on it with ``cfg`` by name (a blend reuses them)."""
    ctx = FitContext(train=train, cfg=cfg, bias=bias, validation=validation, fitted=fitted or {})
    return spec(name).fit_model(ctx)
