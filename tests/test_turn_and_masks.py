"""Turning images (the viewer's Rotate / Flip and the orientation check share one
convention), EXIF orientation on load, the result's own frame, and
``xray-classify --lung-masks`` on real films."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
from PIL import Image

from training.imaging.loading import load_image
from training.imaging.turn import compose, turn_array, turn_markers, turned, user_turn_note
from training.inference.result import Prediction


def test_compose_matches_doing_both_turns():
    x = np.arange(12).reshape(3, 4)
    ops = [(k, m) for k in range(4) for m in (False, True)]
    for a, b in itertools.product(ops, repeat=2):
        assert np.array_equal(turn_array(turn_array(x, *a), *b), turn_array(x, *compose(a, b))), (a, b)


def test_markers_follow_a_turn():
    pa = {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    assert turn_markers(pa, (1, False)) == {"left": "H", "top": "L", "right": "F", "bottom": "R"}
    assert turn_markers(pa, (0, True)) == {"left": "L", "right": "R", "top": "H", "bottom": "F"}
    assert turn_markers(pa, (2, False)) == {"left": "L", "right": "R", "top": "F", "bottom": "H"}


def test_turned_image_keeps_dicom_values_and_records_the_turn(dicom_dir):
    img = load_image(dicom_dir / "cxr07_nih_udacity_test1_nofinding.dcm")
    t = turned(img, 3, True, note=user_turn_note(3, True), by_user=True)
    assert t.pixels.shape == img.pixels.shape[::-1] and t.raw.shape == img.raw.shape[::-1]
    assert np.array_equal(t.pixels, np.rot90(img.pixels[:, ::-1], 3))
    assert t.meta.turn == (3, True) and t.meta.user_turned and not img.meta.user_turned
    assert t.warnings[-1] == "The image was flipped left-right and rotated 90° to the right by the user before classification."


def test_exif_orientation_is_applied_and_said(tmp_path, cxr1000):
    src = np.asarray(Image.open(sorted((cxr1000 / "Normal").glob("*.png"))[0]).convert("L"))
    ex = Image.Exif()
    ex[0x0112] = 6
    Image.fromarray(src).save(tmp_path / "rot6.jpg", exif=ex.tobytes(), quality=95)
    img = load_image(tmp_path / "rot6.jpg")
    upright = np.rot90(src, -1) / 255.0  # EXIF 6: the stored picture is shown turned 90 degrees clockwise
    assert img.pixels.shape == upright.shape
    assert np.abs(img.pixels - upright).mean() < 0.02  # JPEG
    assert any("EXIF orientation tag (6)" in w for w in img.warnings)
    ex[0x0112] = 99  # invalid: ignored, no note
    Image.fromarray(src).save(tmp_path / "bad.jpg", exif=ex.tobytes())
    assert load_image(tmp_path / "bad.jpg").warnings == []


def test_model_frame_and_mask_as_loaded():
    px = np.random.default_rng(0).random((30, 50), dtype=np.float32)
    pred = Prediction(path=None, status="ok", rotation=1, inverted=True)
    assert np.allclose(pred.model_frame(px), 1.0 - np.rot90(px, 1))
    mask = np.zeros((256, 256), bool)
    mask[:, :64] = True  # the left quarter of the turned frame ...
    pred.lung_mask = mask
    back = pred.lung_mask_as_loaded((30, 50))
    assert back.shape == (30, 50)
    # ... is the top quarter of the file's frame (a counter-clockwise turn takes the top row to the left)
    assert back[:6, :].all() and not back[-20:, :].any()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    from training.model.modelfile import ModelInfo, save_model
    from training.model.networks import build_model

    torch.manual_seed(0)
    return save_model(build_model("resnet50", "scratch", input_size=64),
                      ModelInfo(arch="resnet50", input_size=64, threshold=0.5),
                      tmp_path_factory.mktemp("m") / "tiny.safetensors")


def test_cli_writes_lung_masks_in_the_files_frame(tmp_path, cxr1000, tiny_model, capsys):
    from training.cli.classify import main

    films = sorted((cxr1000 / "COVID").glob("*.png"))[:2]
    folder = tmp_path / "in"
    (folder / "b").mkdir(parents=True)
    Image.open(films[0]).save(folder / "a.png")
    Image.open(films[1]).save(folder / "b" / "a.png")  # the same stem twice
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(folder / "flat.png")  # refused by the gate: no lungs
    out = tmp_path / "masks"
    rc = main([str(folder), "--model", str(tiny_model), "--device", "cpu", "--lung-masks", str(out),
               "--csv", str(tmp_path / "r.csv"), "--no-lung-attention", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rows = {r["path"]: r for r in csv.DictReader(open(tmp_path / "r.csv", newline="", encoding="utf-8"))}
    names = sorted(p.name for p in out.iterdir())
    assert "a_lungs.png" in names and "a_lungs_2.png" in names
    for row in rows.values():
        if row["status"] != "ok":
            continue
        m = np.asarray(Image.open(row["lung_mask"]))
        src = np.asarray(Image.open(row["path"]))
        assert m.shape == src.shape[:2] and set(np.unique(m)) <= {0, 255}
        share = (m == 255).mean()
        assert 0.15 < share < 0.6  # two lungs, not the whole film
        rows_lung = np.flatnonzero((m == 255).any(axis=1))
        assert rows_lung.min() < m.shape[0] * 0.35 and rows_lung.max() > m.shape[0] * 0.6
