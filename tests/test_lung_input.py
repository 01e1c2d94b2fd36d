"""The classifier's lung-focused input, calibration and the source-breaking
augmentation: known answers on synthetic inputs, and the one image -> tensor
path shared by prediction and Grad-CAM on a real film."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.model.calibration import apply_temperature, fit, fit_temperature, in_band, threshold_for_specificity
from training.model.lung_input import WORK_SIZE, Box, InputSpec, clahe, lung_box, model_view, place_heatmap
from training.model.metrics import calibration as ece_of
from training.model.metrics import threshold_for_sensitivity
from training.train.augment import augment_batch


def _two_lungs(shape=(256, 256)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[64:192, 40:110] = True  # right lung (image left)
    m[64:200, 146:216] = True  # left lung
    m[5:8, 5:8] = True  # a speck the box must ignore
    return m


def test_lung_box_is_the_two_lungs_plus_margin():
    box = lung_box(_two_lungs(), margin=0.10)
    h = (200 - 64) / 256
    w = (216 - 40) / 256
    assert box.top == pytest.approx(64 / 256 - 0.1 * h)
    assert box.bottom == pytest.approx(200 / 256 + 0.1 * h)
    assert box.left == pytest.approx(40 / 256 - 0.1 * w)
    assert box.right == pytest.approx(216 / 256 + 0.1 * w)


def test_no_lungs_means_the_whole_image():
    assert lung_box(np.zeros((256, 256), bool)).whole
    assert lung_box(None).whole
    tiny = np.zeros((256, 256), bool)
    tiny[100:105, 100:105] = True
    assert lung_box(tiny).whole


def test_model_view_crops_the_full_resolution_pixels():
    img = np.zeros((1024, 800), np.float32)
    img[256:768, 160:640] = 1.0  # bright where the lungs' box will be
    mask = np.zeros((256, 256), bool)
    mask[64:192, 51:205] = True  # the same region in the mask's stretched frame
    view, box = model_view(img, InputSpec("lungs", "none", margin=0.0), mask)
    assert view.shape == (WORK_SIZE, WORK_SIZE)
    assert view.mean() > 0.95  # only the bright region was kept
    r0, c0, r1, c1 = box.pixels(img.shape)
    assert (r0, r1) == (256, 768) and abs(c0 - 160) <= 4 and abs(c1 - 640) <= 4


def test_plain_spec_changes_nothing():
    img = np.random.default_rng(0).random((50, 70), dtype=np.float32)
    view, box = model_view(img, InputSpec())
    assert view is img and box.whole


def test_clahe_restores_the_contrast_of_a_flat_film_and_keeps_its_structure():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    base = np.clip(0.3 + 0.4 * np.sin(6 * xx) * np.cos(4 * yy) + 0.05 * rng.standard_normal((256, 256)), 0, 1)
    flat = (0.5 + 0.3 * (base - 0.5)).astype(np.float32)  # a washed-out exposure
    out = clahe(flat)
    assert out.shape == flat.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert out.std() > 1.15 * flat.std()
    assert np.corrcoef(out.ravel(), flat.ravel())[0, 1] > 0.9


def test_heatmap_goes_back_in_place():
    heat = np.ones((7, 7), np.float32)
    out = place_heatmap(heat, Box(0.25, 0.5, 0.75, 1.0), (100, 60))
    assert out.shape == (100, 60)
    assert out[25:75, 30:60].min() == pytest.approx(1.0)
    assert out[:25].max() == 0 and out[:, :30].max() == 0


def test_input_spec_round_trip_and_refusal():
    spec = InputSpec("lungs", "clahe", 0.12)
    assert InputSpec.from_metadata(spec.to_metadata()) == spec
    assert InputSpec.from_metadata({}) == InputSpec()  # a file written before lung inputs existed
    with pytest.raises(ValueError):
        InputSpec("ribs")


def test_temperature_scaling_calibrates_overconfident_scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 4000)
    z_true = np.where(y == 1, 1.0, -1.0) + rng.standard_normal(4000)  # P(y|z) = sigmoid(2 z)
    p_over = 1 / (1 + np.exp(-6.0 * z_true))  # three times too confident
    t = fit_temperature(p_over[:2000], y[:2000])
    assert 2.4 < t < 3.6
    q = apply_temperature(p_over[2000:], t)
    assert ece_of(y[2000:], q)["ece"] < 0.03 < ece_of(y[2000:], p_over[2000:])["ece"]
    order = np.argsort(p_over[2000:], kind="stable")
    assert (np.diff(q[order]) >= 0).all()  # ranking unchanged


def test_band_edges_follow_their_rules():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(300, int), np.zeros(300, int)]
    p = np.r_[rng.beta(5, 2, 300), rng.beta(2, 5, 300)]
    cal = fit(p, y)
    q = apply_temperature(p, cal.temperature)
    lo, hi = cal.band
    assert lo <= cal.threshold <= hi
    assert (q[y == 1] >= cal.threshold).mean() >= 0.95
    assert (q[y == 1] >= lo).mean() >= 0.98
    assert (q[y == 0] > hi).mean() <= 0.05
    assert threshold_for_specificity(y, q, 0.95) == pytest.approx(hi) or hi == cal.threshold
    assert in_band(np.array([lo, hi, lo - 1e-3, hi + 1e-3]), cal.band).tolist() == [True, True, False, False]
    assert cal.threshold == pytest.approx(threshold_for_sensitivity(y, q, 0.95))


def test_source_augmentation_keeps_range_shape_and_sides():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(16, 1, 64, 64)
    x[:, :, 16:48, 4:24] = 1.0  # a bright block on the image's left only
    out = augment_batch(x, g, level="source")
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    left, right = out[..., :32].mean(), out[..., 32:].mean()
    assert left > 3 * right  # never flipped
    again = augment_batch(x, torch.Generator().manual_seed(0), level="source")
    assert torch.equal(out, again)  # seeded: reproducible
    assert not torch.equal(out, augment_batch(x, torch.Generator().manual_seed(0), level="basic"))
    with pytest.raises(ValueError):
        augment_batch(x, g, level="extreme")


def test_masked_outside_is_black_away_from_the_lungs_and_kept_inside():
    """``outside = "masked"``: the view is black far outside the widened lung mask, unchanged well
    inside it, for the training view and the prediction path alike; the rule is recorded in the
    file only when used (older files keep their exact metadata); a whole-image model cannot ask for it."""
    from training.model.lung_input import model_input, soft_lung_mask

    rng = np.random.default_rng(0)
    pixels = (0.3 + 0.4 * rng.random((512, 512))).astype(np.float32)
    mask = _two_lungs()
    keep = InputSpec(region="lungs", intensity="none")
    masked = InputSpec(region="lungs", intensity="none", outside="masked")
    assert "outside_lungs" not in keep.to_metadata()
    assert InputSpec.from_metadata(masked.to_metadata()) == masked
    assert InputSpec.from_metadata(keep.to_metadata()).outside == "keep"
    with pytest.raises(ValueError):
        InputSpec(region="whole", outside="masked")
    with pytest.raises(ValueError):
        InputSpec(region="lungs", outside="blurred")
    plain, box = model_view(pixels, keep, mask)
    view, box2 = model_view(pixels, masked, mask)
    assert box == box2 and view.shape == plain.shape == (WORK_SIZE, WORK_SIZE)
    soft = soft_lung_mask(mask, box, view.shape)
    assert np.allclose(view, plain * soft, atol=1e-6)
    far, inside = soft < 1e-3, soft > 0.999
    assert far.mean() > 0.01 and inside.mean() > 0.3  # both regions exist on this layout (the crop is tight)
    assert np.all(view[far] < 1e-3) and np.allclose(view[inside], plain[inside], atol=1e-3)
    # the lung edge itself is kept: every mask pixel is at least half visible after the widening
    r0, c0, r1, c1 = box.pixels(mask.shape)
    lung = torch.from_numpy(mask[r0:r1, c0:c1].astype(np.float32))[None, None]
    on_view = torch.nn.functional.interpolate(lung, size=view.shape, mode="nearest")[0, 0].numpy() > 0.5
    assert on_view.any() and float(soft[on_view].min()) >= 0.5
    # the prediction path masks the same way (resized to the model's input)
    x, _ = model_input(pixels, masked, 64, mask)
    x_keep, _ = model_input(pixels, keep, 64, mask)
    assert float(x.mean()) < float(x_keep.mean())
    # no usable lung mask: nothing is blacked out (the view is the whole image, as for "keep")
    assert np.allclose(model_view(pixels, masked, np.zeros((256, 256), bool))[0],
                       model_view(pixels, keep, np.zeros((256, 256), bool))[0])
