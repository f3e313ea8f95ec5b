"""The training data: a split of the tensor store (:func:`cxrgen.data.store.load_split`), read
lazily, as step-keyed batches.

``images.npy`` is memory-mapped in each process on first use (never pickled into data-loader
workers); a sample is keyed by (index, step, position) so its augmentation is a pure function
of the run seed and the key. :class:`StepBatchSampler` yields the keys of every step from a
given start step: the data order of epoch e is a permutation seeded by (seed, e), so resuming
at step S only needs S.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from cxrgen.config import check
from cxrgen.data.store import SplitImages, unit_float
from cxrgen.training.augment import Augmentation
from cxrgen.training.seeding import Purpose, derive_seed, generator

SampleKey = tuple[int, int, int]  # (index in the split, step, position in the global batch)


def require_every_class(data: SplitImages, what: str = "training") -> None:
    """ConfigError naming the classes that have no image in ``data``."""
    counts = data.class_counts()
    empty = [c for c, n in zip(data.classes, counts, strict=True) if n == 0]
    check(
        not empty,
        f"class(es) {empty} have no {what} images; fix the split (split.classes / fractions) "
        "or the data so every class of classes.json has some",
    )


class XrayDataset(Dataset):
    """Items ``(image, label)``: image float32 (1, H, W) in [-1, 1], label int64.

    ``dataset[i]`` is split image i unaugmented; ``dataset[(i, step, position)]`` is image i
    augmented with parameters seeded by (seed, step, position). Where the split has per-pixel
    targets (``data.targets_path``) the label is image i's (H, W) target map, moved by the
    same geometric augmentation (nearest neighbour).
    """

    def __init__(self, data: SplitImages, seed: int = 0, augmentation: Augmentation | None = None):
        self.data = data
        self.seed = seed
        self.augmentation = augmentation
        self._images: np.ndarray | None = None
        self._targets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.data)

    def __getstate__(self):  # workers re-open the memory maps instead of copying them
        return {**self.__dict__, "_images": None, "_targets": None}

    def target(self, index: int) -> torch.Tensor:
        """The (H, W) int64 target map of split image ``index``."""
        if self._targets is None:
            self._targets = np.load(self.data.targets_path, mmap_mode="r")
        return torch.from_numpy(np.asarray(self._targets[index], dtype=np.int64))

    def unit_image(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (1, H, W) in [0, 1]."""
        if self._images is None:
            self._images = np.load(self.data.images_path, mmap_mode="r")
        return torch.from_numpy(unit_float(self._images[self.data.rows[index]]))[None]

    def __getitem__(self, key: int | SampleKey) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(key, tuple):
            index, step, position = key
        else:
            index, step, position = key, None, None
        image, params = self.unit_image(index), None
        if self.augmentation is not None and step is not None:
            params = self.augmentation.draw(generator(self.seed, Purpose.AUGMENT, step, position))
            image = self.augmentation.apply(image, params)
        label = torch.tensor(self.data.labels[index], dtype=torch.int64)
        if self.data.targets_path is not None:
            label = self.target(index)
            if params is not None:
                label = self.augmentation.apply_labels(label, params)
        return image * 2 - 1, label


class StepBatchSampler(Sampler[list[SampleKey]]):
    """Yields, for each step in [start_step, stop_step), this process's keys of that step.

    The global batch of step s is positions s*B ... s*B+B-1 of an endless stream made of
    epochs; epoch e is a permutation of the split seeded by (seed, e), or with ``balanced`` a
    class-balanced draw with replacement of len(split) indices. Process ``rank`` of ``world``
    gets the contiguous chunk rank*B/world ... (rank+1)*B/world of each global batch.
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        seed: int,
        start_step: int,
        stop_step: int,
        balanced: bool = False,
        rank: int = 0,
        world: int = 1,
    ):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by {world} processes")
        self.labels = np.asarray(labels)
        self.batch_size, self.seed, self.balanced = batch_size, seed, balanced
        self.start_step, self.stop_step = start_step, stop_step
        self.local = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
        self._epoch: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)

    def epoch_order(self, epoch: int) -> np.ndarray:
        if self._epoch is None or self._epoch[0] != epoch:
            g = generator(self.seed, Purpose.ORDER, epoch)
            n = len(self.labels)
            if self.balanced:
                counts = np.bincount(self.labels)
                weights = torch.from_numpy(1.0 / counts[self.labels])
                order = torch.multinomial(weights, n, replacement=True, generator=g)
            else:
                order = torch.randperm(n, generator=g)
            self._epoch = (epoch, order.numpy())
        return self._epoch[1]

    def global_indices(self, step: int) -> np.ndarray:
        """Split indices of the whole batch of ``step`` (all processes)."""
        n = len(self.labels)
        positions = step * self.batch_size + np.arange(self.batch_size)
        out = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(positions // n):
            here = positions // n == epoch
            out[here] = self.epoch_order(int(epoch))[positions[here] % n]
        return out

    def __iter__(self):
        for step in range(self.start_step, self.stop_step):
            indices = self.global_indices(step)
            positions = range(self.batch_size)[self.local]
            yield [(int(indices[p]), step, p) for p in positions]


def step_seed(seed: int, step: int) -> int:
    """Seed of the per-step generator (timesteps, noise, label dropout)."""
    return derive_seed(seed, Purpose.STEP, step)


class ReferenceBatchSampler(Sampler[list[SampleKey]]):
    """The keys of each step's sources, then ``n_ref`` x B reference keys.

    The reference domains are uniform over the classes and each reference image uniform within
    its domain (StarGAN v2 samples its reference loader class-balanced), drawn for the global
    batch from (seed, step) and sliced like the sources.
    """

    def __init__(self, base: StepBatchSampler, labels: np.ndarray, n_ref: int, seed: int):
        self.base, self.n_ref, self.seed = base, n_ref, seed
        self.members = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]

    def __len__(self) -> int:
        return len(self.base)

    def __iter__(self):
        b = self.base.batch_size
        for keys in self.base:
            step = keys[0][1]
            g = generator(self.seed, Purpose.STEP, step, 1)
            domains = torch.randint(0, len(self.members), (b,), generator=g).tolist()
            for r in range(self.n_ref):
                u = torch.rand(b, generator=g, dtype=torch.float64).tolist()
                for p in range(b)[self.base.local]:
                    pool = self.members[domains[p]]
                    keys.append((int(pool[int(u[p] * len(pool))]), step, b * (1 + r) + p))
            yield keys
