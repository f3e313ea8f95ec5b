"""Fourier filters of images: ideal high-pass / low-pass with a radial cut-off.

The cut-off is a fraction of the Nyquist frequency (0.5 cycles per pixel), so the same number
means the same band at any image size. numpy's FFT does the work; the mask is the only thing
written here (scikit-image's ``butterworth`` is a smooth filter, the paper's Fig. 4 uses a
sharp band split).
"""

from __future__ import annotations

import numpy as np

from cxrgen.config import check


def radial_frequency(height: int, width: int) -> np.ndarray:
    """(H, W) radial frequency of each FFT bin as a fraction of Nyquist (0 at DC, 1 at the edge)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    return np.sqrt(fy**2 + fx**2) / 0.5


def _filter(images: np.ndarray, cutoff: float, keep_high: bool) -> np.ndarray:
    check(0 < cutoff < 1.5, f"cutoff must be a fraction of Nyquist in (0, 1.5), got {cutoff}")
    images = np.asarray(images, dtype=np.float32)
    radius = radial_frequency(*images.shape[-2:])
    mask = radius >= cutoff if keep_high else radius < cutoff
    spectrum = np.fft.fft2(images, axes=(-2, -1))
    return np.fft.ifft2(spectrum * mask, axes=(-2, -1)).real.astype(np.float32)


def highpass(images: np.ndarray, cutoff: float) -> np.ndarray:
    """Images (..., H, W) with every frequency below ``cutoff`` (fraction of Nyquist) removed."""
    return _filter(images, cutoff, keep_high=True)


def lowpass(images: np.ndarray, cutoff: float) -> np.ndarray:
    """Images (..., H, W) with every frequency at or above ``cutoff`` removed."""
    return _filter(images, cutoff, keep_high=False)
