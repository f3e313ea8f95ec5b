"""Pretrained weights of the evaluation networks, located on disk and never downloaded.

- FID: pytorch-fid's InceptionV3 needs ``pt_inception-2015-12-05-6726825d.pth`` (the TF FID
  Inception ported to PyTorch), which pytorch-fid would fetch into the torch hub cache.
- FID as StarGAN v2 computes it (the Med-StyleGAN2 paper's protocol): torchvision's ImageNet
  ``inception_v3`` needs ``inception_v3_google-0cc3c7bd.pth``, the file of torchvision's own
  ``Inception_V3_Weights.IMAGENET1K_V1`` (hub cache).
- LPIPS (net='alex'): torchvision's ImageNet AlexNet ``alexnet-owt-7be5be79.pth`` (hub cache)
  and the linear calibration layers ``weights/v0.1/alex.pth`` shipped inside the lpips package.

Each file is looked up BEFORE a network is built: first in the extra folders given (config
``weights_dir``), then in ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``; TORCH_HOME
defaults to ~/.cache/torch). A missing file raises :class:`WeightsMissing` naming the file, the
folders searched and where to get it. The networks are then built through pytorch-fid's and
lpips' own constructors with their download hooks pointed at the located files, so nothing
ever reaches the network. ``random_init=True`` builds the same networks with seeded random
weights (tests, benchmarks, smoke runs): real code paths, meaningless numbers.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from cxrgen.errors import CxrgenError

log = logging.getLogger(__name__)

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + INCEPTION_FILE
)
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/" + ALEXNET_FILE
LPIPS_LINEAR = Path("weights") / "v0.1" / "alex.pth"


def _torchvision_inception_url() -> str:
    from torchvision.models import Inception_V3_Weights

    return Inception_V3_Weights.IMAGENET1K_V1.url


TV_INCEPTION_URL = _torchvision_inception_url()
TV_INCEPTION_FILE = TV_INCEPTION_URL.rsplit("/", 1)[-1]  # inception_v3_google-0cc3c7bd.pth


class WeightsMissing(CxrgenError):
    """A pretrained weight file is not on disk (and will not be downloaded)."""


def hub_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (where torch.hub and torchvision cache weights)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate(filename: str, url: str, extra_dirs: Sequence[str | Path] = ()) -> Path:
    """The path of ``filename`` in ``extra_dirs`` or the hub cache; WeightsMissing otherwise."""
    folders = [Path(d) for d in extra_dirs if str(d)] + [hub_checkpoints_dir()]
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    raise WeightsMissing(
        f"pretrained weights {filename} not found; looked in "
        f"{', '.join(str(f) for f in folders)}. Nothing is downloaded: copy {url} into "
        f"{hub_checkpoints_dir()} (or the folder of config weights_dir), or set "
        f"metrics_optional: true to report these metrics as unavailable"
    )


def lpips_linear_weights() -> Path:
    """The lpips package's own calibration file for net='alex'."""
    import lpips

    path = Path(lpips.__file__).parent / LPIPS_LINEAR
    if not path.is_file():
        raise WeightsMissing(
            f"LPIPS linear-layer weights {LPIPS_LINEAR.name} not found in {path.parent} (they "
            f"ship with the lpips package): reinstall lpips, or set metrics_optional: true"
        )
    return path


@contextlib.contextmanager
def _replaced(module, name: str, value) -> Iterator[None]:
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def build_inception(
    extra_dirs: Sequence[str | Path] = (), random_init: bool = False, seed: int = 0, dims=2048
) -> torch.nn.Module:
    """pytorch-fid's ``InceptionV3`` returning the block of ``dims`` features (2048 = the final
    average pool, the standard FID; 64 / 192 / 768 = earlier blocks, pytorch-fid's ``--dims``),
    input resized to 299 x 299 bilinearly and scaled from [0, 1] to [-1, 1]; eval mode."""
    from pytorch_fid import inception as pf

    block = pf.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    if random_init:
        built: list[torch.nn.Module] = []

        def capture(*args, **kwargs):
            net = original(*args, **kwargs)
            built.append(net)
            return net

        original = pf._inception_v3

        def load(url, **kwargs):  # the freshly built network's own weights, re-drawn He-normal
            for module in built[-1].modules():  # so activations keep their scale through depth
                if isinstance(module, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            return {k: v.clone() for k, v in built[-1].state_dict().items()}

        with _seeded(seed), _replaced(pf, "_inception_v3", capture):
            with _replaced(pf, "load_state_dict_from_url", load):
                net = pf.InceptionV3([block])
        log.warning("FID Inception built with RANDOM weights: values are not comparable")
        return net.eval()
    path = locate(INCEPTION_FILE, INCEPTION_URL, extra_dirs)

    def load_file(url, **kwargs):
        return torch.load(path, map_location="cpu", weights_only=True)

    with _replaced(pf, "load_state_dict_from_url", load_file):
        net = pf.InceptionV3([block])
    log.info("FID Inception weights from %s", path)
    return net.eval()


def build_torchvision_inception(
    extra_dirs: Sequence[str | Path] = (), random_init: bool = False, seed: int = 0
) -> torch.nn.Module:
    """torchvision's ImageNet ``inception_v3`` as StarGAN v2's ``metrics/fid.py`` uses it: ``fc``
    replaced by the identity (the output is the 2048-d average pool), no auxiliary head, and
    ``transform_input`` off (StarGAN v2 chains the network's blocks itself, so torchvision's
    re-scaling of ImageNet-normalised input never runs); eval mode. Input: (B, 3, 299, 299)
    ImageNet-normalised (see :class:`cxrgen.metrics.fid.ImageNetInceptionFeatures`)."""
    import torchvision

    def bare() -> torch.nn.Module:
        return torchvision.models.inception_v3(
            weights=None, aux_logits=True, transform_input=False, init_weights=False
        )

    if random_init:
        with _seeded(seed):
            net = bare()
            for module in net.modules():  # He-normal, as the pytorch-fid random path
                if isinstance(module, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        log.warning("torchvision Inception built with RANDOM weights: values are not comparable")
    else:
        path = locate(TV_INCEPTION_FILE, TV_INCEPTION_URL, extra_dirs)
        net = bare()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        log.info("torchvision Inception weights from %s", path)
    net.aux_logits, net.AuxLogits = False, None
    net.fc = torch.nn.Identity()
    return net.eval()


def build_lpips(
    extra_dirs: Sequence[str | Path] = (), random_init: bool = False, seed: int = 0
) -> torch.nn.Module:
    """``lpips.LPIPS(net='alex')`` (v0.1), eval mode; inputs in [-1, 1], 3 channels."""
    import lpips
    import torchvision

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(pretrained|weights).*")
        if random_init:
            with _seeded(seed):
                net = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
                for lin in net.lins:  # calibrated LPIPS weights are non-negative
                    lin.model[-1].weight.data.abs_()
            log.warning("LPIPS built with RANDOM weights: values are not comparable")
            return net.eval()
        alexnet_path = locate(ALEXNET_FILE, ALEXNET_URL, extra_dirs)
        linear_path = lpips_linear_weights()
        net = lpips.LPIPS(
            net="alex", pretrained=True, pnet_rand=True, model_path=str(linear_path), verbose=False
        )
    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(torch.load(alexnet_path, map_location="cpu", weights_only=True))
    for chunk in net.net.children():  # lpips' slices hold alexnet.features[i] under name "i"
        for index, layer in chunk.named_children():
            layer.load_state_dict(alexnet.features[int(index)].state_dict())
    log.info("LPIPS weights from %s and %s", alexnet_path, linear_path)
    return net.eval()
