"""DICOM decoding: pydicom's bundled test files, every transfer syntax, every rejection reason."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import pixel_array
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from cxrgen.data.dicom import Rejected, decode_dicom, dicom_image_id, has_dicom_magic
from cxrgen.data.geometry import SquareGeometry, quantize
from cxrgen.data.intensity import quantize_unit, to_unit_interval, unit_to_stored
from cxrgen.data.jpeg_draft import draft_factor, resize_reduced
from cxrgen.data.preprocess import PreprocessConfig, preprocess

TEST_FILES = Path(get_testdata_file("CT_small.dcm")).parent
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    *,
    bits_stored: int = 16,
    photometric: str = "MONOCHROME2",
    syntax: str = ExplicitVRLittleEndian,
    **tags,
) -> Path:
    """Write ``pixels`` (rows, cols) / (frames, rows, cols) / (rows, cols, 3) as a DICOM file."""
    pixels = np.ascontiguousarray(pixels)
    colour = photometric in ("RGB", "YBR_FULL")
    frames = pixels.shape[0] if pixels.ndim == 3 and not colour else 1
    rows, cols = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = tags.pop("PatientID", Path(path).stem)
    ds.Rows, ds.Columns = int(rows), int(cols)
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in tags.items():
        setattr(ds, key, value)
    pixels = pixels.astype(np.uint8 if bits_stored <= 8 else np.uint16)
    if syntax == JPEGBaseline8Bit:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([buf.getvalue()])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OB" if bits_stored <= 8 else "OW"
        if syntax != ExplicitVRLittleEndian:
            ds.compress(syntax, pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def smooth_image(rows: int = 48, cols: int = 40, seed: int = 0) -> np.ndarray:
    """A smooth [0, 1] test image with an off-centre bright disc."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    rng = np.random.default_rng(seed)
    img = 0.3 + 0.2 * np.sin(xx / 5.0 + seed) * np.cos(yy / 7.0)
    img[(yy - rows * 0.4) ** 2 + (xx - cols * 0.6) ** 2 < (min(rows, cols) / 5) ** 2] = 0.9
    return np.clip(img + 0.01 * rng.standard_normal(img.shape), 0, 1)


# ---------------------------------------------------------------------- pydicom's test files


@pytest.fixture(scope="module")
def test_files_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("pydicom_store")
    cfg = PreprocessConfig(size=32, allow_colour="luminance", input_format="dicom")
    result = preprocess(TEST_FILES, out, cfg, threads=2, progress=False)
    index = pd.read_parquet(out / "index.parquet")
    rejected = pd.read_parquet(out / "rejected.parquet")
    return result, out, index, rejected


def test_pydicom_test_files_stored_unless_a_legitimate_reason(test_files_store):
    result, out, index, rejected = test_files_store
    skipped = {".txt", ".json"}  # README.txt, test1.json, test_PN.json: documentation suffixes
    inputs = {
        p.relative_to(TEST_FILES).as_posix()
        for p in TEST_FILES.rglob("*")
        if p.is_file() and p.suffix not in skipped and not p.name.startswith(".")
    }
    assert set(index["file"]).isdisjoint(rejected["file"])
    assert set(index["file"]) | set(rejected["file"]) == inputs
    assert result.n_stored == len(index) and result.n_rejected == len(rejected)
    codes = dict(zip(rejected["file"], rejected["reason_code"], strict=True))
    assert set(codes.values()) <= {
        "not_dicom",
        "no_pixel_data",
        "truncated",
        "decode_error",
        "bad_header",
        "colour",
    }
    # streams the installed decoders cannot read (JPEG-lossy.dcm is a known non-conformant
    # stream only GDCM reads; the J2K file has a sequence delimiter inside its codestream)
    assert {f for f, c in codes.items() if c == "decode_error"} == {
        "JPEG-lossy.dcm",
        "JPEG2000-embedded-sequence-delimiter.dcm",
    }
    assert {f for f, c in codes.items() if c == "truncated"} == {"MR_truncated.dcm"}
    assert {f for f, c in codes.items() if c == "colour"} == {"examples_palette.dcm"}
    assert {f for f, c in codes.items() if c == "bad_header"} == {
        "badVR.dcm",
        "meta_missing_tsyntax.dcm",
        "nested_priv_SQ.dcm",
    }
    for f, c in codes.items():
        if c == "not_dicom":
            assert not has_dicom_magic(TEST_FILES / f)
        if c == "no_pixel_data":
            assert "PixelData" not in pydicom.dcmread(TEST_FILES / f)
    stored_syntaxes = set(index["transfer_syntax"])
    assert {
        "Explicit VR Little Endian",
        "Implicit VR Little Endian",
        "Explicit VR Big Endian",
        "Deflated Explicit VR Little Endian",
        "RLE Lossless",
        "JPEG Baseline (Process 1)",
        "JPEG Extended (Process 2 and 4)",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])",
        "JPEG 2000 Image Compression (Lossless Only)",
        "JPEG 2000 Image Compression",
        "JPEG-LS Lossless Image Compression",
        "JPEG-LS Lossy (Near-Lossless) Image Compression",
    } <= stored_syntaxes
    images = np.load(out / "images.npy")
    assert images.shape == (len(index), 32, 32) and images.dtype == np.uint16
    assert (index["row"] == np.arange(len(index))).all()
    assert index.loc[
        index.file == "JPGExtended.dcm", ["orig_rows", "orig_cols", "bits_stored"]
    ].values.tolist() == [[1024, 256, 12]]
    assert index.loc[index.file == "rtdose.dcm", "n_frames"].item() == 15
    assert set(index.loc[index.file.str.contains("CR"), "photometric"]) == {"MONOCHROME1"}


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",
        "MR_small_RLE.dcm",
        "JPGExtended.dcm",
        "JPEG2000.dcm",
        "MR_small_jp2klossless.dcm",
        "693_J2KI.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEGLSNearLossless_16.dcm",
        "liver_1frame.dcm",
        "rtdose.dcm",
        "dicomdirtests/77654033/CR1/6154",
    ],
)
def test_each_syntax_matches_pydicom_through_the_same_normalisation(test_files_store, name):
    _, out, index, _ = test_files_store
    ds = pydicom.dcmread(TEST_FILES / name)
    expected = to_unit_interval(ds, pixel_array(ds, index=0))
    dec = decode_dicom(TEST_FILES / name)
    assert dec.image.shape == (int(ds.Rows), int(ds.Columns))
    np.testing.assert_array_equal(dec.image, expected)
    assert 0.0 <= dec.image.min() and dec.image.max() <= 1.0
    row = index.loc[index.file == name].iloc[0]
    stored = np.load(out / "images.npy", mmap_mode="r")[row["row"]]
    geom = SquareGeometry.for_shape(expected.shape, 32, "pad")
    np.testing.assert_array_equal(stored, quantize(geom.apply(expected), "uint16"))
    assert row["transfer_syntax"] == ds.file_meta.TransferSyntaxUID.name


def test_lossless_syntaxes_of_one_image_decode_identically():
    ref = decode_dicom(TEST_FILES / "MR_small.dcm").image
    assert ref.shape == (64, 64) and ref.std() > 0.01
    for name in (
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_padded.dcm",
    ):
        np.testing.assert_array_equal(decode_dicom(TEST_FILES / name).image, ref, err_msg=name)


def test_colour_files_follow_allow_colour(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("SC_rgb_jpeg.dcm", "SC_rgb_rle.dcm", "CT_small.dcm"):
        shutil.copy(TEST_FILES / name, src / name)
    preprocess(src, tmp_path / "out", PreprocessConfig(size=16), progress=False)
    rejected = pd.read_parquet(tmp_path / "out" / "rejected.parquet")
    assert dict(zip(rejected.file, rejected.reason_code, strict=True)) == {
        "SC_rgb_jpeg.dcm": "colour",
        "SC_rgb_rle.dcm": "colour",
    }
    assert rejected.reason.str.contains("allow_colour: luminance").all()
    dec = decode_dicom(src / "SC_rgb_rle.dcm", allow_colour="luminance")
    rgb = pydicom.dcmread(src / "SC_rgb_rle.dcm").pixel_array.astype(np.float64)
    lum = rgb @ np.array([0.2125, 0.7154, 0.0721]) / 255.0
    np.testing.assert_allclose(dec.image, lum, atol=1e-6)


# ---------------------------------------------------------------------- synthetic files


def test_rejection_reasons_of_broken_files(tmp_path):
    img = unit_to_stored(smooth_image(), 12)
    good = write_dicom(tmp_path / "good.dcm", img, bits_stored=12)
    data = good.read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(data[: len(data) - 500])
    rle = write_dicom(tmp_path / "rle.dcm", img, bits_stored=12, syntax=RLELossless).read_bytes()
    (tmp_path / "truncated_rle.dcm").write_bytes(rle[: len(rle) - 300])
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(tmp_path / "no_pixels.dcm")
    (tmp_path / "junk.dcm").write_text("not a DICOM file\n" * 20)
    (tmp_path / "empty.dcm").write_bytes(b"")
    rgb = np.stack([img // 16, img // 32, img // 64], axis=-1).astype(np.uint8)
    write_dicom(tmp_path / "rgb.dcm", rgb, bits_stored=8, photometric="RGB")
    for name, uid in (("mpeg2", "1.2.840.10008.1.2.4.100"), ("private", "1.2.3.4.5.6.7")):
        ds = pydicom.dcmread(good)
        ds.file_meta.TransferSyntaxUID = uid
        ds.PixelData = encapsulate([b"\x00\x01" * 100])
        ds["PixelData"].VR = "OB"
        ds.save_as(tmp_path / f"{name}.dcm", implicit_vr=False, little_endian=True)
    write_dicom(tmp_path / "multi.dcm", np.stack([img, img[::-1]]), bits_stored=12)

    expected = {
        "truncated.dcm": "truncated",
        "truncated_rle.dcm": "truncated",
        "no_pixels.dcm": "no_pixel_data",
        "junk.dcm": "not_dicom",
        "empty.dcm": "not_dicom",
        "rgb.dcm": "colour",
        "mpeg2.dcm": "unsupported_transfer_syntax",
        "private.dcm": "unsupported_transfer_syntax",
    }
    for name, code in expected.items():
        with pytest.raises(Rejected) as info:
            decode_dicom(tmp_path / name)
        assert info.value.code == code, (name, info.value.message)
    assert "MPEG2" in str(rejection_message(tmp_path / "mpeg2.dcm"))
    with pytest.raises(Rejected, match="2 frames") as info:
        decode_dicom(tmp_path / "multi.dcm", multiframe="reject")
    assert info.value.code == "multiframe"
    first = decode_dicom(tmp_path / "multi.dcm")
    assert first.n_frames == 2
    np.testing.assert_array_equal(first.image, decode_dicom(good).image)


def rejection_message(path: Path) -> str:
    try:
        decode_dicom(path)
    except Rejected as exc:
        return exc.message
    raise AssertionError(f"{path} decoded")


def test_monochrome1_is_inverted_and_grey_rgb_is_grey(tmp_path):
    unit = smooth_image()
    m2 = write_dicom(tmp_path / "m2.dcm", unit_to_stored(unit, 12), bits_stored=12)
    m1 = write_dicom(
        tmp_path / "m1.dcm",
        unit_to_stored(unit, 12, monochrome1=True),
        bits_stored=12,
        photometric="MONOCHROME1",
    )
    a, b = decode_dicom(m2).image, decode_dicom(m1).image
    np.testing.assert_array_equal(a, b)  # the MONOCHROME1 file stores the inverted values
    np.testing.assert_allclose(a, quantize_unit(unit, 12), atol=1e-6)
    raw = pydicom.dcmread(m1).pixel_array
    np.testing.assert_allclose(b, 1.0 - raw / 4095.0, atol=1e-6)
    grey8 = unit_to_stored(unit, 8)
    rgb = write_dicom(
        tmp_path / "rgb.dcm", np.repeat(grey8[..., None], 3, -1), bits_stored=8, photometric="RGB"
    )
    np.testing.assert_array_equal(decode_dicom(rgb).image, quantize_unit(unit, 8))


def test_rescale_and_window_follow_intensity_module(tmp_path):
    stored = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))  # 8 x 64
    path = write_dicom(
        tmp_path / "ct.dcm",
        stored,
        bits_stored=12,
        RescaleSlope=2,
        RescaleIntercept=-1000,
        WindowCenter=400,
        WindowWidth=800,
    )
    dec = decode_dicom(path)
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(dec.image, to_unit_interval(ds, ds.pixel_array))
    hu = stored[0] * 2.0 - 1000.0  # modality LUT
    # window [0, 800] HU onto the nominal range of the rescaled 12-bit data
    lo, hi = -1000.0, 4095 * 2.0 - 1000.0
    windowed = np.clip((hu - 0.0) / 800.0, 0, 1) * (hi - lo) + lo
    np.testing.assert_allclose(dec.image[0], (windowed - lo) / (hi - lo), atol=2e-3)
    assert dec.image[0, 0] == 0.0 and dec.image[0, -1] == 1.0


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_bit_depths_map_to_the_same_unit_image(tmp_path, bits):
    unit = smooth_image(seed=3)
    path = write_dicom(tmp_path / f"b{bits}.dcm", unit_to_stored(unit, bits), bits_stored=bits)
    dec = decode_dicom(path)
    assert dec.bits_stored == bits
    np.testing.assert_allclose(dec.image, unit, atol=0.5 / (2**bits - 1) + 1e-6)


def test_compressed_syntaxes_round_trip(tmp_path):
    unit = smooth_image(seed=5)
    ref = quantize_unit(unit, 12)
    for syntax in (RLELossless, JPEG2000Lossless):
        path = write_dicom(
            tmp_path / f"{syntax.name[:4]}.dcm",
            unit_to_stored(unit, 12),
            bits_stored=12,
            syntax=syntax,
        )
        np.testing.assert_allclose(decode_dicom(path).image, ref, atol=1e-6)
    jpeg = write_dicom(
        tmp_path / "jpeg.dcm", unit_to_stored(unit, 8), bits_stored=8, syntax=JPEGBaseline8Bit
    )
    dec = decode_dicom(jpeg)
    assert dec.transfer_syntax == "JPEG Baseline (Process 1)"
    assert np.abs(dec.image - unit).mean() < 0.01  # lossy, quality 95


def test_image_id_keeps_uid_names():
    assert dicom_image_id("a/b/0004cfab-14fd.dcm") == "0004cfab-14fd"
    assert dicom_image_id("1.2.840.113619.2.55") == "1.2.840.113619.2.55"
    assert dicom_image_id("IM000001.DICOM") == "IM000001"


# ------------------------------------------------- JPEG Baseline decoded at a reduced DCT scale


def xray_like(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """:func:`smooth_image` (a hard-edged disc 0.6 above its surround) plus film-like noise."""
    rng = np.random.default_rng(seed)
    noisy = smooth_image(rows, cols, seed=seed) + 0.02 * rng.standard_normal((rows, cols))
    return np.clip(noisy, 0, 1)


def grey_levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| of two uint16 store images in grey levels of 255."""
    return np.abs(a.astype(np.float64) - b.astype(np.float64)) * (255.0 / 65535.0)


def full_path(path: Path, size: int, aspect: str = "pad") -> np.ndarray:
    """The stored image as the full decode + configured resize makes it."""
    dec = decode_dicom(path)
    return quantize(SquareGeometry.for_shape(dec.shape, size, aspect).apply(dec.image), "uint16")


def reduced_path(path: Path, size: int, aspect: str = "pad"):
    dec = decode_dicom(path, store_size=size, aspect=aspect)
    if dec.reduction == 1:
        image = SquareGeometry.for_shape(dec.shape, size, aspect).apply(dec.image)
    else:
        image = resize_reduced(dec.image, size, aspect, dec.reduction)
    return dec, quantize(image, "uint16")


def test_draft_factor_keeps_the_grid_exact_and_a_2x_resize():
    assert draft_factor(1024, 1024, 256, "pad") == 2  # RSNA -> 256: 512, resized 2x
    assert draft_factor(1024, 1024, 128, "pad") == 4
    assert draft_factor(1024, 1024, 64, "pad") == 8
    assert draft_factor(1024, 1024, 32, "pad") == 8  # libjpeg goes no further than 1/8
    assert draft_factor(1024, 1024, 512, "pad") == 1  # a 2x reduction is left to the resize
    assert draft_factor(1024, 1024, 300, "pad") == 1
    assert draft_factor(1024, 1000, 256, "pad") == 2  # pad offset 12 = 2 x 6
    # 1020 rows: 1/4 gives 255 rows, padded by 0 reduced rows where the native pad is 2
    assert draft_factor(1020, 1024, 128, "pad") == 2
    assert draft_factor(1024, 1280, 256, "crop") == 2  # crop offset 128 = 2 x 64
    assert draft_factor(1025, 1024, 64, "pad") == 1  # odd rows: no reduced grid fits


@pytest.mark.parametrize(
    ("shape", "size", "factor", "max_levels", "mean_levels"),
    [
        ((512, 512), 128, 2, 8.0, 0.5),
        ((512, 512), 64, 4, 5.0, 0.4),
        ((512, 512), 32, 8, 5.0, 0.5),
        ((512, 480), 128, 2, 8.0, 0.5),
        ((600, 512), 100, 2, 8.0, 0.5),
    ],
)
def test_reduced_jpeg_decode_matches_the_full_path(
    tmp_path, shape, size, factor, max_levels, mean_levels
):
    unit = xray_like(*shape, seed=1)
    path = write_dicom(
        tmp_path / "g.dcm", unit_to_stored(unit, 8), bits_stored=8, syntax=JPEGBaseline8Bit
    )
    dec, out = reduced_path(path, size)
    assert dec.reduction == factor and dec.shape == shape
    assert dec.image.shape == (shape[0] // factor, shape[1] // factor)
    ref = full_path(path, size)
    diff = grey_levels(out, ref)
    # worst at the disc's hard edge (a step of about 150 grey levels)
    assert diff.max() < max_levels and diff.mean() < mean_levels, (diff.max(), diff.mean())
    # the blur-matched sigma is what brings it there: skimage's own sigma for the
    # remaining factor blurs less than the full path (twice the mean difference at 1/4, 1/8)
    plain = SquareGeometry.for_shape(dec.image.shape, size).apply(dec.image)
    if factor >= 4:
        assert grey_levels(quantize(plain, "uint16"), ref).mean() > 2 * diff.mean()


def test_reduced_decode_applies_rescale_and_monochrome1(tmp_path):
    unit = xray_like(512, 512, seed=4)
    stored = unit_to_stored(unit, 8, monochrome1=True)
    path = write_dicom(
        tmp_path / "m1.dcm",
        stored,
        bits_stored=8,
        photometric="MONOCHROME1",
        syntax=JPEGBaseline8Bit,
        RescaleSlope=2,
        RescaleIntercept=-100,
    )
    dec, out = reduced_path(path, 64)
    assert dec.reduction == 4 and dec.photometric == "MONOCHROME1"
    ref = full_path(path, 64)
    diff = grey_levels(out, ref)
    assert diff.max() < 5.0 and diff.mean() < 0.4
    # bright = dense after the inversion: the presentation image comes back
    truth = quantize(SquareGeometry.for_shape(unit.shape, 64).apply(unit), "uint16")
    assert grey_levels(out, truth).mean() < 1.5


def test_reduced_decode_takes_frame_one(tmp_path):
    unit = xray_like(256, 256, seed=6)
    path = write_dicom(
        tmp_path / "f.dcm", unit_to_stored(unit, 8), bits_stored=8, syntax=JPEGBaseline8Bit
    )
    ds = pydicom.dcmread(path)
    first = next(generate_frames(ds.PixelData, number_of_frames=1))
    buf = io.BytesIO()
    Image.fromarray(unit_to_stored(unit[::-1], 8)).save(buf, format="JPEG", quality=95)
    ds.NumberOfFrames = 2
    ds.PixelData = encapsulate([first, buf.getvalue()])
    ds.save_as(path)
    dec, out = reduced_path(path, 32)
    assert dec.reduction == 4 and dec.n_frames == 2
    assert grey_levels(out, full_path(path, 32)).mean() < 0.4
    flipped = quantize(SquareGeometry.for_shape(unit.shape, 32).apply(unit[::-1]), "uint16")
    assert grey_levels(out, flipped).mean() > 5  # frame 2 differs


@pytest.mark.parametrize("case", ["windowed", "voi_lut", "too_large", "odd_rows", "12_bit"])
def test_other_jpeg_files_keep_the_full_decode(tmp_path, case):
    shape, size, tags = (512, 512), 64, {}
    if case == "windowed":  # the window clips: not exchangeable with the averaging
        tags = {"WindowCenter": 128, "WindowWidth": 100}
    if case == "too_large":
        size = 256  # 1/2 would leave the resize no reduction
    if case == "odd_rows":
        shape = (513, 512)
    path = write_dicom(
        tmp_path / "x.dcm",
        unit_to_stored(xray_like(*shape, seed=2), 8),
        bits_stored=8,
        syntax=JPEGBaseline8Bit,
        **tags,
    )
    if case == "voi_lut":
        ds = pydicom.dcmread(path)
        item = Dataset()
        item.LUTDescriptor = [256, 0, 8]
        item.add_new("LUTData", "US", list(range(255, -1, -1)))  # inverts
        ds.VOILUTSequence = [item]
        ds.save_as(path)
    if case == "12_bit":
        path = TEST_FILES / "JPGExtended.dcm"  # JPEG Extended, 12 bits, 1024 x 256
    dec = decode_dicom(path, store_size=size)
    assert dec.reduction == 1
    np.testing.assert_array_equal(dec.image, decode_dicom(path).image)


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg.dcm",  # JPEG Baseline, 3 samples (colour): pydicom's path
        "SC_jpeg_no_color_transform.dcm",
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "JPEG2000.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ],
)
def test_other_syntaxes_decode_as_before(name):
    before = decode_dicom(TEST_FILES / name, allow_colour="luminance")
    after = decode_dicom(TEST_FILES / name, allow_colour="luminance", store_size=8)
    assert after.reduction == 1
    np.testing.assert_array_equal(after.image, before.image)


def test_a_stream_pillow_refuses_goes_the_full_decode_way(tmp_path):
    unit = xray_like(256, 256, seed=3)
    path = write_dicom(
        tmp_path / "t.dcm", unit_to_stored(unit, 8), bits_stored=8, syntax=JPEGBaseline8Bit
    )
    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 2]])  # the JPEG stream ends half way
    ds.save_as(path)
    dec = decode_dicom(path, store_size=32)
    assert dec.reduction == 1  # Pillow refuses a truncated stream; pydicom's decoder fills it
    np.testing.assert_array_equal(dec.image, decode_dicom(path).image)
