"""recspark: MovieLens ratings to predictions, recommendations, segments and metrics on Spark."""

from recspark.malloc import keep_freed_memory_in_tasks

__version__ = "0.1.0"

# A Python worker imports the package on its first recspark task: from then on it keeps the
# memory it frees (recspark.malloc). Drivers and notebooks are left as they are.
keep_freed_memory_in_tasks()
