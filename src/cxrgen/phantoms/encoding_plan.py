"""Which image gets which storage encoding: a realistic archive mix that covers every case.

The first entries of a plan cover every configured transfer syntax, bit depth,
MONOCHROME1, windowed and rescaled headers (so even small sets exercise every
decoder path); the rest are drawn with the configured weights; the order is
then shuffled.
"""

from __future__ import annotations

import numpy as np

from cxrgen.phantoms.dicom_writer import Encoding

RESCALES = ((1.0, -1024.0), (0.5, 0.0), (2.0, -100.0))


def plan_encodings(
    rng: np.random.Generator,
    n: int,
    syntaxes: tuple[str, ...],
    weights: tuple[float, ...],
    bits: tuple[int, ...],
    frac_monochrome1: float,
    frac_windowed: float,
    frac_rescaled: float,
    jpeg_quality: int,
) -> list[Encoding]:
    """``n`` encodings: coverage first, then random draws; shuffled."""
    lossless = [s for s in syntaxes if s != "jpeg_baseline"]

    def make(syntax: str, b: int, mono1: bool, windowed: bool, rescaled: bool) -> Encoding:
        if syntax == "jpeg_baseline":
            return Encoding(syntax, 8, jpeg_quality=jpeg_quality)
        rescale = RESCALES[int(rng.integers(len(RESCALES)))] if rescaled else None
        return Encoding(syntax, b, mono1, windowed, rescale, jpeg_quality)

    cover: list[Encoding] = []
    for i, s in enumerate(syntaxes):
        cover.append(make(s, bits[i % len(bits)], False, False, False))
    if lossless:
        for i, b in enumerate(bits):
            cover.append(make(lossless[i % len(lossless)], b, False, False, False))
        alt = lossless[1 % len(lossless)]
        if frac_monochrome1 > 0:
            cover.append(make(lossless[0], bits[-1], True, False, False))
            cover.append(make(alt, bits[0], True, False, False))
        if frac_windowed > 0:
            cover.append(make(alt, bits[-1], False, True, False))
        if frac_rescaled > 0:
            cover.append(make(lossless[-1], bits[len(bits) // 2], False, False, True))
        if frac_windowed > 0 and frac_rescaled > 0:
            cover.append(make(lossless[0], bits[len(bits) // 2], frac_monochrome1 > 0, True, True))
    plan = cover[:n]
    p = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    while len(plan) < n:
        s = syntaxes[int(rng.choice(len(syntaxes), p=p))]
        plan.append(
            make(
                s,
                int(rng.choice(bits)),
                bool(rng.random() < frac_monochrome1),
                bool(rng.random() < frac_windowed),
                bool(rng.random() < frac_rescaled),
            )
        )
    order = rng.permutation(n)
    return [plan[i] for i in order]
