"""Benchmark the preprocessing stage against a bare decode loop and a plain per-file loop.

Generates N synthetic grey DICOM files in a temporary folder, by default a
quarter each uncompressed 12-bit, RLE Lossless 12-bit, JPEG 2000 Lossless
12-bit and JPEG Baseline 8-bit (``--kinds``), sides drawn in [0.8, 1] x
--native (``--square``: every side --native), then times in one run:

(a) floor: ``pydicom.dcmread(f).pixel_array`` for every file,
(b) plain loop: dcmread, pixel_array, ``skimage.transform.resize`` to
    size x size (anti-aliased), ``np.stack``: what a notebook would do,
(c) ``cxrgen.data.preprocess.preprocess`` in this process with 1 worker and
    with --threads workers (process executor, and thread executor),
(d) the stage in a new process importing only what the Snakemake rule's
    script imports, and the command ``cxrgen preprocess --size S --threads T``
    (whose parser builds only that command: no torch): start-up
    included in both.

Prints images/s for each and the throughput ratios to the plain loop and to
the floor (above 1: faster than it); for the JPEG Baseline files the stage
decoded at a reduced DCT scale (:mod:`cxrgen.data.jpeg_draft`), the
difference of the stored images to the full decode + resize path in grey
levels of 255 (max and mean absolute), and the per-image cost of both paths.

    uv run --frozen python benchmarks/bench_preprocess.py --n 200 --size 64 --threads 2
    uv run --frozen python benchmarks/bench_preprocess.py --kinds jpeg --square \
        --native 1024 --size 256 --n 200 --threads 2      # the RSNA download's format
    uv run --frozen python benchmarks/bench_preprocess.py --rle --n 8 --native 1024 --repeat 3

``--rle`` only times pydicom's RLE Lossless decoder plugins (pure-Python
"pydicom" vs "pylibjpeg", i.e. pylibjpeg-rle) on pydicom's RLE test files and
on --n generated 12-bit RLE files of --native px, and checks they agree.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import subprocess
import sys
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

from cxrgen.data.dicom import decode_dicom
from cxrgen.data.geometry import SquareGeometry, quantize
from cxrgen.data.jpeg_draft import resize_reduced
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


def make_files(
    folder: Path,
    n: int,
    native: int,
    seed: int = 0,
    kinds: tuple[str, ...] = KINDS,
    square: bool = False,
) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        rows, cols = (int(v) for v in rng.integers(int(0.8 * native), native + 1, size=2))
        if square:
            rows = cols = native
        path = folder / f"img{i:05d}.dcm"
        synthetic_dicom(path, kinds[i % len(kinds)], rows, cols, rng)
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


def cli_command() -> list[str]:
    """The ``cxrgen`` console script beside this interpreter (else ``python -m cxrgen.cli``)."""
    script = Path(sys.executable).with_name("cxrgen")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cxrgen.cli"]


def run_cli(src: Path, out: Path, size: int, threads: int) -> None:
    """``cxrgen preprocess`` as a new process, its progress bar silenced."""
    command = [*cli_command(), "-q", "preprocess", "--input", str(src), "--output", str(out)]
    command += ["--size", str(size), "--threads", str(threads)]
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)


def run_stage_process(src: Path, out: Path, size: int, threads: int) -> None:
    """The stage in a new process that imports what the Snakemake rule's script imports."""
    code = (
        "import sys\n"
        "from cxrgen import logs\n"
        "from cxrgen.config import from_mapping\n"
        "from cxrgen.data.preprocess import PreprocessConfig, preprocess\n"
        "cfg = from_mapping(PreprocessConfig, {'size': int(sys.argv[3])}, 'preprocess')\n"
        "preprocess(sys.argv[1], sys.argv[2], cfg, int(sys.argv[4]), progress=False)\n"
    )
    command = [sys.executable, "-c", code, str(src), str(out), str(size), str(threads)]
    subprocess.run(command, check=True)


def cli_start_up() -> float:
    """Seconds of ``cxrgen preprocess --help``: the command's imports and parser, no work."""
    start = time.perf_counter()
    subprocess.run([*cli_command(), "preprocess", "--help"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def draft_difference(paths: list[Path], store: Path, size: int) -> tuple[int, float, float]:
    """(images, max, mean) |stored - full decode + resize| in grey levels of 255 for the
    JPEG Baseline files the stage decoded reduced (every file stored, in input order)."""
    images = np.load(store / "images.npy", mmap_mode="r")
    n, worst, total = 0, 0.0, 0.0
    for row, path in enumerate(paths):
        if decode_dicom(path, store_size=size).reduction == 1:
            continue
        full = decode_dicom(path)
        ref = quantize(SquareGeometry.for_shape(full.shape, size).apply(full.image), "uint16")
        diff = np.abs(images[row].astype(np.float64) - ref) * (255.0 / 65535.0)
        n, worst, total = n + 1, max(worst, float(diff.max())), total + float(diff.mean())
    return n, worst, total / max(n, 1)


def path_costs(paths: list[Path], size: int) -> tuple[float, float]:
    """Seconds per image of decode_dicom + resize: full frame, and the stage's (reduced) way."""
    start = time.perf_counter()
    for p in paths:
        dec = decode_dicom(p)
        SquareGeometry.for_shape(dec.shape, size).apply(dec.image)
    full = (time.perf_counter() - start) / len(paths)
    start = time.perf_counter()
    for p in paths:
        dec = decode_dicom(p, store_size=size)
        resize_reduced(dec.image, size, "pad", dec.reduction)  # as the stage
    return full, (time.perf_counter() - start) / len(paths)


def compare_rle_plugins(folder: Path, n: int, native: int, repeat: int) -> None:
    """Time pydicom's RLE decoder plugins on pydicom's RLE test files and ``n`` generated
    native x native 12-bit RLE files: "pydicom" (pure Python) vs "pylibjpeg" (pylibjpeg-rle)."""
    from pydicom.data import get_testdata_file
    from pydicom.pixels import get_decoder, pixel_array

    plugins = [
        p for p in ("pydicom", "pylibjpeg") if p in get_decoder(RLELossless).available_plugins
    ]
    root = Path(get_testdata_file("CT_small.dcm")).parent
    groups: dict[str, list[Path]] = {"pydicom's RLE test files": []}
    for path in sorted(root.rglob("*.dcm")):
        try:
            syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        except Exception:  # test files that do not parse are no RLE files
            continue
        if syntax == RLELossless:
            groups["pydicom's RLE test files"].append(path)
    groups[f"{n} generated {native} px 12-bit"] = make_files(
        folder, n, native, kinds=("rle",), square=True
    )
    print(f"RLE Lossless decoder plugins available: {plugins}")
    for name, paths in groups.items():
        sets = [pydicom.dcmread(p) for p in paths]
        times, arrays = {}, {}
        for plugin in plugins:
            arrays[plugin] = [pixel_array(ds, decoding_plugin=plugin) for ds in sets]
            times[plugin] = timed(
                lambda plugin=plugin, sets=sets: [
                    pixel_array(d, decoding_plugin=plugin) for d in sets
                ],
                repeat,
            )
        same = (
            all(np.array_equal(a, b) for a, b in zip(*arrays.values(), strict=True))
            if len(arrays) == 2
            else None
        )
        text = ", ".join(f"{k} {1e3 * v / len(sets):.2f} ms/file" for k, v in times.items())
        ratio = times["pydicom"] / times["pylibjpeg"] if len(times) == 2 else float("nan")
        print(f"{name} ({len(sets)}): {text}; ratio {ratio:.1f}x; identical arrays: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of DICOM files")
    parser.add_argument("--size", type=int, default=64, help="stored image side")
    parser.add_argument("--native", type=int, default=256, help="largest native side")
    parser.add_argument("--square", action="store_true", help="every image --native square")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated encodings from {KINDS}"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="workers")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    parser.add_argument(
        "--rle", action="store_true", help="only compare pydicom's RLE decoder plugins"
    )
    args = parser.parse_args()
    if args.rle:
        with tempfile.TemporaryDirectory(prefix="bench_rle_") as tmp:
            compare_rle_plugins(Path(tmp), args.n, args.native, args.repeat)
        return
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        parser.error(f"--kinds must name some of {KINDS}, got {args.kinds!r}")

    with tempfile.TemporaryDirectory(prefix="bench_preprocess_") as tmp:
        src = Path(tmp) / "dicom"
        src.mkdir()
        start = time.perf_counter()
        paths = make_files(src, args.n, args.native, kinds=kinds, square=args.square)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        sides = args.native if args.square else f"{int(0.8 * args.native)}-{args.native}"
        print(
            f"generated {args.n} files ({mb:.1f} MB, kinds {kinds}, sides {sides}) "
            f"in {time.perf_counter() - start:.1f} s"
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
        results[f"new process, stage imports, {args.threads} proc."] = timed(
            lambda: run_stage_process(src, Path(tmp) / "out_new", args.size, args.threads),
            args.repeat,
        )
        cli_out = Path(tmp) / "out_cli"
        results[f"cxrgen preprocess --threads {args.threads}"] = timed(
            lambda: run_cli(src, cli_out, args.size, args.threads), args.repeat
        )
        start_up = timed(cli_start_up, args.repeat)
        print(f"free-core check after: {parallel_capacity(args.threads):.2f}x")
        floor = results["floor: dcmread + pixel_array"]
        plain = results["plain loop: + resize + stack"]
        print(
            f"{args.n} images; the cxrgen preprocess row includes its start-up: "
            f"`cxrgen preprocess --help` takes {start_up:.1f} s"
        )
        print(f"{'run':40s} {'images/s':>9s} {'vs plain':>9s} {'vs floor':>9s}")
        for name, seconds in results.items():
            rate = args.n / seconds
            print(f"{name:40s} {rate:9.1f} {plain / seconds:9.2f} {floor / seconds:9.2f}")

        n_reduced, worst, mean = draft_difference(paths, cli_out, args.size)
        if n_reduced:
            print(
                f"reduced-DCT JPEG Baseline decodes: {n_reduced} of {args.n} images; stored vs "
                f"full decode + resize: max |diff| {worst:.2f}, mean |diff| {mean:.3f} grey "
                "levels of 255"
            )
            jpeg = [p for i, p in enumerate(paths) if kinds[i % len(kinds)] == "jpeg"]
            full, reduced = path_costs(jpeg[:50], args.size)
            print(
                f"decode + resize per JPEG Baseline image: full {1e3 * full:.1f} ms, "
                f"reduced {1e3 * reduced:.1f} ms ({full / reduced:.2f}x)"
            )
        else:
            print("no file qualified for the reduced-DCT JPEG Baseline decode")


if __name__ == "__main__":
    main()
