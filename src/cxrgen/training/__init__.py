"""Training machinery shared by every model: data, augmentation, checkpoints, the loop.

Every random quantity of a training run is a pure function of (seed, step, sample position)
(see :mod:`cxrgen.training.seeding`), so a run resumed from a checkpoint, or run with another
number of data-loader workers, ends with the same weights as an uninterrupted one.
"""
