"""The model contract: one :class:`ModelSpec` per registered model, and what each ability means.

A model module defines its config section (a :class:`~recspark.config.Section`), its fit
function and one ``SPEC = ModelSpec(...)``; :mod:`recspark.models.registry` maps the model's
name to that module. Everything downstream (the train run, top-N lists, segments,
re-scoring) asks the spec what the model can do instead of probing the fitted object:

==================  =====================================================================
ability             what the fitted model offers
==================  =====================================================================
``PREDICT``         ``predict(pairs)``: every row of (user_id, movie_id, ...) plus
                    ``prediction`` (on the rating scale) and ``personalised`` (false where
                    the bias fallback scored it). Models that only rank (EASE) lack it.
``TOP_N``           ``ranking_inputs()`` → :class:`RankingInputs`: a per-user table and a
                    :class:`BlockScorer` that scores any block of users × every movie it
                    knows, so :func:`recspark.serving.topn.recommend` ranks for any model.
``FACTORS``         ``user_factors`` (user_id, factors[, bias]) and ``item_factors``
                    (movie_id, factors[, bias]) tables: segments, similar movies, pictures.
``SAVE``            ``save(path)`` writes a folder holding ``model.json`` with at least
                    ``name`` (the registered name: re-scoring finds the spec by it), and
                    ``ModelSpec.load(spark, path)`` reads it back.
``FOLD_IN``         ``fold_in(ratings)``: the same model, also scoring the users of
                    ``ratings`` (user_id, movie_id, rating) it did not see in training.
``HISTORY``         ``history``: the per-iteration convergence table of an iterative fit
                    (``iteration`` plus figures such as ``train_rmse``), or None. The train
                    run writes it beside the saved model, plots it and adds its points
                    to the metrics table.
``RANK_SWEEP``      ``sweep_model``: the model with all its computed components, ordered
                    so that the first k give the rank-k model (SVD), or None; the train
                    run evaluates it at every rank of ``settings["sweep"]``.
==================  =====================================================================

The generic adapter :meth:`ModelSpec.fit_model` calls every model's fit function the same
way: ``fit(train, *, cfg=<its section>, seed=<derived from the root seed by model name>,
lo=, hi=<the rating scale>, bias=<the baseline on the same train>, validation=,
root_cfg=<the whole config>, fitted=<models already fitted on the same train, by name>)``,
passing only the keywords the function declares (only a model built from other models, the
blend, needs ``root_cfg`` and ``fitted``). A fitted model that holds some of ``fitted``
names them in ``reused``: the train run adds their fit seconds to its own.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from recspark.errors import ConfigError
from recspark.seeds import derive_seed

if TYPE_CHECKING:  # pragma: no cover
    from recspark.config import Config, Section


class Ability(enum.Enum):
    """What a fitted model can do beyond what every model does (see the module table)."""

    PREDICT = "predict"
    TOP_N = "top_n"
    FACTORS = "factors"
    SAVE = "save"
    FOLD_IN = "fold_in"
    HISTORY = "history"
    RANK_SWEEP = "rank_sweep"


# --------------------------------------------------------------------------- abilities


@runtime_checkable
class RatingModel(Protocol):
    """Every fitted model: a name and rating predictions for any pairs."""

    name: str

    def predict(self, pairs: DataFrame) -> DataFrame:
        """``pairs`` (user_id, movie_id, any other columns) plus ``prediction`` (clipped to
        the rating scale) and ``personalised``; no row dropped."""
        ...


@dataclass(frozen=True)
class UserBlock:
    """The users one top-N task scores, ascending by id.

    ``columns``: the rows of :attr:`RankingInputs.users` for these users (same order), the
    model's own per-user columns (e.g. bias and factors). The rated movies of user row u
    are ``rated_items[rated_indptr[u]:rated_indptr[u + 1]]``, positions into the scorer's
    ``item_ids``, ascending within each user (movies the scorer does not know are left out).
    The ratings themselves are not carried: ranking masks what a user rated, whatever the
    rating.
    """

    user_ids: np.ndarray  # (U,) int64
    columns: pa.Table
    rated_indptr: np.ndarray  # (U + 1,) int64
    rated_items: np.ndarray  # (nnz,) int64


@runtime_checkable
class BlockScorer(Protocol):
    """Scores users × movies inside a Spark task (picklable; broadcast once per top-N job).

    ``item_ids``: the (M,) ascending movie ids it ranks. ``scores(block, rows)``: a dense
    (len(rows) × M) float array of ranking scores (higher is better) for the user rows
    ``rows`` (a slice) of ``block``; masking rated movies and sorting is the caller's job.
    ``shared_scores``: None, or an (M,) array when every user gets the same scores (a
    non-personalised ranking such as popularity), which lets the caller rank in
    O(n + rated) per user instead of O(M).
    """

    item_ids: np.ndarray
    shared_scores: np.ndarray | None

    def scores(self, block: UserBlock, rows: slice) -> np.ndarray: ...


@dataclass(frozen=True)
class RankingInputs:
    """What a ``TOP_N`` model hands to :func:`recspark.serving.topn.recommend`: ``users``
    (user_id plus the columns its scorer reads, one row per user it can rank) and the
    ``scorer``."""

    users: DataFrame
    scorer: BlockScorer


@runtime_checkable
class Ranker(Protocol):
    """``TOP_N``: can score any user block against every movie it knows."""

    name: str

    def ranking_inputs(self) -> RankingInputs: ...


@runtime_checkable
class LatentFactors(Protocol):
    """``FACTORS``: ``user_factors`` (user_id, factors array<double>[, bias]) and
    ``item_factors`` (movie_id, factors[, bias]) tables."""

    name: str
    user_factors: DataFrame
    item_factors: DataFrame


@runtime_checkable
class Saveable(Protocol):
    """``SAVE``: writes itself to a folder that the spec's ``load`` reads back; the folder's
    ``model.json`` holds at least ``name``, the registered name
    (:func:`recspark.io.runs.write_model_meta`)."""

    name: str

    def save(self, path: str) -> None: ...


@runtime_checkable
class FoldsIn(Protocol):
    """``FOLD_IN``: scores users it did not see in training from their ratings, without
    refitting. ``ratings``: user_id, movie_id, rating; the ratings of users the model
    already knows are ignored (those users keep what training gave them)."""

    name: str

    def fold_in(self, ratings: DataFrame) -> Any: ...


@runtime_checkable
class Iterative(Protocol):
    """``HISTORY``: ``history`` is a pandas frame with an ``iteration`` column and one column
    per recorded figure (``train_rmse``, ``validation_rmse``, ``objective``, ...; NaN where
    not measured), one row per iteration; None when the fit recorded nothing."""

    name: str
    history: pd.DataFrame | None


@runtime_checkable
class RankSweepable(Protocol):
    """``RANK_SWEEP``: ``sweep_model`` is a ``FACTORS`` model (with ``global_mean``,
    ``fallback``, ``lo``, ``hi``, ``rank``) holding every computed component, ordered so the
    first k give the best rank-k model, or None when no more than ``rank`` were computed;
    ``settings["sweep"]`` lists the ranks to evaluate."""

    name: str
    sweep_model: Any
    settings: Any


#: The protocol each ability promises (tests check fitted models against it).
PROTOCOLS: dict[Ability, type] = {
    Ability.PREDICT: RatingModel,
    Ability.TOP_N: Ranker,
    Ability.FACTORS: LatentFactors,
    Ability.SAVE: Saveable,
    Ability.FOLD_IN: FoldsIn,
    Ability.HISTORY: Iterative,
    Ability.RANK_SWEEP: RankSweepable,
}


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FitContext:
    """Everything a fit may use: the training (and optional validation) ratings with
    user_id, movie_id, user_idx, movie_idx, rating; the bias model fitted on the same
    ``train`` (the fallback for unseen ids); and the whole config."""

    train: DataFrame
    cfg: "Config"
    bias: Any = None
    validation: DataFrame | None = None
    #: models already fitted on this same ``train`` with this ``cfg``, by registered name
    #: (a blend reuses them instead of refitting its members)
    fitted: Mapping[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> tuple[float, float]:
        """The rating scale (lo, hi) predictions are clipped to."""
        return self.cfg.train.rating_min, self.cfg.train.rating_max


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: its name, config section, fit function and abilities.

    ``fit(train, *, cfg, seed, lo, hi, bias, validation, root_cfg, fitted)`` returns the fitted model
    (it may declare only the keywords it uses; ``config`` is the root config, e.g. for the
    ingested movies table);
    ``config`` is its section class (None for a model without settings) and ``section``
    the name of the config section it reads (default: its own name; models sharing
    settings name the same section). ``load(spark, path)`` reads what ``save`` wrote
    (required with ``Ability.SAVE``).
    """

    name: str
    summary: str
    fit: Callable[..., Any]
    abilities: frozenset[Ability]
    config: type["Section"] | None = None
    section: str | None = None
    load: Callable[[SparkSession, str], Any] | None = None

    def __post_init__(self) -> None:
        if Ability.SAVE in self.abilities and self.load is None:
            raise TypeError(f"model {self.name!r} claims SAVE but its spec has no load")
        if self.section is None and self.config is not None:
            object.__setattr__(self, "section", self.name)

    def can(self, ability: Ability) -> bool:
        """True if the fitted model has ``ability``."""
        return ability in self.abilities

    def settings(self, cfg: "Config") -> Any:
        """This model's config section of ``cfg`` (None when it has none)."""
        return None if self.section is None else cfg.section(self.section)

    def fit_model(self, ctx: FitContext) -> Any:
        """The generic adapter: call ``fit`` with the model's section of ``ctx.cfg``, the seed
        derived from the root seed and the model's name, the rating scale, the bias model
        and the validation ratings."""
        lo, hi = ctx.scale
        offered = {
            "cfg": self.settings(ctx.cfg),
            "seed": derive_seed(ctx.cfg.seed, self.name),
            "lo": lo,
            "hi": hi,
            "bias": ctx.bias,
            "validation": ctx.validation,
            "fitted": ctx.fitted,
            "root_cfg": ctx.cfg,  # the root config, for a model that reads other sections or tables
        }
        # A fit function takes the keywords it uses (a truncated SVD has no seed).
        params = inspect.signature(self.fit).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            offered = {k: v for k, v in offered.items() if k in params}
        return self.fit(ctx.train, **offered)


def require(spec: ModelSpec, ability: Ability, *, setting: str, choices: list[str]) -> None:
    """Raise :class:`ConfigError` when ``spec`` lacks ``ability`` (``setting`` is the config
    key that named it; ``choices`` the models that have it)."""
    if not spec.can(ability):
        raise ConfigError(
            f"{setting}: model {spec.name!r} cannot {_VERBS[ability]}; choose from "
            f"{', '.join(choices)}"
        )


_VERBS = {
    Ability.PREDICT: "predict ratings",
    Ability.TOP_N: "rank movies for top-N lists",
    Ability.FACTORS: "provide latent factors",
    Ability.SAVE: "be saved and re-loaded",
    Ability.FOLD_IN: "fold in new users",
    Ability.HISTORY: "record a convergence history",
    Ability.RANK_SWEEP: "be evaluated at smaller ranks",
}
