"""The lung segmenter's training engine: a tiny real run, cancel + resume, the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from training.cli.train_lungs import main as train_lungs
from training.common.errors import TrainingCancelled
from training.gate.segmenter import LungSegmenter, read_segmenter_info
from training.train.data import stratified_split
from training.train.segmenter_trainer import SegTrainConfig, augment_pairs, run_seg_training, seg_train_events


@pytest.fixture(scope="module")
def tiny_pairs(data_dir, tmp_path_factory) -> Path:
    """30 real image + mask pairs (10 per label) with their own manifest."""
    src = data_dir / "cxr-lung-masks-600"
    rows = list(csv.DictReader(open(src / "manifest.csv", newline="")))
    by_label: dict[str, list[dict]] = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(r)
    keep = [r for lab in sorted(by_label) for r in by_label[lab][:10]]
    root = tmp_path_factory.mktemp("pairs")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for r in keep:
        shutil.copy(src / r["file"], root / r["file"])
        shutil.copy(src / r["mask"], root / r["mask"])
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", "mask", "label"], extrasaction="ignore")
        w.writeheader()
        w.writerows(keep)
    return root


def test_split_is_stratified_over_three_labels():
    labels = [0] * 20 + [1] * 20 + [2] * 20
    s = stratified_split(labels, seed=0)
    assert None not in s
    for cls in (0, 1, 2):
        got = [x for x, y in zip(s, labels) if y == cls]
        assert got.count("train") == 16 and got.count("val") == 2 and got.count("test") == 2


def test_augmentation_keeps_image_and_mask_aligned():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:24, 8:24] = 1.0
    y = x.clone()
    xa, ya = augment_pairs(x, y, g, invert_p=0.0)
    assert xa.shape == x.shape and set(ya.unique().tolist()) <= {0.0, 1.0}
    # bright square and mask move together: mask pixels are brighter than the rest
    for i in range(4):
        assert xa[i][ya[i] > 0].mean() > xa[i][ya[i] == 0].mean()


def test_tiny_run_cancel_resume_and_model_file(tiny_pairs, tmp_path):
    cfg = SegTrainConfig(data_dir=str(tiny_pairs), out_dir=str(tmp_path / "run"), epochs=2, batch_size=8, size=64,
                         features=[4, 4, 8, 8, 16, 4], threads=1)
    kinds = []
    seen = {"batches": 0}

    def stop():
        return seen["batches"] >= 4  # cancel inside epoch 2 (3 batches per epoch)

    with pytest.raises(TrainingCancelled):
        for ev in seg_train_events(cfg, should_stop=stop):
            kinds.append(ev.kind)
            seen["batches"] += ev.kind == "batch"
    assert "epoch" in kinds and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    result = run_seg_training(cfg, resume=True)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert 0.0 <= result["dice_mean"] <= 1.0 and len(result["dice_ci95"]) == 2
    model = tmp_path / "run" / "lung_segmenter.safetensors"
    info = read_segmenter_info(model)
    assert info.input_size == 64 and info.metrics["test_pairs"] == 3
    seg = LungSegmenter.from_file(model)
    out = seg.segment(torch.rand(100, 80).numpy())
    assert out.prob.shape == (64, 64) and out.features.ndim == 1
    for name in ("report.md", "curves.png", "split.csv", "test_metrics.json", "events.jsonl"):
        assert (tmp_path / "run" / name).is_file(), name


def test_cli_usage_errors(tmp_path, capsys):
    assert train_lungs([]) == 2
    assert train_lungs(["--resume", str(tmp_path)]) == 2
    assert "not a lung segmenter run" in capsys.readouterr().err
