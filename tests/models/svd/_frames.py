"""Ratings frames of dense test matrices, shared by the SVD tests."""

import numpy as np

from recspark.schema import MOVIE_ID, MOVIE_IDX, RATING, USER_ID, USER_IDX


def ratings_frame(spark, r, mask):
    """Rows for the observed entries of a dense matrix; ids differ from the indices."""
    us, ms = np.nonzero(mask)
    rows = [(1000 + 7 * int(u), 5000 + 3 * int(i), float(r[u, i]), int(u), int(i)) for u, i in zip(us, ms)]
    return spark.createDataFrame(rows, [USER_ID, MOVIE_ID, RATING, USER_IDX, MOVIE_IDX])
