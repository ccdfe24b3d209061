"""Synthetic MovieLens generator: exact shapes, MovieLens CSV layout, determinism, planted signal."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality

from recspark import cli
from recspark import synthetic as syn
from recspark.config import GenerateConfig, load_config
from recspark.errors import ConfigError
from recspark.schema import BIAS, FACTORS, MOVIE_ID, N_RATINGS, RATINGS_SCHEMA, SEGMENT, USER_ID

REPO = Path(__file__).resolve().parent.parent
SMALL = [
    "generate.users=300",
    "generate.movies=200",
    "generate.ratings=12000",
    "generate.tags=600",
    "generate.rank=4",
    "generate.partitions=2",
    "generate.chunk_ratings=3000",  # several chunks per partition
]
CSV_FILES = ("ratings.csv", "movies.csv", "tags.csv", "links.csv")
HALF_GRID = np.arange(1, 11) / 2.0


def _generate(spark, out: Path, *overrides: str):
    cfg = load_config([], SMALL + list(overrides))
    summary = syn.generate_movielens(spark, cfg=cfg, output=str(out))
    return cfg, summary


@pytest.fixture(scope="module")
def small(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "ml-small"
    cfg, summary = _generate(spark, out)
    return out, cfg, summary


@pytest.fixture(scope="module")
def segmented(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "ml-segments"
    cfg, _ = _generate(spark, out, "generate.segments=3")
    return out, cfg


def _ratings(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "ratings.csv")


# --------------------------------------------------------------------------- driver-side maths


def test_user_counts_are_exact_bounded_and_heavy_tailed():
    counts = syn.user_rating_counts(
        users=5000, total=5000 * 80, minimum=20, maximum=3000, exponent=1.2,
        rng=np.random.default_rng(1),
    )
    assert counts.sum() == 5000 * 80
    assert counts.min() >= 20 and counts.max() <= 3000
    assert counts.max() >= 20 * np.median(counts)  # heavy tail
    assert np.median(counts) < 80  # most users below the mean, as in MovieLens
    with pytest.raises(ConfigError, match="cannot give"):
        syn.user_rating_counts(users=10, total=10 * 19, minimum=20, maximum=50, exponent=1.2,
                               rng=np.random.default_rng(1))


def test_user_counts_all_at_the_cap():
    counts = syn.user_rating_counts(users=7, total=7 * 30, minimum=20, maximum=30, exponent=1.2,
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
        owner, item = syn.sample_distinct(counts=counts, probs=probs, exact_above=exact_above,
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
    owner, item = syn.sample_distinct(counts=counts, probs=probs, rng=np.random.default_rng(3),
                                      table=(np.array([1.0, 1e9]), np.array([1.0, 2.0])),
                                      exact_above=np.inf)
    _check_distinct(owner, item, counts)
    assert item[owner == 3].tolist() == list(range(50))


def test_round_rating_whole_and_half_stars():
    x = np.array([-1.0, 0.74, 0.76, 1.2, 3.24, 3.26, 3.74, 4.8, 7.0])
    assert syn.round_rating(x, np.ones(x.size, bool)).tolist() == [
        0.5, 0.5, 1.0, 1.0, 3.0, 3.5, 3.5, 5.0, 5.0]
    assert syn.round_rating(x, np.zeros(x.size, bool)).tolist() == [
        1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 4.0, 5.0, 5.0]


def test_movie_ids_increase_with_gaps():
    ids = syn.movie_ids(movies=20_000, span=3.34, rng=np.random.default_rng(0))
    gaps = np.diff(ids)
    assert (gaps >= 1).all()
    assert 3.0 * 20_000 < ids[-1] < 3.7 * 20_000
    assert np.mean(gaps[:1000] == 1) > 0.8 > np.mean(gaps[-1000:] == 1)  # dense early, sparse late


def test_impossible_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="generate.ratings"):
        syn.validate(GenerateConfig(users=10, movies=100, ratings=10 * 39))  # cap 38 per user
    with pytest.raises(ConfigError, match="generate.ratings"):
        syn.validate(GenerateConfig(users=10, movies=100, ratings=100))  # below 10·20
    with pytest.raises(ConfigError, match="max_user_share"):
        syn.validate(GenerateConfig(users=10, movies=40, ratings=300))  # cap 15 < 20


# --------------------------------------------------------------------------- generated files


def test_files_have_the_movielens_layout(small):
    out, _, summary = small
    assert summary.single_files
    heads = {name: (out / name).read_text(encoding="utf-8").split("\n", 1)[0] for name in CSV_FILES}
    assert heads == {
        "ratings.csv": "userId,movieId,rating,timestamp",
        "movies.csv": "movieId,title,genres",
        "tags.csv": "userId,movieId,tag,timestamp",
        "links.csv": "movieId,imdbId,tmdbId",
    }
    for name in CSV_FILES:  # header once, nothing else left in the folder
        assert (out / name).read_text(encoding="utf-8").count(heads[name]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["_truth", *sorted(CSV_FILES)]
    assert not list(out.parent.glob("*_staging-*"))


def test_ratings_shape_is_exact(small):
    out, cfg, summary = small
    r = _ratings(out)
    movies = pd.read_csv(out / "movies.csv")
    assert len(r) == 12_000 == summary.ratings
    assert sorted(r.userId.unique()) == list(range(1, 301))
    assert r.groupby("userId").size().min() >= cfg.generate.min_user_ratings
    assert not r.duplicated(["userId", "movieId"]).any()
    assert len(movies) == 200 and movies.movieId.is_unique
    assert movies.movieId.max() > 200  # ids have gaps, like MovieLens
    assert set(r.movieId) <= set(movies.movieId)
    # MovieLens order: by user, then movie.
    assert r.equals(r.sort_values(["userId", "movieId"], ignore_index=True))


def test_ratings_values_and_times(small):
    r = _ratings(small[0])
    assert set(r.rating.unique()) <= set(HALF_GRID)
    assert r.timestamp.between(syn.FIRST_TIMESTAMP, syn.LAST_TIMESTAMP).all()
    early = r[r.timestamp < syn.HALF_STARS_FROM]
    assert len(early) > 0 and (early.rating % 1 == 0).all()  # no half stars before 2003
    top2 = r.rating.value_counts().index[:2]
    assert set(top2) == {3.0, 4.0}
    assert 3.3 < r.rating.mean() < 3.8


def test_titles_genres_links_and_tags_round_trip(small):
    out, cfg, _ = small
    plan = syn.plan_synthetic(cfg.generate, seed=cfg.seed)
    expected = syn.movie_table(plan, seed=cfg.seed).to_pandas()
    movies = pd.read_csv(out / "movies.csv")
    assert movies.title.tolist() == expected.title.tolist()
    assert movies.title.str.contains(",").sum() > 10
    assert movies.title.str.contains('"').any()
    genres = {g for gs in movies.genres for g in gs.split("|")}
    assert genres <= set(syn.GENRE_WEIGHTS) | {syn.NO_GENRES}
    assert (movies.genres.str.split("|").map(sorted) == movies.genres.str.split("|")).all()

    links = pd.read_csv(out / "links.csv", dtype={"imdbId": str})
    assert links.movieId.tolist() == movies.movieId.tolist()
    assert links.imdbId.str.fullmatch(r"\d{7,}").all() and links.imdbId.is_unique

    tags = pd.read_csv(out / "tags.csv")
    assert 0.8 * 600 < len(tags) <= 600
    assert not tags.duplicated(["userId", "movieId", "tag"]).any()
    assert tags.userId.between(1, 300).all() and set(tags.movieId) <= set(movies.movieId)
    assert tags.tag.str.contains(",").any() or tags.tag.str.contains('"').any()


def test_ratings_frame_is_what_was_written(spark, small):
    out, cfg, _ = small
    plan = syn.plan_synthetic(cfg.generate, seed=cfg.seed)
    generated = syn.ratings_frame(spark, plan, seed=cfg.seed, partitions=3)
    assert generated.schema == RATINGS_SCHEMA
    written = spark.read.csv(str(out / "ratings.csv"), header=True, schema=RATINGS_SCHEMA)
    assert_df_equality(generated, written, ignore_nullable=True)


def test_write_csv_off_the_local_file_system_keeps_part_folders(spark, tmp_path, monkeypatch):
    monkeypatch.setattr(syn, "_local_path", lambda _spark, _path: None)
    df = spark.createDataFrame([(1, 'a, "b"'), (2, "c")], "movie_id long, title string").repartition(2)
    syn.write_csv(spark, df, folder=str(tmp_path), name="movies.csv", header=["movieId", "title"])
    assert (tmp_path / "movies.csv").is_dir()
    back = spark.read.csv(str(tmp_path / "movies.csv"), header=True, escape='"')
    assert back.columns == ["movieId", "title"]
    assert sorted(tuple(row) for row in back.collect()) == [("1", 'a, "b"'), ("2", "c")]


def test_popularity_and_activity_are_heavy_tailed(small):
    r = _ratings(small[0])
    per_movie = r.groupby("movieId").size().sort_values(ascending=False)
    top_share = per_movie.iloc[:20].sum() / len(r)  # top 10% of the 200 movies
    assert top_share > 0.3
    per_user = r.groupby("userId").size()
    assert per_user.max() >= 2 * per_user.median()


def test_planted_biases_show_in_the_ratings(small):
    out = small[0]
    r = _ratings(out)
    movies = pd.read_parquet(out / "_truth" / "movies")
    users = pd.read_parquet(out / "_truth" / "users")
    assert users[N_RATINGS].tolist() == r.groupby("userId").size().sort_index().tolist()
    assert users[SEGMENT].isna().all()

    stats = r.groupby("movieId").rating.agg(["mean", "size"])
    stats = stats[stats["size"] >= 30].join(movies.set_index(MOVIE_ID)[BIAS])
    assert len(stats) >= 30
    assert np.corrcoef(stats["mean"], stats[BIAS])[0, 1] > 0.8

    by_user = r.groupby("userId").rating.mean().to_frame("mean").join(users.set_index(USER_ID)[BIAS])
    assert np.corrcoef(by_user["mean"], by_user[BIAS])[0, 1] > 0.7


def _load_script():
    spec = importlib.util.spec_from_file_location("generate_synthetic", REPO / "scripts" / "generate_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Lent:
    """The test session lent to a job, which stops its session when done."""

    def __init__(self, session):
        self._session = session

    def __getattr__(self, name):
        return getattr(self._session, name)

    def stop(self) -> None:
        pass


def test_script_same_seed_identical_other_seed_differs(spark, small, tmp_path, monkeypatch):
    out, cfg, _ = small
    monkeypatch.setattr(cli, "build_session", lambda _cfg: _Lent(spark))
    script = _load_script()
    args = [a for s in SMALL for a in ("--set", s)]
    again = tmp_path / "again"
    assert script.main(args + ["--set", f"generate.output_dir={again}"]) == 0
    for name in CSV_FILES:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(again / "_truth" / "users"),
                                  pd.read_parquet(out / "_truth" / "users"))

    other = tmp_path / "other"
    assert script.main(args + ["--set", "seed=7", "--set", f"generate.output_dir={other}"]) == 0
    a, b = _ratings(out), _ratings(other)
    assert len(b) == len(a) == 12_000
    assert not a.equals(b)
    assert (other / "movies.csv").read_bytes() != (out / "movies.csv").read_bytes()

    bad = tmp_path / "bad"
    assert script.main(args + ["--set", "generate.ratings=10", "--set", f"generate.output_dir={bad}"]) == 2
    assert not bad.exists()


def test_segments_are_planted_and_visible(segmented):
    out, cfg = segmented
    users = pd.read_parquet(out / "_truth" / "users")
    params = json.loads((out / "_truth" / "params.json").read_text())
    k = 3
    sizes = users[SEGMENT].value_counts()
    assert sorted(sizes.index) == [0, 1, 2]
    assert sizes.min() >= len(users) / (2 * k)

    centres = np.array(params["segment_centres"])
    assert centres.shape == (k, cfg.generate.rank)
    factors = np.stack(users[FACTORS].to_numpy())
    spread = np.linalg.norm(factors - centres[users[SEGMENT].to_numpy()], axis=1).max()
    gaps = [np.linalg.norm(centres[i] - centres[j]) for i in range(k) for j in range(i + 1, k)]
    assert min(gaps) > 2 * spread  # well separated: every user nearest its own centre

    # The segments show in the ratings: on the movies nearly everyone rated, users' centred
    # ratings cluster back into the planted segments.
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    r = _ratings(out)
    common = r.movieId.value_counts().index[:25]
    m = r[r.movieId.isin(common)].pivot(index="userId", columns="movieId", values="rating")
    m = m.sub(m.mean(axis=1), axis=0)
    m = m.fillna(0.0)
    labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(m.to_numpy())
    truth = users.set_index(USER_ID).loc[m.index, SEGMENT].to_numpy()
    assert adjusted_rand_score(truth, labels) > 0.6
