"""One root seed in the config; every random stage derives its own seed from it.

Deriving by name (not by call order) keeps a stage's randomness unchanged when other
stages are added or reordered.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(root: int, *names: str | int) -> int:
    """A 31-bit seed for the stage ``names`` under ``root`` (fits Spark's and NumPy's APIs)."""
    text = ":".join([str(root), *map(str, names)]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little") & 0x7FFFFFFF


def rng(root: int, *names: str | int) -> np.random.Generator:
    """A NumPy generator for the stage ``names`` under ``root``."""
    return np.random.default_rng(derive_seed(root, *names))
