"""Model names accepted in ``train.models``, each mapped to its fit function.

Every fit function has the signature
``fit(train, *, cfg: Config, bias: BiasModel, validation: DataFrame | None) -> RatingModel``:
``train`` and ``validation`` carry user_id, movie_id, user_idx, movie_idx, rating; ``bias``
is the baseline fitted on the same ``train``, used for the fallback on unseen ids.
Imports are lazy so a job pays only for the models it runs.
"""

from __future__ import annotations

import importlib
from typing import Callable

from recspark.errors import ConfigError

FITTERS: dict[str, str] = {
    "bias": "recspark.models.bias:fit_bias_model",
    "mllib_als": "recspark.models.mllib_als:fit_mllib_als",
    "als": "recspark.models.als:fit_als_model",
    "svd": "recspark.models.svd:fit_svd_model",
    "iterative_svd": "recspark.models.svd:fit_iterative_svd_model",
    "nmf": "recspark.models.nmf:fit_nmf_model",
    "nmf_als": "recspark.models.nmf:fit_nmf_als_model",
}


def fitter(name: str) -> Callable:
    """The fit function registered as ``name``."""
    if name not in FITTERS:
        raise ConfigError(
            f"train.models: unknown model {name!r}; choose from {', '.join(FITTERS)}"
        )
    module, func = FITTERS[name].split(":")
    return getattr(importlib.import_module(module), func)
