"""The sub-commands of ``recspark`` (and the jobs they back): what each reads, does, writes.

One :class:`Command` per sub-command: its one-line summary, the config sections it reads,
two examples, where its outputs go, the stages it plans for a config (``--dry-run``) and
the function that runs it on a SparkSession. ``jobs/*.py`` (the spark-submit entry points)
run the same functions through :func:`recspark.cli.run_command`. Pipelines are imported when a
command runs, so ``--help`` and ``--dry-run`` start neither Spark nor the JVM.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import textwrap
from typing import Callable

from pyspark.sql import SparkSession

from recspark.config import Config, expand

_logger = logging.getLogger(__name__)

#: A command's body: runs on the session; a returned string is printed for the user.
Runner = Callable[[SparkSession, Config, argparse.Namespace], object]


@dataclasses.dataclass(frozen=True)
class Command:
    """A sub-command: see the module docstring."""

    name: str
    summary: str
    sections: tuple[str, ...]
    examples: tuple[str, str]
    outputs: str
    plan: Callable[[Config], list[str]]
    run: Runner
    arguments: Callable[[argparse.ArgumentParser], None] | None = None

    def epilog(self) -> str:
        """The text under the options in ``--help``."""
        wrap = functools.partial(textwrap.fill, width=79, subsequent_indent="  ")
        return "\n".join(
            [
                wrap(f"config sections read: {', '.join(self.sections)} (see conf/base.toml)"),
                "",
                "examples:",
                *(f"  {e}" for e in self.examples),
                "",
                wrap(f"outputs: {self.outputs}"),
            ]
        )


# --------------------------------------------------------------------------- runners


def _ingest(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
    from recspark.pipeline.ingest import run_ingest

    run_ingest(spark, cfg)


def _train(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> str:
    from recspark.io import storage
    from recspark.log import timings
    from recspark.pipeline.train import run_train
    from recspark.report.collect import TIMINGS_FILE
    from recspark.report.render import write_report

    first = len(timings())
    result = run_train(spark, cfg)
    storage.write_text(spark, f"{result.run_dir}/{TIMINGS_FILE}", json.dumps(timings()[first:]))
    report = write_report(spark, cfg, result.run_dir)
    return f"\nrun {result.run_id} -> {result.run_dir}\nreport: {report}\n\n{result.summary()}"


def _segment(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> str:
    from recspark.pipeline.segment import run_segment

    result = run_segment(spark, cfg)
    verdict = "helps" if result.segmentation_helps() else "does not help"
    _refresh_report(spark, cfg, f"{expand(cfg.train.output_dir).rstrip('/')}/{result.run_id}")
    return (
        f"\nsegment run {result.run_id} ({result.model} from {result.source}, k={result.k}) "
        f"-> {result.output_dir}\nsegmentation {verdict} (blend weight {result.blend_weight})"
    )


def _rescore(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> None:
    from recspark.pipeline.rescore import run_rescore

    report = run_rescore(spark, cfg)
    model_path = str(report.get("model_path", "")).rstrip("/")
    if "/models/" in model_path:
        _refresh_report(spark, cfg, model_path.rsplit("/models/", 1)[0])


def _report(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> str:
    from recspark.errors import DataNotFoundError
    from recspark.io import runs
    from recspark.report.render import write_report

    run_id = args.run_id or next(iter(reversed(runs.published_runs(spark, runs.runs_dir(cfg)))), "")
    if not run_id:
        raise DataNotFoundError(
            f"no published train run under {runs.runs_dir(cfg)}: run `recspark train` first"
        )
    return write_report(spark, cfg, runs.run_path(cfg, run_id))


def _generate(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> str:
    from recspark.synthetic import generate_movielens

    s = generate_movielens(spark, cfg=cfg)
    return (
        f"\n{s.ratings} ratings, {s.users} users, {s.movies} movies, ~{s.tags_planned} tags "
        f"in {s.seconds:.1f} s ({s.rate():,.0f} ratings/s) -> {s.output}\n"
    )


def _refresh_report(spark: SparkSession, cfg: Config, run_dir: str) -> None:
    """Write the train run's report again (extended by a segment or re-score run) when
    that run exists."""
    from recspark.io import runs, storage
    from recspark.report.render import write_report

    if storage.exists(spark, f"{run_dir}/{runs.METRICS_DIR}"):
        write_report(spark, cfg, run_dir)


def _tune(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> str:
    import shlex
    import sys

    from recspark.pipeline.tune import run_tune

    args.command = shlex.join(sys.argv)  # recorded in the overlay's header
    return run_tune(spark, cfg, args).head(10).to_string(index=False)


def _tune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model to tune")
    p.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=[V1,V2,...]",
                   help="values to search for one config key (repeatable)")
    p.add_argument("--metric", default="rmse", choices=["rmse", "ndcg"],
                   help="rmse (lower is better) or ndcg at recommend.k (higher is better)")
    p.add_argument("--folds", type=int, default=0,
                   help="K >= 2: K-fold CV of the training part; 0: one validation part")
    p.add_argument("--trials", type=int, default=0,
                   help="seeded random search of this many grid points (0: the whole grid)")
    p.add_argument("--parallel", type=int, default=1,
                   help="trials run at once (threads sharing the cores)")
    p.add_argument("--output", default="", help="output folder (default out/tune/<model>)")
    p.add_argument("--overlay", default="", help="where to write the winning overlay "
                   "(default <output>/best.toml)")


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", nargs="?", default="",
                   help="the train run to report (default: the latest published run)")


# --------------------------------------------------------------------------- plans


def _plan_train(cfg: Config) -> list[str]:
    from recspark.models import registry
    from recspark.models.contract import Ability

    steps = [f"read {cfg.ingest_dir()}/ratings", f"split ({cfg.split.kind})", "bias model"]
    for name in cfg.train.models:
        spec = registry.spec(name)
        abilities = ", ".join(sorted(a.name for a in spec.abilities))
        steps.append(f"fit {name} [{abilities}]")
    rankers = [m for m in cfg.train.models if registry.spec(m).can(Ability.TOP_N)]
    if cfg.recommend.enabled and rankers:
        steps.append(f"top-{cfg.recommend.n} lists and ranking metrics@{cfg.recommend.k}: "
                     + ", ".join(rankers))
        steps += [f"refit every model on the {k} split" for k in cfg.recommend.extra_splits
                  if k != cfg.split.kind]
    run = cfg.train.run_id or "<UTC time>"
    return steps + [f"publish {expand(cfg.train.output_dir)}/{run}/", "write report.html"]


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command(
            "ingest",
            "raw MovieLens files -> validated, indexed, partitioned Parquet + statistics",
            ("spark", "data", "ingest"),
            ("recspark ingest --set data.dataset=ml-1m",
             "recspark ingest --set data.dir=/data/ml-latest-small --set ingest.output_dir=/tmp/ingest"),
            "ingest.output_dir (default out/ingest/<dataset>/): ratings, movies, tags, links, "
            "indices, quarantine, stats, plots, report.json",
            lambda cfg: [f"find {cfg.data.dataset} ({cfg.data.dir or 'RECSPARK_DATA or cache'})",
                         "validate and quarantine", "side tables", "deduplicate", "index",
                         "write ratings", "reconcile counts", "statistics and plots",
                         f"publish {cfg.ingest_dir()}/"],
            _ingest,
        ),
        Command(
            "train",
            "ingested ratings -> split -> models -> predictions, metrics, top-N lists, report",
            ("spark", "data", "ingest", "split", "train", "recommend", "<each model's section>"),
            ("recspark train --set train.models=bias,popularity,als",
             "recspark train -c conf/als.toml --set train.run_id=try1 --dry-run"),
            "train.output_dir/<run_id>/ (default out/runs/): predictions, metrics, "
            "recommendations, models, config.toml, timings.json, report.html",
            _plan_train,
            _train,
        ),
        Command(
            "segment",
            "a factor model -> k-means user segments, profiles, ablation, similar movies",
            ("spark", "ingest", "split", "train", "segment", "<the model's section>"),
            ("recspark segment --set segment.model=als --set segment.k=6",
             "recspark segment --set segment.run_id=20250101T000000Z"),
            "segment.output_dir/<run_id>/ (default out/segments/); the train run's "
            "report.html gains the segments",
            lambda cfg: [f"load {cfg.segment.model} (run {cfg.segment.run_id or 'latest'})",
                         "k-means (k by silhouette or fixed)", "profiles", "ablation",
                         "similar movies", "pictures", "report.html of the train run"],
            _segment,
        ),
        Command(
            "rescore",
            "a saved model -> scored pairs, top-N for all users, or for users with new ratings",
            ("spark", "data", "ingest", "train", "rescore"),
            ("recspark rescore --set rescore.mode=all",
             "recspark rescore --set rescore.mode=pairs --set rescore.input=pairs.csv"),
            "rescore.output_dir/score_date=YYYY-MM-DD/ (default out/rescore/); the train "
            "run's report.html lists the scoring dates",
            lambda cfg: [f"load {cfg.rescore.model} (run {cfg.rescore.run_id or 'latest'})",
                         "read current ratings, watermark", "fold in new users",
                         f"score ({cfg.rescore.mode})",
                         f"publish {cfg.rescore.output_dir}/score_date=...",
                         "report.html of the train run"],
            _rescore,
        ),
        Command(
            "tune",
            "grid or seeded random search of a model's settings by k-fold CV or validation",
            ("spark", "ingest", "split", "train", "recommend", "<the model's section>"),
            ("recspark tune --model als --grid 'als.rank=[10,20,30]' --grid 'als.reg_factors=[0.1,0.15]'",
             "recspark tune --model svd --grid 'svd.rank=[10,15,20]' --folds 5 --overlay conf/svd.toml"),
            "--output (default out/tune/<model>/): trials/ Parquet, trials.csv, one PNG per "
            "searched key, and the winning settings as a TOML overlay (--overlay)",
            lambda cfg: [f"read {cfg.ingest_dir()}/ratings", f"split ({cfg.split.kind}); the "
                         "test part is never read", "fit and score every trial",
                         "write trials, PNGs, overlay"],
            _tune,
            _tune_arguments,
        ),
        Command(
            "report",
            "(re)write the HTML report of a train run",
            ("spark", "ingest", "train", "segment", "rescore"),
            ("recspark report", "recspark report 20250101T000000Z --set train.output_dir=/tmp/runs"),
            "<train.output_dir>/<run_id>/report.html (one self-contained file)",
            lambda cfg: ["read the run's metrics, pictures, lists", "write report.html"],
            _report,
            _report_arguments,
        ),
        Command(
            "generate",
            "a synthetic MovieLens data set in the ml-32m CSV layout",
            ("spark", "generate"),
            ("recspark generate --set generate.output_dir=out/synthetic/ml-32m",
             "recspark generate --set generate.ratings=2000000 --set generate.users=12560"),
            "generate.output_dir: ratings.csv, movies.csv, tags.csv, links.csv, genome-scores.csv, "
            "genome-tags.csv, _truth/",
            lambda cfg: ["plan users and movies", "ratings chunks", "tags", "movies and links",
                         f"publish {cfg.generate.output_dir}/"],
            _generate,
        ),
    ]
}
