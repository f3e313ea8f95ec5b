"""Where in frequency a counterfactual changes an image (the paper's Fig. 4).

``radial_power_spectrum`` is the radially averaged power spectrum of images (one curve, or
one per image); ``band_energy_table`` splits the energy of the originals, the counterfactuals
and their differences into bands of radial frequency. Frequencies are fractions of Nyquist
(:func:`cxrgen.metrics.fourier.radial_frequency`), and a band [low, high) holds exactly the
frequencies that ``lowpass(x, high) - lowpass(x, low)`` of :mod:`cxrgen.metrics.fourier`
keeps, so band energies add up to an image's mean squared value (Parseval). numpy's real FFT
does the transforms (half the spectrum, each column weighted by how often it occurs in the
full one: a real image's spectrum is conjugate-symmetric, and the complex FFT of the whole
spectrum cost about 20x more); the radial binning is written here because neither numpy, scipy
nor scikit-image has a radial average of a spectrum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxrgen.config import check
from cxrgen.errors import DataError
from cxrgen.metrics.fourier import radial_frequency

IMAGE_KINDS = ("original", "counterfactual", "difference")


def _power(images: np.ndarray) -> np.ndarray:
    """|FFT|^2 / (H W)^2 of (B, H, W) images on the real FFT's columns (B, H, W // 2 + 1), each
    column times the number of times it occurs in the full spectrum (columns 1 .. ceil(W/2) - 1
    stand for their conjugates too): sums to each image's mean squared value."""
    images = np.asarray(images, dtype=np.float64)
    height, width = images.shape[-2:]
    weights = np.full(width // 2 + 1, 2.0)
    weights[0] = 1.0
    if width % 2 == 0:
        weights[-1] = 1.0  # Nyquist column: its own conjugate
    spectrum = np.fft.rfft2(images, axes=(-2, -1))
    return (spectrum.real**2 + spectrum.imag**2) * (weights / float(height * width) ** 2)


def _half(radius: np.ndarray) -> np.ndarray:
    """The real FFT's columns of a full (H, W) grid of radial frequencies (a conjugate bin has
    the radius of its partner, so it lands in the same radial bin or band)."""
    return radius[:, : radius.shape[1] // 2 + 1]


def radial_power_spectrum(
    images: np.ndarray, n_bins: int | None = None, per_image: bool = False, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of (N, H, W) images, read ``chunk`` rows at a time.

    Bin k collects the FFT bins whose radial frequency r (fraction of Nyquist) rounds to
    k * step, so ``freqs[k] = k * step``; step = 2 / min(H, W) (one FFT bin of the shorter
    side, so a sinusoid of k cycles per image lands in bin k) or, given ``n_bins``, such that
    the bins span 0 to the corner frequency sqrt(2) evenly. Power is the mean of
    |FFT|^2 / (H W)^2 over a bin (NaN for a bin no frequency falls in). Returns ``freqs``
    (n_bins,) and the mean curve over images (n_bins,), or one per image (N, n_bins) when
    ``per_image``.
    """
    check(chunk >= 1, f"chunk must be >= 1, got {chunk}")
    if images.ndim != 3 or len(images) == 0:
        raise DataError(f"images must be a non-empty (N, H, W) array, got {images.shape}")
    height, width = images.shape[1:]
    full = radial_frequency(height, width)
    radius = full.ravel()
    if n_bins is None:
        step = 2.0 / min(height, width)
        n_bins = int(np.floor(radius.max() / step + 0.5)) + 1
    else:
        check(n_bins >= 2, f"n_bins must be >= 2, got {n_bins}")
        step = radius.max() / (n_bins - 1)

    def bins(r: np.ndarray) -> np.ndarray:
        return np.minimum(np.floor(r / step + 0.5).astype(np.int64), n_bins - 1)

    counts = np.bincount(bins(radius), minlength=n_bins).astype(np.float64)  # full spectrum
    index = bins(_half(full).ravel())
    curves = []
    for start in range(0, len(images), chunk):
        power = _power(images[start : start + chunk]).reshape(-1, index.size)
        b = len(power)
        # one bincount for the whole chunk: image j's bins are offset by j * n_bins
        flat = (index[None, :] + n_bins * np.arange(b)[:, None]).ravel()
        sums = np.bincount(flat, weights=power.ravel(), minlength=b * n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            curves.append(sums.reshape(b, n_bins) / counts)
    per = np.concatenate(curves)
    freqs = np.arange(n_bins) * step
    return freqs, per if per_image else per.mean(axis=0)


def band_energy_table(
    original: np.ndarray,
    counterfactual: np.ndarray,
    cutoffs: tuple[float, ...] = (0.1, 0.25, 0.5),
    labels: np.ndarray | None = None,
    chunk: int = 256,
) -> pd.DataFrame:
    """Mean energy per radial frequency band of originals, counterfactuals and differences.

    Bands are [0, c1), [c1, c2), ..., [ck, inf) for increasing ``cutoffs`` (fractions of
    Nyquist); the energy of a band is the mean squared value of the image filtered to it,
    averaged over images (the difference is original - counterfactual). Rows of class
    ``'all'`` and, given ``labels`` (one per image), one set per class: columns image_kind,
    class_name, band_low, band_high (inf for the last band), energy, n.
    """
    cutoffs = tuple(float(c) for c in cutoffs)
    check(len(cutoffs) >= 1, "cutoffs is empty")
    check(all(0 < c < 1.5 for c in cutoffs), f"cutoffs must be in (0, 1.5), got {cutoffs}")
    check(all(np.diff(cutoffs) > 0), f"cutoffs must increase, got {cutoffs}")
    check(chunk >= 1, f"chunk must be >= 1, got {chunk}")
    if original.ndim != 3 or original.shape != counterfactual.shape or len(original) == 0:
        raise DataError(
            f"original {original.shape} and counterfactual {counterfactual.shape} must be "
            "equal, non-empty (N, H, W) arrays"
        )
    n = len(original)
    classes = np.full(n, "all", dtype=object)
    if labels is not None:
        classes = np.asarray(labels).astype(str).astype(object)
        if len(classes) != n:
            raise DataError(f"{len(classes)} labels for {n} images")
    edges = (0.0, *cutoffs, np.inf)
    radius = _half(radial_frequency(*original.shape[1:])).ravel()
    band = np.searchsorted(np.asarray(cutoffs), radius, side="right")  # r < c1 -> band 0
    n_bands = len(edges) - 1
    energy = np.zeros((len(IMAGE_KINDS), n, n_bands))  # per kind, image and band
    for start in range(0, n, chunk):
        o = np.asarray(original[start : start + chunk], dtype=np.float64)
        c = np.asarray(counterfactual[start : start + chunk], dtype=np.float64)
        for k, images in enumerate((o, c, o - c)):
            power = _power(images).reshape(len(images), -1)
            for j in range(n_bands):
                energy[k, start : start + len(images), j] = power[:, band == j].sum(axis=1)
    groups = [("all", np.ones(n, dtype=bool))]
    if labels is not None:
        groups += [(name, classes == name) for name in sorted(set(classes))]
    records = []
    for kind, per_kind in zip(IMAGE_KINDS, energy, strict=True):
        for name, members in groups:
            means = per_kind[members].mean(axis=0)
            for j in range(n_bands):
                records.append(
                    dict(image_kind=kind, class_name=name, band_low=edges[j],
                         band_high=edges[j + 1], energy=float(means[j]), n=int(members.sum()))
                )  # fmt: skip
    return pd.DataFrame.from_records(records)
