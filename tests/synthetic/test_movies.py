"""movies.csv and links.csv: MovieLens-style titles and genres, distinct links."""

from __future__ import annotations

import pandas as pd

from recspark.synthetic.movies import GENRE_WEIGHTS, NO_GENRES, movie_table
from recspark.synthetic.plan import plan_synthetic


def test_titles_and_genres_round_trip(small):
    out, cfg, _ = small
    plan = plan_synthetic(cfg.generate, seed=cfg.seed)
    expected = movie_table(plan, seed=cfg.seed).to_pandas()
    movies = pd.read_csv(out / "movies.csv")
    assert movies.title.tolist() == expected.title.tolist()  # quoting survives the CSV
    assert movies.title.str.contains(",").sum() > 10
    assert movies.title.str.contains('"').any()
    genres = {g for gs in movies.genres for g in gs.split("|")}
    assert genres <= set(GENRE_WEIGHTS) | {NO_GENRES}
    assert (movies.genres.str.split("|").map(sorted) == movies.genres.str.split("|")).all()
    lists = movies.genres[movies.genres != NO_GENRES].str.split("|")
    assert lists.map(len).between(1, 4).all() and (lists.map(len) == lists.map(set).map(len)).all()


def test_links_are_distinct_and_padded(small):
    out = small[0]
    movies = pd.read_csv(out / "movies.csv")
    links = pd.read_csv(out / "links.csv", dtype={"imdbId": str})
    assert links.movieId.tolist() == movies.movieId.tolist()
    assert links.imdbId.str.fullmatch(r"\d{7,}").all() and links.imdbId.is_unique
    assert links.imdbId.astype(int).is_monotonic_increasing
