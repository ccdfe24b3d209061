"""recspark: MovieLens ratings to predictions, recommendations, segments and metrics on Spark."""

__version__ = "0.1.0"
