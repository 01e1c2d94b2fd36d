"""Damaged DICOMs and hostile header text in plain words (issue 13, item 4).
The fault corpus' own d17 / d87 / d88 files are checked in test_fault_corpus.py;
here minimal versions are built in the test."""

from __future__ import annotations

import pytest

from tests.synthetic import chest_phantom, make_dicom, write_dicom
from training.common.errors import ImageRefused
from training.imaging.loading import load_image, shown

HOSTILE = 'KNEE "left"\nsecond line\r\n=HYPERLINK("http://evil")\t<b>bold</b>'


def _dicom(tmp_path, name="x.dcm", **kw):
    return write_dicom(tmp_path / name, make_dicom((chest_phantom(128, 128) * 4095).astype("uint16"),
                                                   bits_stored=12, **kw))


def test_a_description_with_quotes_and_newlines_is_quoted_on_one_line(tmp_path):
    path = _dicom(tmp_path, body_part=None, descriptions={"StudyDescription": HOSTILE})
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    reason = info.value.reason
    assert "\n" not in reason and "\r" not in reason and "\t" not in reason
    assert reason.startswith("The DICOM description mentions KNEE, not a chest radiograph: \u201c")
    assert 'KNEE "left" second line =HYPERLINK(' in reason
    assert reason.endswith("\u201d.")
    img = load_image(path, check_header=False)  # the metadata keeps the text, on one line
    assert img.meta.extra["StudyDescription"].startswith('KNEE "left" second line =HYPERLINK("http://evil")')
    assert "\n" not in img.meta.extra["StudyDescription"]
    assert any("header check overridden" in w and "\n" not in w for w in img.warnings)


@pytest.mark.parametrize("body_part, expected", [
    ("HIP\nRIGHT", "body part HIP RIGHT, not"),  # one line; still a plain code, so not quoted
    ('HIP "R"\n=1+1', 'body part \u201cHIP "R" =1+1\u201d, not'),
])
def test_a_body_part_with_a_newline_is_one_line(tmp_path, body_part, expected):
    path = _dicom(tmp_path, body_part=body_part)
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert expected in info.value.reason and "\n" not in info.value.reason


@pytest.mark.parametrize("modality, expected", [("ZZ\n", "modality ZZ,"), ("\u00e9<x>", "modality \u201c\u00c9<X>\u201d,")])
def test_an_unknown_modality_is_named_on_one_line(tmp_path, modality, expected):
    path = _dicom(tmp_path, modality=modality)
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert info.value.code == "modality"
    assert expected in info.value.reason and "\n" not in info.value.reason


def test_shown_bounds_and_neutralises_text():
    assert shown("a\x00b\nc") == "\u201ca b c\u201d"
    assert shown("\u201cquoted\u201d") == '\u201c"quoted"\u201d'
    long = shown("x" * 500, 20)
    assert len(long) == 22 and long.endswith("\u2026\u201d")


def test_a_file_holding_only_the_dicom_signature(tmp_path):
    path = tmp_path / "d88.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM")
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert info.value.code == "corrupt"
    assert "holds nothing after its DICOM signature" in info.value.reason
    assert "structured report" not in info.value.reason


def test_a_file_cut_inside_its_header(tmp_path):
    full = _dicom(tmp_path, "full.dcm").read_bytes()
    path = tmp_path / "d17.dcm"
    path.write_bytes(full[:300])
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert info.value.code == "corrupt"
    assert "cut short" in info.value.reason and "structured report" not in info.value.reason


def test_a_complete_file_without_an_image_still_says_so(tmp_path):
    ds = make_dicom(None, sop_class="1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    path = write_dicom(tmp_path / "sr.dcm", ds)
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert info.value.code == "no_pixels" and "structured report" in info.value.reason


def test_pixel_data_shorter_than_announced_is_described(tmp_path):
    ds = make_dicom((chest_phantom(128, 128) * 4095).astype("uint16"), bits_stored=12)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    path = write_dicom(tmp_path / "half.dcm", ds)
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert "holds 16,384 of the 32,768 bytes its header announces" in info.value.reason
    assert "ValueError" not in info.value.reason


def test_metadata_panel_shows_header_text_as_plain_text(qtbot):
    from types import SimpleNamespace

    from PySide6.QtCore import Qt

    from xray_gui.metadata_panel import MetadataPanel

    panel = MetadataPanel()
    qtbot.addWidget(panel)
    meta = SimpleNamespace(path="/x/<img src=x>.dcm", kind="dicom", modality="DX", body_part="<b>CHEST</b>",
                           view="PA", original_size=(10, 10), bits=12, photometric="MONOCHROME2",
                           transfer_syntax="x", window=None, window_source="none",
                           patient={"PatientName": "<h1>Big</h1>"})
    panel.set_meta(meta)
    assert panel.values["body_part"].text() == "<b>CHEST</b>"
    assert panel.values["body_part"].textFormat() == Qt.TextFormat.PlainText
    assert panel.file_label.textFormat() == Qt.TextFormat.PlainText
    assert panel.patient.textFormat() == Qt.TextFormat.PlainText
