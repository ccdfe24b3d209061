"""movies.csv and links.csv of the synthetic data set, built on the driver (one row per movie).

Titles follow MovieLens conventions: "Name (Year)", moved articles ("Name, The (Year)"),
foreign titles with an English alias, subtitles, sequels, a few quoted names and a few
without a year; release years 2024 − ⌊Exp(22)⌋, clipped to 1874..2023. Genres: 1 to 4 of
the MovieLens genres, drawn without repeats with probability ∝ their share of ml-32m's
movies, alphabetical and pipe-separated, or "(no genres listed)" for about 5%.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema

from recspark.schema import GENRES, IMDB_ID, LINKS_SCHEMA, MOVIE_ID, MOVIES_SCHEMA, TITLE, TMDB_ID
from recspark.seeds import rng

if TYPE_CHECKING:
    from recspark.synthetic.plan import SyntheticPlan

#: The MovieLens genre list (ml-32m), with roughly the share of movies carrying each genre.
GENRE_WEIGHTS: dict[str, float] = {
    "Drama": 0.40, "Comedy": 0.30, "Thriller": 0.13, "Romance": 0.12, "Action": 0.12,
    "Horror": 0.10, "Documentary": 0.09, "Crime": 0.09, "Adventure": 0.07, "Sci-Fi": 0.06,
    "Animation": 0.05, "Children": 0.05, "Mystery": 0.05, "Fantasy": 0.05, "War": 0.03,
    "Western": 0.02, "Musical": 0.02, "Film-Noir": 0.005, "IMAX": 0.005,
}  # fmt: skip
NO_GENRES = "(no genres listed)"

#: Title words (also the long tail of the tag vocabulary, see :mod:`recspark.synthetic.tags`).
ADJECTIVES = (
    "Dark Silent Last Lost Golden Broken Wild Little Secret Eternal Hidden Crimson Frozen "
    "Burning Lonely Electric Savage Sweet Bitter Midnight Final Red Blue Black White Iron "
    "Velvet Endless Forgotten Perfect Strange Quiet Dangerous Beautiful Invisible Distant "
    "American Great Big Young Holy Cold Hollow Northern Deadly Happy Naked Magnificent"
).split()
NOUNS = (
    "Night Road River City Heart Dream Summer Winter Game House Kingdom Shadow Storm Island "
    "Garden Mirror Stranger Journey Promise Empire Machine Planet Ghost Wolf Station Season "
    "Letter Circle Horizon Harbor Frontier Detective Family Wedding Escape Signal Voyage "
    "Legacy Rain Fire Sister Brother Hunter Mountain Desert Ocean Train Angel Soldier Queen"
).split()
#: Non-English titles (with the article MovieLens moves to the end) and accented letters.
_FOREIGN = (
    ("Cité des enfants perdus", "La"), ("Fabuleux destin", "Le"), ("Große Stille", "Die"),
    ("Niños del río", "Los"), ("Città aperta", "La"), ("Ville lumière", "La"),
    ("Kärlek och död", ""), ("Tōkyō monogatari", ""), ("Mädchen in Uniform", ""),
    ("Último tango", "El"), ("Sommarnattens leende", ""), ("Hôtel du Nord", ""),
)  # fmt: skip
#: Shares of the title forms, in the order :func:`_title` numbers them.
_TITLE_KIND_SHARES = [0.57, 0.12, 0.08, 0.05, 0.08, 0.04, 0.01, 0.05]
#: Shares of movies with 1, 2, 3 and 4 genres.
_GENRE_COUNT_SHARES = [0.45, 0.33, 0.16, 0.06]
_NO_GENRE_SHARE = 0.05


def movie_table(plan: SyntheticPlan, *, seed: int) -> pa.Table:
    """movies.csv content (movie_id, title, genres) for the plan's movies, in id order (see
    the module docstring). Seeded by ``rng(seed, "generate", "movie_text")``."""
    gen = rng(seed, "generate", "movie_text")
    titles = _titles(plan.movies, gen)
    genres = _genres(plan.movies, gen)
    return pa.table(
        {MOVIE_ID: pa.array(plan.movie_ids), TITLE: pa.array(titles), GENRES: pa.array(genres)},
        schema=to_arrow_schema(MOVIES_SCHEMA),
    )


def _titles(m: int, gen: np.random.Generator) -> list[str]:
    """``m`` MovieLens-style titles (the draws for all movies first, then one string each)."""
    year = np.clip(2024 - np.floor(gen.exponential(22.0, size=m)), 1874, 2023).astype(int)
    adj, noun = np.array(ADJECTIVES), np.array(NOUNS)
    a1, n1 = adj[gen.integers(adj.size, size=m)], noun[gen.integers(noun.size, size=m)]
    a2, n2 = adj[gen.integers(adj.size, size=m)], noun[gen.integers(noun.size, size=m)]
    foreign = gen.integers(len(_FOREIGN), size=m)
    kind = gen.choice(len(_TITLE_KIND_SHARES), size=m, p=_TITLE_KIND_SHARES)
    sequel = gen.integers(2, 5, size=m)
    # One string per movie on the driver: small, not per rating.
    return [
        _title(kind[j], f"{a1[j]} {n1[j]}", year[j], n1[j], a2[j], n2[j], foreign[j], sequel[j])
        for j in range(m)
    ]


def _title(kind: int, base: str, year: int, noun: str, adj2: str, noun2: str, foreign: int,
           sequel: int) -> str:
    """The title of form ``kind`` built from the drawn words."""
    if kind == 0:
        return f"{base} ({year})"
    if kind == 1:
        return f"{base}, The ({year})"
    if kind == 2:
        return f"{base}: {adj2} {noun2} ({year})"
    if kind == 3:
        return f"{base} {sequel} ({year})"
    if kind == 4:
        name, article = _FOREIGN[foreign]
        local = f"{name}, {article}" if article else name
        return f"{local} ({base}) ({year})"
    if kind == 5:
        return f"{noun}, {noun2} and Me ({year})"
    if kind == 6:
        return f'"{base}" {noun2} ({year})'
    return base


def _genres(m: int, gen: np.random.Generator) -> list[str]:
    """``m`` genre strings: 1-4 genres by Gumbel top-k on log shares (weighted, no repeats)."""
    names = np.array(sorted(GENRE_WEIGHTS))
    logw = np.log(np.array([GENRE_WEIGHTS[g] for g in names]))
    n_genres = gen.choice(len(_GENRE_COUNT_SHARES), size=m, p=_GENRE_COUNT_SHARES) + 1
    keys = logw + gen.gumbel(size=(m, names.size))
    threshold = -np.sort(-keys, axis=1)[np.arange(m), n_genres - 1]
    chosen = keys >= threshold[:, None]
    no_genre = gen.random(m) < _NO_GENRE_SHARE
    return [NO_GENRES if no_genre[j] else "|".join(names[chosen[j]]) for j in range(m)]


def link_table(plan: SyntheticPlan, *, seed: int) -> pa.Table:
    """links.csv content (movie_id, imdb_id, tmdb_id): distinct ids increasing with movie id;
    imdb ids zero-padded to 7 digits, about 0.1% of tmdb ids missing."""
    gen = rng(seed, "generate", "links")
    m = plan.movies
    imdb = np.sort(gen.choice(max(10 * m, 10_000_000), size=m, replace=False) + 1)
    tmdb = np.sort(gen.choice(max(10 * m, 1_300_000), size=m, replace=False) + 1)
    imdb_text = np.char.zfill(imdb.astype(str), 7)
    missing = gen.random(m) < 0.001
    return pa.table(
        {
            MOVIE_ID: pa.array(plan.movie_ids),
            IMDB_ID: pa.array(imdb_text.tolist(), type=pa.string()),
            TMDB_ID: pa.array(tmdb, mask=missing),
        },
        schema=to_arrow_schema(LINKS_SCHEMA),
    )
