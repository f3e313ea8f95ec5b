"""Seeds derived from (seed, purpose, step, position): every random draw is a pure function.

A training run never draws from a shared, advancing random stream. The epoch's data order,
each sample's augmentation, a step's timesteps / noise / label dropout and the dropout masks
of a forward pass each come from a generator seeded by :func:`derive_seed` from the run seed,
a purpose tag and the step (and sample position). Resuming therefore needs only the step
count, and the result does not depend on data-loader workers or the batch split across GPUs.
"""

from __future__ import annotations

import enum

import numpy as np
import torch


class Purpose(enum.IntEnum):
    """Tags that keep the random streams of different purposes independent."""

    ORDER = 1  # the data order of one epoch
    AUGMENT = 2  # the augmentation of one sample of one step
    STEP = 3  # timesteps, noise, label dropout of one step
    FORWARD = 4  # the global torch RNG during one step's forward pass (dropout)
    SAMPLE = 5  # initial noise of preview samples
    VALIDATE = 6  # timesteps and noise of validation


def derive_seed(seed: int, purpose: Purpose, *parts: int) -> int:
    """A 63-bit seed that is a pure function of its arguments (numpy's SeedSequence hashing)."""
    entropy = [int(seed), int(purpose), *(int(p) for p in parts)]
    if any(e < 0 for e in entropy):
        raise ValueError(f"seed parts must be non-negative, got {entropy}")
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def generator(seed: int, purpose: Purpose, *parts: int) -> torch.Generator:
    """A CPU torch generator seeded with :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, purpose, *parts))
