"""Pretrained weights of the evaluation networks, located on disk; the pipeline downloads none.

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

Fetching is a separate, explicit step: ``cxrgen weights download [--dir D]`` puts the three
ImageNet files into the hub cache (or D) with torch.hub's own downloader, checking each file's
sha256 against the prefix in its name; ``cxrgen weights check [--dir D]`` lists what is present
where (:func:`download_weights`, :func:`check_weights`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


def search_folders(extra_dirs: Sequence[str | Path] = ()) -> list[Path]:
    """Where weight files are looked for, in order: ``extra_dirs``, then the hub cache."""
    return [Path(d) for d in extra_dirs if str(d)] + [hub_checkpoints_dir()]


def locate(filename: str, url: str, extra_dirs: Sequence[str | Path] = ()) -> Path:
    """The path of ``filename`` in ``extra_dirs`` or the hub cache; WeightsMissing otherwise."""
    folders = search_folders(extra_dirs)
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    raise WeightsMissing(
        f"pretrained weights {filename} not found; looked in "
        f"{', '.join(str(f) for f in folders)}. The pipeline downloads nothing: run `cxrgen "
        f"weights download` (or copy {url} into {hub_checkpoints_dir()} or the folder of "
        f"config weights_dir), or set metrics_optional: true to report these metrics as "
        f"unavailable"
    )


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weight file. ``hash_prefix`` is read from the name as torch.hub reads it
    (``torch.hub.HASH_REGEX``, the ``<name>-<sha256 prefix>.<ext>`` convention that
    ``load_state_dict_from_url(check_hash=True)`` compares): the file's sha256 must start with it.
    """

    key: str
    filename: str
    url: str
    used_by: str

    @property
    def hash_prefix(self) -> str:
        match = torch.hub.HASH_REGEX.search(self.filename)
        if match is None or not match.group(1):
            raise ValueError(f"{self.filename} carries no sha256 prefix in its name")
        return match.group(1)


# The hash each file is checked with (the sha256 of the whole file must start with):
# - pt_inception-2015-12-05-6726825d.pth: 6726825d. pytorch-fid loads FID_WEIGHTS_URL with
#   load_state_dict_from_url and check_hash off, so neither it nor torch checks this file; its
#   name follows torch.hub's convention, and HASH_REGEX reads 6726825d from it (not the dates);
#   published records of this 95,628,359-byte file give its sha256 as 6726825d0af5f729...
# - inception_v3_google-0cc3c7bd.pth: 0cc3c7bd; alexnet-owt-7be5be79.pth: 7be5be79 (torchvision's
#   published files, named by torch.hub's convention; torchvision loads them with check_hash off).
WEIGHT_FILES: tuple[WeightFile, ...] = (
    WeightFile("fid_inception", INCEPTION_FILE, INCEPTION_URL, "fid (pytorch-fid)"),
    WeightFile("tv_inception", TV_INCEPTION_FILE, TV_INCEPTION_URL, "fid_stargan_v2"),
    WeightFile("alexnet", ALEXNET_FILE, ALEXNET_URL, "lpips"),
)
HASH_OK, HASH_MISMATCH, MISSING = "present, hash ok", "present, hash MISMATCH", "missing"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class WeightCheck:
    """Where one weight file was looked for and what was found: ``path`` is the file found (the
    one the pipeline would load) or None; ``looked_at`` every path tried, in order."""

    weight: WeightFile
    status: str
    path: Path | None
    looked_at: tuple[Path, ...]
    sha256: str = ""

    @property
    def ok(self) -> bool:
        return self.status == HASH_OK

    def line(self) -> str:
        where = str(self.path) if self.path else "looked at " + ", ".join(map(str, self.looked_at))
        got = f" (sha256 {self.sha256[:16]}..., expected {self.weight.hash_prefix}...)"
        extra = got if self.status == HASH_MISMATCH else ""
        return f"{self.weight.filename} [{self.weight.used_by}]: {self.status}{extra}: {where}"


def check_weights(extra_dirs: Sequence[str | Path] = ()) -> list[WeightCheck]:
    """Each of :data:`WEIGHT_FILES` looked up as :func:`locate` does (``extra_dirs``, then the hub
    cache), and the sha256 of the file found compared with the prefix in its name."""
    folders = search_folders(extra_dirs)
    checks = []
    for weight in WEIGHT_FILES:
        looked_at = tuple(folder / weight.filename for folder in folders)
        path = next((p for p in looked_at if p.is_file()), None)
        if path is None:
            checks.append(WeightCheck(weight, MISSING, None, looked_at))
            continue
        digest = sha256_of(path)
        status = HASH_OK if digest.startswith(weight.hash_prefix) else HASH_MISMATCH
        checks.append(WeightCheck(weight, status, path, looked_at, digest))
    return checks


def download_weights(target_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Fetch every file of :data:`WEIGHT_FILES` not already in ``target_dir`` (default the hub
    cache) with a good hash, by ``torch.hub.download_url_to_file`` (temp file + rename, sha256
    checked against the name's prefix). Files that fail are named together in one CxrgenError
    (offline machines: copy them into the folder by hand). Returns the folder."""
    folder = Path(target_dir) if target_dir else hub_checkpoints_dir()
    folder.mkdir(parents=True, exist_ok=True)
    failed = []
    for weight in WEIGHT_FILES:
        dst = folder / weight.filename
        if dst.is_file() and sha256_of(dst).startswith(weight.hash_prefix):
            log.info("%s already in %s, hash ok", weight.filename, folder)
            continue
        log.info("downloading %s into %s", weight.url, folder)
        try:
            torch.hub.download_url_to_file(
                weight.url, str(dst), hash_prefix=weight.hash_prefix, progress=progress
            )
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            failed.append(f"{weight.url} ({type(exc).__name__}: {exc})")
        except RuntimeError as exc:  # torch.hub: sha256 does not start with the prefix
            failed.append(f"{weight.url} (downloaded, but {exc}; nothing was written)")
    if failed:
        raise CxrgenError(
            f"could not download {len(failed)} of {len(WEIGHT_FILES)} weight files into "
            f"{folder}: {'; '.join(failed)}. Without internet access, copy the files by hand "
            f"into {folder} (same names) and run `cxrgen weights check"
            + (f" --dir {folder}`" if target_dir else "`")
        )
    log.info("all %d weight files in %s", len(WEIGHT_FILES), folder)
    if target_dir:
        log.info("the pipeline looks there with the config key weights_dir: %s", folder)
    return folder


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
