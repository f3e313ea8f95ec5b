"""Frechet distances between image sets in two feature spaces.

- Inception (``fid``): pytorch-fid's InceptionV3 2048-d pool features; a grey image in [0, 1]
  is repeated to 3 channels and resized to 299 x 299 inside the network, as pytorch-fid does
  with its RGB-converted PNGs.
- Inception as StarGAN v2 measures it (``fid_stargan_v2``, the protocol of the Med-StyleGAN2
  paper's Table 1): torchvision's ImageNet ``inception_v3`` 2048-d pool features (``fc`` the
  identity); a grey image in [0, 1] is repeated to 3 channels, resized to 299 x 299
  (bilinear, antialiased like the PIL resize of StarGAN v2's eval loader) and normalised with
  the ImageNet mean / std before the network.
- Chest X-ray (``fid_cxr``): the penultimate features of the project's noise-aware classifier
  at t = 0 (the pooled activations fed to its linear head, read with a forward pre-hook on
  ``head``); images are resized to the classifier's size when they differ.

Statistics are pytorch-fid's (mean, ``np.cov(rowvar=False)``, as StarGAN v2's too) and the
distance is ``pytorch_fid.fid_score.calculate_frechet_distance`` for every feature space
(StarGAN v2's own formula is the same, without pytorch-fid's fallback for a singular product).
"""

from __future__ import annotations

import contextlib
import io as _io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cxrgen.data.store import unit_rows

log = logging.getLogger(__name__)

# The network (and protocol) named in the ``network`` column of the GAN metrics table.
PYTORCH_FID_NETWORK = "pytorch-fid InceptionV3 (TF FID weights)"
STARGAN_V2_NETWORK = "torchvision inception_v3 (ImageNet, StarGAN v2 protocol)"


@dataclass
class Stats:
    mu: np.ndarray
    sigma: np.ndarray
    n: int


def gaussian_stats(features: np.ndarray) -> Stats:
    """Mean and covariance of (n, d) features, as pytorch-fid computes them."""
    features = np.asarray(features, dtype=np.float64)
    return Stats(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def frechet_distance(a: Stats, b: Stats) -> float:
    """pytorch-fid's Frechet distance (its messages go to the log, not stdout)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    out = _io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    notes = [str(w.message) for w in caught if "disp" not in str(w.message)]
    notes += [out.getvalue().strip()] if out.getvalue().strip() else []
    for note in dict.fromkeys(notes):  # e.g. a singular covariance with few images
        log.info("pytorch-fid (n = %d / %d): %s", a.n, b.n, note)
    return float(value)


class InceptionFeatures:
    """``extractor(x)`` for x (B, 1, H, W) in [0, 1] -> (B, dims) features (2048: final pool)."""

    name = "fid"

    def __init__(self, inception: nn.Module, device: torch.device):
        self.net, self.device = inception.to(device).eval(), device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        x = x.to(self.device, torch.float32).expand(-1, 3, -1, -1)
        features = self.net(x)[0]
        if features.shape[-2:] != (1, 1):  # earlier blocks: pooled as pytorch-fid does
            features = F.adaptive_avg_pool2d(features, (1, 1))
        return features.flatten(1).double().cpu().numpy()


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_SIZE = 299
# Where each feature block of torchvision's Inception3 ends (the blocks of StarGAN v2's
# wrapper and of pytorch-fid's --dims); 2048 is the whole network with fc = identity.
TORCHVISION_BLOCK_ENDS = {64: "maxpool1", 192: "maxpool2", 768: "Mixed_6e"}


class ImageNetInceptionFeatures:
    """``extractor(x)`` for x (B, 1, H, W) in [0, 1] -> (B, dims) features of torchvision's
    ImageNet Inception (:func:`cxrgen.metrics.weights.build_torchvision_inception`): the
    2048-d final pool, or an earlier block (64 / 192 / 768, averaged over space)."""

    name = "fid_stargan_v2"

    def __init__(self, inception: nn.Module, device: torch.device, dims: int = 2048):
        if dims != 2048 and dims not in TORCHVISION_BLOCK_ENDS:
            raise ValueError(f"dims must be 2048 or one of {sorted(TORCHVISION_BLOCK_ENDS)}")
        net = inception
        if dims != 2048:
            layers = []
            for name, module in inception.named_children():
                layers.append(module)
                if name == TORCHVISION_BLOCK_ENDS[dims]:
                    break
            net = nn.Sequential(*layers)
        self.net, self.device, self.dims = net.to(device).eval(), device, dims
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) in [0, 1] -> (B, 3, 299, 299) ImageNet-normalised network input."""
        x = x.to(self.device, torch.float32).expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (INCEPTION_SIZE, INCEPTION_SIZE):
            size = (INCEPTION_SIZE, INCEPTION_SIZE)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        features = self.net(self.prepare(x))
        if features.ndim == 4:  # earlier blocks
            features = F.adaptive_avg_pool2d(features, (1, 1))
        return features.flatten(1).double().cpu().numpy()


class ClassifierFeatures:
    """``extractor(x)`` -> the classifier's penultimate features at timestep t (default 0)."""

    name = "fid_cxr"

    def __init__(self, classifier: nn.Module, device: torch.device, timestep: int = 0):
        self.net, self.device, self.timestep = classifier.to(device).eval(), device, timestep
        size = classifier.config["sample_size"]
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self._features: list[torch.Tensor] = []
        self.net.head.register_forward_pre_hook(lambda _, inputs: self._features.append(inputs[0]))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> np.ndarray:
        x = x.to(self.device, torch.float32)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        self._features.clear()
        self.net(x * 2 - 1, torch.full((len(x),), self.timestep, device=self.device))
        return self._features.pop().flatten(1).double().cpu().numpy()


def unit_batches(array: np.ndarray, rows: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    """(B, 1, H, W) float tensors in [0, 1] of ``array[rows]`` (uint8/uint16/float memmap)."""
    rows = np.asarray(rows)
    for start in range(0, len(rows), batch_size):
        yield torch.from_numpy(unit_rows(array, rows[start : start + batch_size]))[:, None]


def extract(
    extractor, array: np.ndarray, rows: np.ndarray, batch_size: int, desc: str, progress=True
) -> np.ndarray:
    """Features (n, d) of ``array[rows]``."""
    out = []
    with tqdm(total=len(rows), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for x in unit_batches(array, rows, batch_size):
            out.append(extractor(x))
            bar.update(len(x))
    return np.concatenate(out) if out else np.empty((0, 0))
