"""Per-image ground truth archives (``ground_truth/{image_id}.npz``), byte-deterministic.

``numpy.savez_compressed`` stamps the current time into its zip entries; the
writer here uses a fixed timestamp so the same arrays give the same bytes.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from cxrgen import io as cio
from cxrgen.data.store import GROUND_TRUTH_ARRAYS

GROUND_TRUTH_KEYS = ("image", *GROUND_TRUTH_ARRAYS)
_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write a compressed .npz whose bytes depend only on ``arrays``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, mode="w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(
                member, np.ascontiguousarray(arrays[name]), allow_pickle=False
            )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue(), compresslevel=1)
    cio.write_bytes(path, buf.getvalue())


def write_ground_truth(
    path: str | os.PathLike,
    image: np.ndarray,
    healthy: np.ndarray,
    lesion: np.ndarray,
    lungs: np.ndarray,
) -> None:
    """Save one image's ground truth.

    ``image`` and ``healthy`` are float32 presentation images in [0, 1] exactly
    as the stored pixels normalise (for lossy files: before compression),
    ``lesion`` a uint8 0/1 mask and ``lungs`` a uint8 map (0 background,
    1 patient's right lung = image left, 2 patient's left lung).
    """
    write_npz(
        path,
        {
            "image": image.astype(np.float32),
            "healthy": healthy.astype(np.float32),
            "lesion": lesion.astype(np.uint8),
            "lungs": lungs.astype(np.uint8),
        },
    )


def read_ground_truth(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a ground-truth archive into a dict of arrays."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
