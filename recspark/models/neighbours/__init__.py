"""Neighbourhood models: item- and user-based kNN with a baseline (:mod:`.knn`), EASE
(:mod:`.ease`), and the sparse matrix and column-block tasks they share (:mod:`.matrix`);
the similarity measures themselves are :mod:`recspark.similarity`."""
