"""Cluster profiles on a hand-made assignment."""

from __future__ import annotations

import pandas as pd

from recspark.pipeline.movie_clusters import profiles


def test_profiles_count_genres_tags_and_pick_most_tagged_titles():
    clusters = pd.DataFrame(
        {
            "movie_id": [1, 2, 3, 4],
            "title": ["A (1990)", "B (1991)", "C (2000)", "D (2001)"],
            "genres": ["Horror|Sci-Fi", "Sci-Fi", "Comedy", "Comedy|Romance"],
            "segment": [0, 0, 1, 1],
        }
    )
    tags = pd.DataFrame({"movie_id": [2, 2, 1, 4], "tag": ["space", "Aliens", "Space", "funny"]})
    got = profiles(clusters, tags).set_index("segment")
    assert got.loc[0, "size"] == 2 and got.loc[0, "share"] == 0.5
    assert got.loc[0, "top_genres"] == "Sci-Fi 100%, Horror 50%"
    assert got.loc[0, "top_tags"].split(", ")[0] == "space"  # on both movies, case folded
    assert got.loc[0, "titles"] == "B (1991) | A (1990)"  # most tags first
    assert got.loc[1, "titles"] == "D (2001) | C (2000)"
