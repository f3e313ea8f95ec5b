"""Benchmark the preprocessing stage against a bare decode loop and a plain per-file loop.

Generates N synthetic grey DICOM files (a quarter each: uncompressed 12-bit,
RLE Lossless 12-bit, JPEG 2000 Lossless 12-bit, JPEG Baseline 8-bit; sides
drawn in [0.8, 1] x --native) in a temporary folder, then times in one run:

(a) floor: ``pydicom.dcmread(f).pixel_array`` for every file,
(b) plain loop: dcmread, pixel_array, ``skimage.transform.resize`` to
    size x size (anti-aliased), ``np.stack``: what a notebook would do,
(c) ``cxrgen.data.preprocess.preprocess`` with 1 worker and with --threads
    workers (process executor, and thread executor for comparison).

Prints images/s for each and the throughput ratios to the plain loop and to
the floor (above 1: faster than it).

    uv run --frozen python benchmarks/bench_preprocess.py --n 200 --size 64 --threads 2
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from skimage.transform import resize

from cxrgen.data.preprocess import PreprocessConfig, preprocess

KINDS = ("explicit", "rle", "j2k", "jpeg")


def synthetic_dicom(path: Path, kind: str, rows: int, cols: int, rng: np.random.Generator) -> None:
    """One chest-X-ray-like grey DICOM (smooth anatomy + noise) in the given encoding."""
    yy, xx = np.mgrid[0:rows, 0:cols] / max(rows, cols)
    img = 0.25 + 0.35 * np.exp(-(((xx - 0.3) ** 2 + (yy - 0.5) ** 2) / 0.03))
    img += 0.35 * np.exp(-(((xx - 0.7) ** 2 + (yy - 0.5) ** 2) / 0.03))
    img += 0.03 * rng.standard_normal((rows, cols))
    bits = 8 if kind == "jpeg" else 12
    arr = np.rint(np.clip(img, 0, 1) * (2**bits - 1)).astype(np.uint8 if bits == 8 else np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = path.stem
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=92)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW"
        if kind == "rle":
            ds.compress(RLELossless, arr)
        elif kind == "j2k":
            ds.compress(JPEG2000Lossless, arr)
    ds.save_as(path, enforce_file_format=True)


def make_files(folder: Path, n: int, native: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        rows, cols = (int(v) for v in rng.integers(int(0.8 * native), native + 1, size=2))
        path = folder / f"img{i:05d}.dcm"
        synthetic_dicom(path, KINDS[i % len(KINDS)], rows, cols, rng)
        paths.append(path)
    return paths


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def floor_loop(paths: list[Path]) -> None:
    for p in paths:
        pydicom.dcmread(p).pixel_array  # noqa: B018 - decoding is the point


def plain_loop(paths: list[Path], size: int) -> np.ndarray:
    out = []
    for p in paths:
        arr = pydicom.dcmread(p).pixel_array.astype(np.float32)
        out.append(resize(arr, (size, size), anti_aliasing=True, preserve_range=True))
    return np.stack(out)


def _burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def parallel_capacity(workers: int, n: int = 3_000_000) -> float:
    """Speed-up of ``workers`` processes on pure-Python work (ideal: ``workers``).

    Tells whether the machine really had ``workers`` free cores during the run.
    """
    start = time.perf_counter()
    for _ in range(workers):
        _burn(n)
    serial = time.perf_counter() - start
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_burn, [n] * workers)
    return serial / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of DICOM files")
    parser.add_argument("--size", type=int, default=64, help="stored image side")
    parser.add_argument("--native", type=int, default=256, help="largest native side")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="workers")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
        src = Path(tmp) / "dicom"
        src.mkdir()
        start = time.perf_counter()
        paths = make_files(src, args.n, args.native)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"generated {args.n} files ({mb:.1f} MB, kinds {KINDS}, sides "
            f"{int(0.8 * args.native)}-{args.native}) in {time.perf_counter() - start:.1f} s"
        )
        print(f"cpus {os.cpu_count()}, stored size {args.size}, workers {args.threads}")
        capacity = parallel_capacity(args.threads)
        print(
            f"free-core check: {args.threads} processes run pure Python {capacity:.2f}x "
            f"as fast as 1 (ideal {args.threads}; less means other load on the machine)"
        )

        results: dict[str, float] = {}
        results["floor: dcmread + pixel_array"] = timed(lambda: floor_loop(paths), args.repeat)
        results["plain loop: + resize + stack"] = timed(
            lambda: plain_loop(paths, args.size), args.repeat
        )
        runs = [(1, "process"), (args.threads, "process"), (args.threads, "thread")]
        for threads, executor in runs:
            cfg = PreprocessConfig(size=args.size, executor=executor)
            out = Path(tmp) / f"out_{threads}_{executor}"
            results[f"stage: {threads} worker(s), {executor}"] = timed(
                lambda cfg=cfg, out=out, t=threads: preprocess(src, out, cfg, t, progress=False),
                args.repeat,
            )
        print(f"free-core check after: {parallel_capacity(args.threads):.2f}x")
        floor = results["floor: dcmread + pixel_array"]
        plain = results["plain loop: + resize + stack"]
        print(f"{'run':40s} {'images/s':>9s} {'vs plain':>9s} {'vs floor':>9s}")
        for name, seconds in results.items():
            rate = args.n / seconds
            print(f"{name:40s} {rate:9.1f} {plain / seconds:9.2f} {floor / seconds:9.2f}")


if __name__ == "__main__":
    main()
