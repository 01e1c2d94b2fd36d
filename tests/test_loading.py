"""training.imaging.loading: real DICOM samples, synthetic edge cases, find_images."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from PIL import Image

from tests.synthetic import chest_phantom, make_dicom, write_dicom, write_png, write_png_header_only
from training.common.errors import ImageRefused
from training.imaging.loading import (
    SUPPORTED_SUFFIXES,
    ImageMeta,
    LoadedImage,
    apply_window,
    find_images,
    header_refusal,
    load_image,
)

CHEST_FILES = {
    "cxr01": "cxr01_rsna_normal-2_jpegbaseline.dcm",
    "cxr03": "cxr03_rsna_viral-2_jpegbaseline.dcm",
    "cxr06": "cxr06_orthanc_monochrome1_jpegbaseline.dcm",
    "cxr07": "cxr07_nih_udacity_test1_nofinding.dcm",
    "cxr12": "cxr12_barre_CR-MONO1-10-chest_nometa.dcm",
    "cxr13": "cxr13_wg04_RG1_J2KI_mono1.dcm",
    "cxr15": "cxr15_dx_966fixed_j2kr_mono1.dcm",
}


def refused(path, **kw) -> ImageRefused:
    with pytest.raises(ImageRefused) as info:
        load_image(path, **kw)
    err = info.value
    assert isinstance(err.reason, str) and err.reason and "\n" not in err.reason
    assert str(err) == err.reason
    return err


def mediastinum_contrast(pixels: np.ndarray) -> float:
    """Mean of a central vertical strip minus the mean of two lateral (lung)
    strips, at mid height.  Positive for a correctly displayed frontal chest
    (white mediastinum, dark lungs); negative if the image were inverted."""
    h, w = pixels.shape
    r0, r1 = int(h * 0.4), int(h * 0.6)
    centre = pixels[r0:r1, int(w * 0.46): int(w * 0.54)].mean()
    left = pixels[r0:r1, int(w * 0.2): int(w * 0.3)].mean()
    right = pixels[r0:r1, int(w * 0.7): int(w * 0.8)].mean()
    return float(centre - (left + right) / 2)


def check_pixels(im: LoadedImage) -> None:
    px = im.pixels
    assert isinstance(px, np.ndarray) and px.dtype == np.float32 and px.ndim == 2
    assert px.flags.c_contiguous
    assert np.isfinite(px).all()
    assert float(px.min()) >= 0.0 and float(px.max()) <= 1.0
    assert im.meta.original_size == px.shape


# ----------------------------------------------------------------------------- real DICOM samples


@pytest.fixture(scope="module")
def index(dicom_dir) -> dict[str, dict[str, str]]:
    with open(dicom_dir / "INDEX.csv", newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def chest(dicom_dir) -> dict[str, LoadedImage]:
    """Each chest sample decoded once (the J2K files take a second)."""
    return {key: load_image(dicom_dir / name) for key, name in CHEST_FILES.items()}


@pytest.mark.parametrize("key", sorted(CHEST_FILES))
def test_chest_dicoms_decode(chest, index, key):
    im = chest[key]
    row = index[CHEST_FILES[key]]
    check_pixels(im)
    assert im.meta.kind == "dicom"
    assert im.meta.original_size == (int(row["rows"]), int(row["cols"]))
    assert im.meta.photometric == row["photometric"]
    assert im.meta.modality == row["modality"]
    assert im.meta.bits == int(row["bits_stored"])
    assert im.invert == (row["photometric"] == "MONOCHROME1")
    # raw: float32 after the modality LUT, same shape, not inverted, not windowed
    assert im.raw is not None and im.raw.dtype == np.float32 and im.raw.shape == im.pixels.shape
    # a frontal chest as a radiologist sees it: white mediastinum, dark lungs
    assert mediastinum_contrast(im.pixels) > 0.1
    # uses a real part of the dynamic range
    assert float(im.pixels.max()) - float(im.pixels.min()) > 0.5
    assert im.meta.window is not None and im.meta.window[1] > 0
    assert im.meta.window_source in ("VOI LUT", "file window", "auto (percentiles)", "none")
    uid = re.search(r"1\.2\.840\.10008\.[\d.]*\d", row["transfer_syntax"]).group(0)
    assert f"({uid})" in im.meta.transfer_syntax
    assert not any("header check overridden" in w for w in im.warnings)


def test_chest_dicom_specifics(chest):
    assert chest["cxr01"].warnings == []
    assert any("AP view" in w for w in chest["cxr03"].warnings)
    assert chest["cxr03"].meta.view == "AP"
    assert any("Body part not recorded" in w for w in chest["cxr06"].warnings)
    assert chest["cxr06"].meta.body_part is None
    # no File Meta: read with force=True, Implicit VR LE assumed and said so
    ts = chest["cxr12"].meta.transfer_syntax
    assert "1.2.840.10008.1.2)" in ts and "assumed" in ts
    assert "1.2.840.10008.1.2.4.91" in chest["cxr13"].meta.transfer_syntax
    assert "1.2.840.10008.1.2.4.90" in chest["cxr15"].meta.transfer_syntax
    # identifiers go to patient, descriptions to extra
    assert chest["cxr07"].meta.patient.get("PatientID")
    assert chest["cxr07"].meta.extra.get("StudyDescription") == "No Finding"
    assert "PatientID" not in chest["cxr07"].meta.extra


@pytest.mark.parametrize("key", ["cxr06", "cxr12", "cxr13", "cxr15"])
def test_file_window_reproducible_with_apply_window(chest, key):
    """The GUI's window/level redraws from raw: the loader's own window must
    give back exactly the pixels it returned."""
    im = chest[key]
    assert im.meta.window_source == "file window"
    c, w = im.meta.window
    again = apply_window(im.raw, c, w, im.invert)
    np.testing.assert_allclose(again, im.pixels, atol=1e-6)


def test_eight_bit_dicom_without_window_maps_like_png(chest):
    """8-bit data with no window: 0..255 -> 0..1 (the paper's /255), not stretched."""
    im = chest["cxr07"]
    assert im.meta.window == (127.5, 255.0) and im.meta.window_source == "none"
    np.testing.assert_allclose(im.pixels, im.raw / 255.0, atol=1e-6)


def test_ribcage_refused(dicom_dir):
    err = refused(dicom_dir / "cxr10_nih_udacity_test4_bodypart-RIBCAGE.dcm")
    assert err.code == "body_part" and "RIBCAGE" in err.reason
    assert "body part RIBCAGE, not a chest radiograph" in err.reason


def test_ct_header_refused_and_classify_anyway(dicom_dir):
    path = dicom_dir / "cxr11_nih_udacity_test5_modality-CT.dcm"
    err = refused(path)
    assert err.code == "modality" and "CT" in err.reason
    assert err.reason == "This DICOM is a CT image, not a chest radiograph (modality CT)."
    im = load_image(path, check_header=False)
    check_pixels(im)
    assert any("CT" in w for w in im.warnings)
    assert mediastinum_contrast(im.pixels) > 0.1


def test_other_samples_refused(dicom_dir):
    err = refused(dicom_dir / "other01_pydicom_CT_small.dcm")  # TIFF-like preamble, CT
    assert err.code == "modality" and "CT" in err.reason
    err = refused(dicom_dir / "other03_wg04_RG2_RLE_hip.dcm")
    assert err.code == "body_part" and "HIP" in err.reason
    err = refused(dicom_dir / "other04_fodicom_CR-ModalityLUT_teeth_jpegll.dcm")
    assert err.code == "body_part" and "TEETH" in err.reason


def test_missing_decoder_names_the_package(dicom_dir, monkeypatch):
    from pydicom.pixels.decoders.base import Decoder

    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    err = refused(dicom_dir / CHEST_FILES["cxr13"])
    assert err.code == "decoder"
    assert "1.2.840.10008.1.2.4.91" in err.reason and "pylibjpeg-openjpeg" in err.reason
    err = refused(dicom_dir / CHEST_FILES["cxr01"])
    assert err.code == "decoder" and "pylibjpeg-libjpeg" in err.reason


def test_real_png_from_dataset(cxr1000):
    path = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    im = load_image(path)
    check_pixels(im)
    assert im.pixels.shape == (299, 299)
    assert im.meta.kind == "png" and im.meta.bits == 8
    assert im.meta.window is None and im.meta.window_source == "none"
    assert im.raw is None and im.invert is False
    with Image.open(path) as ref:
        expected = np.asarray(ref.convert("L"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(im.pixels, expected, atol=1e-6)


# ----------------------------------------------------------------------------- synthetic: Pillow formats


@pytest.fixture()
def grey8() -> np.ndarray:
    return (chest_phantom(96, 80) * 255).round().astype(np.uint8)


def test_png_8bit_is_divide_by_255(tmp_path, grey8):
    im = load_image(write_png(tmp_path / "g.png", grey8))
    check_pixels(im)
    assert im.meta.bits == 8 and im.meta.original_size == (96, 80)
    np.testing.assert_array_equal(im.pixels, grey8.astype(np.float32) / np.float32(255))  # exactly /255
    assert im.warnings == []


def test_png_16bit_scaled_by_65535(tmp_path):
    arr = (chest_phantom(70, 90) * 65535).round().astype(np.uint16)
    arr[0, :4] = [0, 1000, 32768, 65535]
    im = load_image(write_png(tmp_path / "g16.png", arr))
    check_pixels(im)
    assert im.meta.bits == 16
    np.testing.assert_allclose(im.pixels, arr / 65535.0, atol=1e-6)
    assert im.pixels[0, 3] == 1.0 and im.pixels[0, 0] == 0.0


def test_png_rgba_drops_alpha(tmp_path, grey8):
    rgba = np.dstack([grey8, grey8, grey8, np.full_like(grey8, 255)])
    im = load_image(write_png(tmp_path / "opaque.png", rgba))
    np.testing.assert_allclose(im.pixels, grey8 / 255.0, atol=1e-5)
    assert im.warnings == []
    rgba[:10, :, 3] = 0  # transparent band: pixels kept, a warning given
    im = load_image(write_png(tmp_path / "transparent.png", rgba))
    np.testing.assert_allclose(im.pixels, grey8 / 255.0, atol=1e-5)
    assert any("transparen" in w for w in im.warnings)


def test_png_la_and_colour(tmp_path, grey8):
    la = np.dstack([grey8, np.full_like(grey8, 255)])
    np.testing.assert_allclose(load_image(write_png(tmp_path / "la.png", la)).pixels, grey8 / 255.0, atol=1e-6)
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 100
    rgb[32:, :, 1] = 150  # not one flat colour: a blank picture is refused (test_blank_png_is_refused)
    im = load_image(write_png(tmp_path / "rgb.png", rgb))
    assert np.allclose(im.pixels[:32], (0.299 * 200 + 0.114 * 100) / 255.0, atol=1e-5)
    assert np.allclose(im.pixels[32:], (0.299 * 200 + 0.587 * 150 + 0.114 * 100) / 255.0, atol=1e-5)
    assert any("Colour" in w for w in im.warnings)


def test_png_palette(tmp_path, grey8):
    p = Image.fromarray(grey8).convert("P")  # adaptive=False: web palette
    levels = np.array(p.getpalette()[: 256 * 3], dtype=np.float64).reshape(-1, 3)
    idx = np.asarray(p)
    expected = (levels[idx] @ np.array([0.299, 0.587, 0.114])) / 255.0
    p.save(tmp_path / "pal.png")
    im = load_image(tmp_path / "pal.png")
    assert im.meta.extra["Mode"] == "P"
    check_pixels(im)
    np.testing.assert_allclose(im.pixels, expected, atol=1e-5)


@pytest.mark.parametrize("fmt,suffix,kind", [("JPEG", ".jpg", "jpeg"), ("BMP", ".bmp", "bmp"), ("TIFF", ".tif", "tiff")])
def test_other_pillow_formats(tmp_path, grey8, fmt, suffix, kind):
    path = tmp_path / f"img{suffix}"
    Image.fromarray(grey8).save(path, format=fmt)
    im = load_image(path)
    check_pixels(im)
    assert im.meta.kind == kind
    tol = 0.05 if fmt == "JPEG" else 1e-6
    assert np.abs(im.pixels - grey8 / 255.0).mean() < tol


def test_16bit_tiff(tmp_path):
    arr = (chest_phantom(80, 80) * 65535).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.tiff")
    im = load_image(tmp_path / "g16.tiff")
    assert im.meta.bits == 16
    np.testing.assert_allclose(im.pixels, arr / 65535.0, atol=1e-6)


# ----------------------------------------------------------------------------- synthetic: refusals


def test_missing_and_folder_unreadable(tmp_path):
    assert refused(tmp_path / "nope.png").code == "unreadable"
    assert refused(tmp_path).code == "unreadable"


def test_empty_file(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    err = refused(tmp_path / "zero.png")
    assert err.code == "empty"


def test_truncated_png_and_jpeg(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    write_png(tmp_path / "full.png", noise)
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    err = refused(tmp_path / "cut.png")
    assert err.code == "corrupt"
    assert err.reason == "The image file is damaged or incomplete (truncated)."
    Image.fromarray(noise).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert refused(tmp_path / "cut.jpg").code == "corrupt"


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("patient,label\n1,COVID\n")
    err = refused(tmp_path / "notes.png")
    assert err.code == "not_image" and err.reason == "This file is not an image (it looks like text)."
    (tmp_path / "notes.dcm").write_text("just some text\n" * 20)
    assert refused(tmp_path / "notes.dcm").code == "not_image"
    (tmp_path / "junk.png").write_bytes(bytes(range(256)) * 8)
    assert refused(tmp_path / "junk.png").code == "not_image"
    Image.new("L", (80, 80)).save(tmp_path / "anim.gif")
    err = refused(tmp_path / "anim.gif")
    assert err.code == "not_image" and "GIF" in err.reason


def test_too_small(tmp_path):
    write_png(tmp_path / "dot.png", np.zeros((1, 1), np.uint8))
    err = refused(tmp_path / "dot.png")
    assert err.code == "too_small"
    assert err.reason == "The image is only 1 x 1 pixels; at least 64 x 64 is needed."
    write_png(tmp_path / "thin.png", np.zeros((63, 500), np.uint8))
    assert refused(tmp_path / "thin.png").code == "too_small"
    write_png(tmp_path / "ok.png", np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)))
    load_image(tmp_path / "ok.png")


def test_too_large_refused_before_decoding(tmp_path):
    # 400 MP: Pillow's own decompression-bomb error, mapped to too_large
    err = refused(write_png_header_only(tmp_path / "bomb.png", 20000, 20000))
    assert err.code == "too_large"
    # 72 MP: under Pillow's limit, refused by our 64 MP check from the header alone
    err = refused(write_png_header_only(tmp_path / "big.png", 9000, 8000))
    assert err.code == "too_large" and "72 megapixels" in err.reason
    # DICOM: Rows x Columns from the header, pixel data never decoded
    ds = make_dicom(rows_cols=(10000, 10000))
    assert refused(write_dicom(tmp_path / "big.dcm", ds)).code == "too_large"


def test_unexpected_error_becomes_corrupt(tmp_path, monkeypatch, grey8):
    import training.imaging.loading as loading

    def boom(*a, **k):
        raise KeyError("surprise")

    monkeypatch.setattr(loading, "_chroma", boom)
    err = refused(write_png(tmp_path / "g.png", grey8))
    assert err.code == "corrupt" and "KeyError" in err.reason


# ----------------------------------------------------------------------------- synthetic DICOM


@pytest.fixture()
def phantom16() -> np.ndarray:
    return (chest_phantom(96, 96) * 4000 + 100).round().astype(np.uint16)


def test_dicom_no_pixels(tmp_path):
    ds = make_dicom(None, modality="SR")
    err = refused(write_dicom(tmp_path / "sr.dcm", ds))
    assert err.code == "no_pixels" and "no pixel data" in err.reason


def test_dicom_multiframe(tmp_path, phantom16):
    ds = make_dicom(np.stack([phantom16] * 3))
    err = refused(write_dicom(tmp_path / "cine.dcm", ds))
    assert err.code == "multiframe" and "3 frames" in err.reason


def test_dicom_file_window_and_monochrome1(tmp_path, phantom16):
    m2 = load_image(write_dicom(tmp_path / "m2.dcm", make_dicom(phantom16, window=(2100, 3000))))
    assert m2.meta.window == (2100.0, 3000.0) and m2.meta.window_source == "file window"
    np.testing.assert_allclose(m2.pixels, np.clip((phantom16 - 600.0) / 3000.0, 0, 1), atol=1e-6)
    m1 = load_image(
        write_dicom(tmp_path / "m1.dcm", make_dicom(phantom16, window=(2100, 3000), photometric="MONOCHROME1"))
    )
    assert m1.invert is True and not m2.invert
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    np.testing.assert_array_equal(m1.raw, m2.raw)  # raw is never inverted
    assert mediastinum_contrast(m2.pixels) > 0.3 and mediastinum_contrast(m1.pixels) < -0.3


def test_dicom_window_fallbacks(tmp_path, phantom16):
    auto = load_image(write_dicom(tmp_path / "none.dcm", make_dicom(phantom16)))
    assert auto.meta.window_source == "auto (percentiles)"
    assert auto.warnings == []
    assert auto.pixels.min() == 0.0 and auto.pixels.max() == 1.0
    for name, window in [("far", (60000, 100)), ("zero", (2000, 0)), ("negative", (2000, -5))]:
        im = load_image(write_dicom(tmp_path / f"{name}.dcm", make_dicom(phantom16, window=window)))
        assert im.meta.window_source == "auto (percentiles)", name
        assert any("display window" in w for w in im.warnings), name
        np.testing.assert_allclose(im.pixels, auto.pixels, atol=1e-6)


def test_dicom_rescale_is_in_raw(tmp_path, phantom16):
    ds = make_dicom(phantom16, rescale=(2.0, -1000.0), window=(3200, 6000))
    im = load_image(write_dicom(tmp_path / "rescale.dcm", ds))
    np.testing.assert_allclose(im.raw, phantom16 * 2.0 - 1000.0)
    np.testing.assert_allclose(im.pixels, apply_window(im.raw, 3200, 6000, False), atol=1e-6)


def test_dicom_voi_lut_sequence(tmp_path, phantom16):
    lut = np.linspace(0, 4095, 4096).astype(np.uint16)[::-1].copy()  # a reversing LUT over 0..4095
    ds = make_dicom(phantom16, voi_lut=(100, lut), window=(2100, 3000))
    im = load_image(write_dicom(tmp_path / "voi.dcm", ds))
    assert im.meta.window_source == "VOI LUT"  # the LUT wins over the window
    expected = 1.0 - np.clip(phantom16.astype(np.float64) - 100, 0, 4095) / 4095.0
    np.testing.assert_allclose(im.pixels, expected, atol=1e-4)


def test_dicom_8bit_and_rgb(tmp_path, grey8):
    im = load_image(write_dicom(tmp_path / "g8.dcm", make_dicom(grey8)))
    assert im.meta.bits == 8 and im.meta.window_source == "none"
    np.testing.assert_allclose(im.pixels, grey8 / 255.0, atol=1e-6)
    rgb = np.dstack([grey8, grey8, grey8])
    im = load_image(write_dicom(tmp_path / "rgb.dcm", make_dicom(rgb)))
    check_pixels(im)
    np.testing.assert_allclose(im.pixels, grey8 / 255.0, atol=1e-5)
    assert any("Colour DICOM" in w for w in im.warnings)


def test_dicom_without_file_meta_or_suffix(tmp_path, phantom16):
    path = write_dicom(tmp_path / "IM0001", make_dicom(phantom16, window=(2100, 3000)), no_file_meta=True)
    assert path.read_bytes()[128:132] != b"DICM"
    im = load_image(path)
    assert "assumed" in im.meta.transfer_syntax
    assert im.meta.window_source == "file window"


def test_dicom_truncated(tmp_path, phantom16):
    path = write_dicom(tmp_path / "full.dcm", make_dicom(phantom16))
    data = path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 4000])
    assert refused(tmp_path / "cut.dcm").code == "corrupt"


@pytest.mark.parametrize(
    "kw,code,needle",
    [
        ({"modality": "MR"}, "modality", "MR"),
        ({"modality": "US"}, "modality", "ultrasound"),
        ({"body_part": "HIP"}, "body_part", "HIP"),
        ({"body_part": "RIBCAGE"}, "body_part", "RIBCAGE"),
        ({"body_part": None, "descriptions": {"StudyDescription": "KNEE 2 VIEWS"}}, "body_part", "KNEE"),
        ({"view": "LL"}, "view", "lateral"),
        ({"view": "LATERAL"}, "view", "lateral"),
        ({"view": None, "descriptions": {"SeriesDescription": "CHEST LAT"}}, "view", "lateral"),
    ],
)
def test_dicom_header_gates(tmp_path, phantom16, kw, code, needle):
    path = write_dicom(tmp_path / "gate.dcm", make_dicom(phantom16, **kw))
    err = refused(path)
    assert err.code == code and needle in err.reason
    im = load_image(path, check_header=False)  # "classify anyway"
    check_pixels(im)
    assert any(needle in w for w in im.warnings)
    # decoded once with the checks off, the strict refusal is still known (the app shows it over the image)
    again = header_refusal(im)
    assert (again.reason, again.code) == (err.reason, err.code)
    assert header_refusal(load_image(write_dicom(tmp_path / "ok.dcm", make_dicom(phantom16)), check_header=False)) is None


@pytest.mark.parametrize(
    "kw,warning",
    [
        ({"view": "AP"}, "AP view"),
        ({"body_part": None}, "Body part not recorded"),
        ({"body_part": "THORAX"}, None),
        ({"body_part": None, "descriptions": {"StudyDescription": "CHEST PA AND LAT"}, "view": None}, None),
        ({"body_part": None, "descriptions": {"StudyDescription": "Chest and abdomen"}}, None),
        ({"modality": None}, "Modality not recorded"),
        ({"modality": "OT"}, "Modality OT"),
        ({"modality": "CR"}, None),
    ],
)
def test_dicom_header_warnings(tmp_path, phantom16, kw, warning):
    im = load_image(write_dicom(tmp_path / "warn.dcm", make_dicom(phantom16, **kw)))
    if warning is None:
        assert im.warnings == []
    else:
        assert any(warning in w for w in im.warnings), im.warnings


def test_dicom_patient_and_extra(tmp_path, phantom16):
    ds = make_dicom(phantom16, descriptions={"StudyDescription": "CHEST PA", "Manufacturer": "ACME"})
    im = load_image(write_dicom(tmp_path / "p.dcm", ds))
    assert im.meta.patient["PatientID"] == "TEST-0001"
    assert im.meta.patient["PatientName"] == "Test^Patient"
    assert im.meta.patient["AccessionNumber"] == "ACC123"
    assert "InstitutionName" not in im.meta.patient  # only the ones present
    assert im.meta.extra["StudyDescription"] == "CHEST PA" and im.meta.extra["Manufacturer"] == "ACME"
    assert im.meta.extra["SOPClassUID"] == "Digital X-Ray Image Storage - For Presentation"
    assert isinstance(im.meta, ImageMeta)
    assert all(isinstance(v, str) for v in {**im.meta.patient, **im.meta.extra}.values())


# ----------------------------------------------------------------------------- apply_window


def test_apply_window():
    raw = np.array([[0.0, 50.0, 100.0, 150.0, 200.0]])
    out = apply_window(raw, 100, 100, False)
    assert out.dtype == np.float32 and out.shape == raw.shape
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]])
    np.testing.assert_allclose(apply_window(raw, 100, 100, True), [[1.0, 1.0, 0.5, 0.0, 0.0]])
    assert raw[0, 1] == 50.0  # input untouched
    with pytest.raises(ValueError):
        apply_window(raw, 100, 0, False)


# ----------------------------------------------------------------------------- find_images


def test_find_images(tmp_path, grey8, phantom16):
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".cache").mkdir()
    write_png(root / "b.png", grey8)
    write_png(root / "a.PNG", grey8)
    write_dicom(root / "sub" / "c.dcm", make_dicom(phantom16))
    write_dicom(root / "sub" / "IM0001", make_dicom(phantom16), no_file_meta=True)  # no suffix
    write_dicom(root / "sub" / "deeper" / "scan.ima", make_dicom(phantom16))  # odd suffix but DICM
    (root / "labels.csv").write_text("a,b\n")
    (root / "sub" / "readme.txt").write_text("hello")
    write_png(root / ".hidden.png", grey8)
    write_png(root / ".cache" / "x.png", grey8)
    write_dicom(root / "DICOMDIR", make_dicom(None))

    files, skipped = find_images([root])
    rel = [f.relative_to(root).as_posix() for f in files]
    assert rel == ["a.PNG", "b.png", "sub/IM0001", "sub/c.dcm", "sub/deeper/scan.ima"]
    reasons = {p.relative_to(root).as_posix(): why for p, why in skipped}
    assert reasons["labels.csv"] == "not an image file (.csv)"
    assert reasons["sub/readme.txt"] == "not an image file (.txt)"
    assert "DICOMDIR" in reasons
    assert not any(".hidden" in k or ".cache" in k for k in reasons)

    # explicit files are always kept (also broken / non-image / missing ones), folder expanded in place
    explicit = root / "labels.csv"
    missing = tmp_path / "gone.png"
    files, skipped = find_images([explicit, missing, root / "sub" / "deeper"])
    assert files == [explicit, missing, root / "sub" / "deeper" / "scan.ima"]
    assert skipped == []
    # a file reached twice is listed once; a single path is accepted too
    files, _ = find_images([root / "b.png", root])
    assert files.count(root / "b.png") == 1
    assert find_images(root / "b.png") == ([root / "b.png"], [])
    # and every kept file in the folder loads
    for f in find_images([root])[0]:
        check_pixels(load_image(f))


def test_supported_suffixes():
    assert SUPPORTED_SUFFIXES == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}


# --------------------------------------------------------------------------- decoded content (fault corpus d40-d57, p14)


def test_blank_png_is_refused(tmp_path):
    p = write_png(tmp_path / "black.png", np.zeros((300, 300), np.uint8))
    with pytest.raises(ImageRefused) as e:
        load_image(p)
    assert e.value.code == "blank" and "blank" in e.value.reason


@pytest.mark.parametrize("slope, code", [(0.0, "blank"), (float("nan"), "invalid_pixels"), (1e38, "invalid_pixels")])
def test_broken_rescale_is_refused(tmp_path, phantom16, slope, code):
    ds = make_dicom(phantom16, window=(2100, 3000))
    ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0
    p = write_dicom(tmp_path / "r.dcm", ds)
    with pytest.raises(ImageRefused) as e:
        load_image(p)
    assert e.value.code == code


def test_absurd_aspect_is_refused(tmp_path):
    strip = (np.random.default_rng(0).random((70, 900)) * 255).astype(np.uint8)
    with pytest.raises(ImageRefused) as e:
        load_image(write_png(tmp_path / "strip.png", strip))
    assert e.value.code == "aspect" and "900 x 70" in e.value.reason


def test_voi_lut_that_misses_the_data_falls_back_to_a_window(tmp_path, phantom16):
    ds = make_dicom(phantom16, voi_lut=(60000, np.linspace(0, 4095, 256).astype(np.uint16)))
    img = load_image(write_dicom(tmp_path / "voi.dcm", ds))
    assert np.ptp(img.pixels) > 0.5
    assert any("VOI LUT does not cover" in w for w in img.warnings)


def test_training_scan_skips_blank_images(tmp_path, cxr1000):
    from training.train.data import decode_all, scan_folders

    for cls in ("COVID", "Normal"):
        (tmp_path / cls).mkdir()
        for p in sorted((cxr1000 / cls).glob("*.png"))[:5]:
            (tmp_path / cls / p.name).write_bytes(p.read_bytes())
    write_png(tmp_path / "COVID" / "blank.png", np.full((300, 300), 128, np.uint8))
    scan = scan_folders([tmp_path])
    cache = decode_all(scan.items, 32)
    assert len(cache.labels) == 10
    assert any("blank" in why for _, why in cache.skipped)


def test_named_pipe_never_blocks(tmp_path):
    """A FIFO in a scanned folder (fault corpus gen_fs.sh folder_fifo_txt): skipped by the
    scan with a reason, refused by the loader without being opened."""
    import os

    folder = tmp_path / "scan"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    os.mkfifo(folder / "pipe.png")
    write_png(folder / "ok.png", (chest_phantom(96, 96) * 255).astype(np.uint8))
    files, skipped = find_images([folder])
    assert [f.name for f in files] == ["ok.png"]
    assert sorted((f.name, why) for f, why in skipped) == [("pipe", "not a regular file (named pipe)"),
                                                           ("pipe.png", "not a regular file (named pipe)")]
    with pytest.raises(ImageRefused) as e:
        load_image(folder / "pipe.png")
    assert e.value.code == "unreadable" and "named pipe" in e.value.reason
