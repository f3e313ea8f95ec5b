"""Training data: lazy split images, augmentation without flips, step-keyed deterministic order."""

import numpy as np
import pytest
import torch
from synthetic_store import CLASSES, make_store
from torch.utils.data import DataLoader

from cxrgen.data.store import load_split
from cxrgen.errors import DataError
from cxrgen.training.augment import Augmentation
from cxrgen.training.data import StepBatchSampler, XrayDataset
from cxrgen.training.loop import StepContext


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("data"), n=24, size=16, n_valid=8)


def left_heavy_image(size=32):
    img = torch.full((1, size, size), 0.2)
    img[:, 8:24, 3:12] = 0.9  # bright mass on the image's left side
    return img


def test_split_images_and_dataset_items(store):
    data = load_split(*store, "train")
    assert data.classes == tuple(CLASSES) and (data.height, data.width) == (16, 16)
    assert len(data) == 16 and set(data.labels) == {0, 1}  # excluded row (label -1) dropped
    image, label = XrayDataset(data)[3]
    assert image.shape == (1, 16, 16) and image.dtype == torch.float32
    assert -1 <= image.min() and image.max() <= 1 and label.dtype == torch.int64
    raw = np.load(store[0] / "images.npy")[data.rows[3]] / 65535
    assert np.allclose(image[0].numpy(), raw * 2 - 1, atol=1e-6)
    with pytest.raises(DataError, match="has no labelled images"):
        load_split(*store, "valid")


def test_zero_strength_augmentation_is_exact_identity():
    img = left_heavy_image()
    aug = Augmentation(0, 0, 0, 0, 0)
    params = aug.draw(torch.Generator().manual_seed(0))
    assert torch.equal(aug.apply(img, params), img)


def test_default_augmentation_never_flips_and_is_seeded(store):
    aug = Augmentation()
    img = left_heavy_image()
    half = img.shape[-1] // 2
    changed = 0
    for seed in range(200):
        params = aug.draw(torch.Generator().manual_seed(seed))
        out = aug.apply(img, params)
        assert out[..., :half].sum() > out[..., half:].sum()  # mass stays on the left
        changed += not torch.allclose(out, img)
        assert torch.equal(out, aug.apply(img, aug.draw(torch.Generator().manual_seed(seed))))
    assert changed == 200
    # the dataset's augmentation is a pure function of (seed, step, position)
    ds = XrayDataset(load_split(*store), seed=3, augmentation=aug)
    assert torch.equal(ds[(2, 7, 1)][0], ds[(2, 7, 1)][0])
    assert not torch.equal(ds[(2, 7, 1)][0], ds[(2, 8, 1)][0])
    assert not torch.equal(ds[(2, 7, 1)][0], ds[2][0])


def test_batch_order_depends_only_on_seed_and_step():
    labels = np.array([0] * 18 + [1] * 6)
    full = StepBatchSampler(labels, 8, seed=5, start_step=0, stop_step=12)
    batches = list(full)
    assert len(batches) == 12
    # resuming at step 7 yields exactly the remaining batches
    assert list(StepBatchSampler(labels, 8, 5, 7, 12)) == batches[7:]
    # every epoch visits every image once (24 images = 3 steps of 8)
    epoch = [k[0] for b in batches[:3] for k in b]
    assert sorted(epoch) == list(range(24))
    # two processes each get half of every global batch
    halves = [list(StepBatchSampler(labels, 8, 5, 0, 12, rank=r, world=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*halves, strict=True)] == batches
    # class-balanced draw
    balanced = StepBatchSampler(labels, 8, 5, 0, 300, balanced=True)
    drawn = labels[[k[0] for b in balanced for k in b]]
    assert abs(drawn.mean() - 0.5) < 0.05


def test_batches_do_not_depend_on_worker_count(store):
    data = load_split(*store)
    ds = XrayDataset(data, seed=1, augmentation=Augmentation())

    def batches(workers):
        sampler = StepBatchSampler(data.labels, 4, 1, 0, 3)
        return [b[0] for b in DataLoader(ds, batch_sampler=sampler, num_workers=workers)]

    for a, b in zip(batches(0), batches(2), strict=True):
        assert torch.equal(a, b)


def test_step_draws_do_not_depend_on_process_split():
    def ctx(local):
        return StepContext(4, torch.Generator().manual_seed(9), 8, local, torch.device("cpu"))

    whole = ctx(slice(0, 8))
    parts = [ctx(slice(0, 4)), ctx(slice(4, 8))]
    for draw in (lambda c: c.randint(1000), lambda c: c.randn(1, 4, 4), lambda c: c.rand()):
        assert torch.equal(draw(whole), torch.cat([draw(p) for p in parts]))
