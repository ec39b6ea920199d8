"""Reproducible random streams.

Every random stream in dbdflow is a ``numpy.random.Generator`` built from one integer ``seed`` and
a tuple of stable keys (experiment name, split, ic, trajectory, rank, ...). Strings are mapped to
integers with a cryptographic hash, so the same keys give the same stream on every machine, for
every batch size, job order and MPI rank count.
"""

from __future__ import annotations

import hashlib

import numpy as np

Key = int | str


def key_to_int(key: Key) -> int:
    """Map one key to a non-negative integer (strings: first 8 bytes of their SHA-256)."""
    if isinstance(key, bool):
        raise TypeError("random-stream keys must be int or str, not bool")
    if isinstance(key, int | np.integer):
        if key < 0:
            raise ValueError(f"random-stream keys must be non-negative, got {key}")
        return int(key)
    if isinstance(key, str):
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    raise TypeError(f"random-stream keys must be int or str, got {type(key).__name__}")


def seed_sequence(seed: int, *keys: Key) -> np.random.SeedSequence:
    """``SeedSequence(seed, spawn_key=keys)``: the node of the seed tree named by ``keys``."""
    return np.random.SeedSequence(int(seed), spawn_key=tuple(key_to_int(k) for k in keys))


def generator(seed: int, *keys: Key) -> np.random.Generator:
    """A PCG64 generator for the stream named by ``keys`` under ``seed``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, *keys)))
