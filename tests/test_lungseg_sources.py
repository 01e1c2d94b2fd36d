"""The lung segmenter's trainer with several sources: fixed splits from split
files, the infection set's ``lung_mask`` column, balanced epochs, warm start
(``--init``), the source-style augmentation, per-source test figures.  Small
real runs: a few real pairs per source, 1 epoch, 64 px, a tiny network."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from training.cli.train_lungs import main as train_lungs
from training.common.errors import DataError
from training.gate.segmenter import SegmenterInfo, read_segmenter_info
from training.gate.segmenter_net import build_segmenter, save_segmenter
from training.train.segmenter_trainer import (
    SegTrainConfig,
    augment_pairs,
    epoch_order,
    fixed_split,
    load_pairs,
    load_sources,
    run_seg_training,
)

REPO = Path(__file__).resolve().parents[1]
LUNG_SPLIT = REPO / "results" / "lung_segmenter" / "split.csv"
V2_SPLIT = REPO / "results" / "v2" / "split.csv"
TINY = [4, 4, 8, 8, 16, 4]
PER_SPLIT = {"train": 6, "val": 2, "test": 2}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _copy_subset(src: Path, dst: Path, manifest_rows: list[dict], mask_col: str) -> None:
    dst.mkdir(parents=True)
    for r in manifest_rows:
        for col in ("file", mask_col):
            (dst / r[col]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / r[col], dst / r[col])
    with open(dst / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", mask_col, "label"], extrasaction="ignore")
        w.writeheader()
        w.writerows(manifest_rows)


def _pick(split_rows: list[dict]) -> set[str]:
    """The first few files of each split, in the split file's order."""
    out: set[str] = set()
    for s, n in PER_SPLIT.items():
        out |= set([r["file"] for r in split_rows if r["split"] == s][:n])
    return out


@pytest.fixture(scope="module")
def two_sources(data_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Ten real pairs of each source (6 train / 2 val / 2 test by the project's split files),
    in folders named like the originals so the split files' ``dataset`` column matches."""
    if not LUNG_SPLIT.is_file() or not V2_SPLIT.is_file():
        pytest.skip("committed split files not found")
    root = tmp_path_factory.mktemp("sources")
    lm_src, inf_src = data_dir / "cxr-lung-masks-600", data_dir / "cxr-infection-3class"
    keep = _pick(_rows(LUNG_SPLIT))
    _copy_subset(lm_src, root / "cxr-lung-masks-600", [r for r in _rows(lm_src / "manifest.csv") if r["file"] in keep],
                 "mask")
    keep = _pick([r for r in _rows(V2_SPLIT) if r["dataset"] == "cxr-infection-3class"])
    _copy_subset(inf_src, root / "cxr-infection-3class",
                 [r for r in _rows(inf_src / "manifest.csv") if r["file"] in keep], "lung_mask")
    return root / "cxr-lung-masks-600", root / "cxr-infection-3class"


def test_infection_set_lung_mask_column_is_read(two_sources):
    files, labels, imgs, masks = load_pairs(two_sources[1], 64)
    assert len(files) == 10 and imgs.shape == (10, 64, 64) and imgs.dtype == np.uint8
    assert masks.dtype == bool and 0.05 < masks.mean() < 0.6  # real lung masks, not empty or full
    assert set(labels) <= {"COVID", "Normal", "Pneumonia"}


def test_split_files_fix_each_source_and_are_checked(two_sources, tmp_path):
    lm, inf = two_sources
    files = load_pairs(inf, 32)[0]
    # dataset column: only the rows of this folder's name count
    got = fixed_split(V2_SPLIT, "cxr-infection-3class", files)
    assert sorted(got) == sorted(["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    assert fixed_split(V2_SPLIT, "cxr-lung-masks-600", load_pairs(lm, 32)[0]) is None
    # no dataset column (the segmenter's own split.csv): matched by file names
    assert fixed_split(LUNG_SPLIT, "anything", files) is None
    cfg = SegTrainConfig(data_dir=str(lm), out_dir=str(tmp_path / "r"), size=32, extra_data=[str(inf)],
                         split_files=[str(LUNG_SPLIT), str(V2_SPLIT)])
    data = load_sources(cfg)
    assert data.names == ["cxr-lung-masks-600", "cxr-infection-3class"]
    assert data.counts() == {n: PER_SPLIT for n in data.names}
    assert data.split_rules == ["fixed: split.csv", "fixed: split.csv"]
    lung_split = {r["file"]: r["split"] for r in _rows(LUNG_SPLIT)}
    for f, s, k in zip(data.files, data.splits, data.source):
        if k == 0:
            assert lung_split[f] == s  # the committed split, unchanged
    # a split file that leaves out a pair of the source it covers is refused
    partial = tmp_path / "partial.csv"
    rows = [r for r in _rows(V2_SPLIT) if r["dataset"] == "cxr-infection-3class" and r["file"] in set(files)][:-1]
    with open(partial, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["dataset", "file", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(DataError, match="no split for 1"):
        fixed_split(partial, "cxr-infection-3class", files)
    # a split file that covers no source is refused (a typo must not silently re-split the data)
    cfg.split_files = [str(LUNG_SPLIT)]
    cfg.extra_data = []
    cfg.data_dir = str(inf)
    with pytest.raises(DataError, match="covers none"):
        load_sources(cfg)


def test_balanced_epoch_order():
    g = torch.Generator().manual_seed(0)
    small, big = np.arange(5), np.arange(100, 160)
    order = epoch_order([small, big], 21, g)
    assert len(order) == 21
    assert (order < 100).sum() == 11 and (order >= 100).sum() == 10  # even split, remainder to the first
    assert np.bincount(order[order < 100]).max() <= 3  # the small source re-shuffled and repeated, not one pair
    assert len(set(order[order >= 100].tolist())) == 10  # the big one without replacement
    everything = epoch_order([small, big], 0, g)
    assert sorted(everything.tolist()) == sorted(small.tolist() + big.tolist())


def test_style_augmentation_keeps_alignment_and_range(two_sources):
    _, _, imgs, masks = load_pairs(two_sources[0], 64)
    x = torch.from_numpy(imgs).float().div(255)[:, None]
    y = torch.from_numpy(masks).float()[:, None]
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        xa, ya = augment_pairs(x, y, g, invert_p=0.0, style=True)
        assert xa.shape == x.shape and float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
        assert set(ya.unique().tolist()) <= {0.0, 1.0}
    # a bright square and its mask still move together under every style change
    sq = torch.zeros(8, 1, 32, 32)
    sq[:, :, 8:24, 8:24] = 1.0
    xa, ya = augment_pairs(sq * 0.8 + 0.1, sq.clone(), g, invert_p=0.0, style=True)
    for i in range(8):
        assert xa[i][ya[i] > 0].mean() > xa[i][ya[i] == 0].mean()
    # without style: the original recipe's random draws (same generator state -> same result twice)
    a = augment_pairs(x, y, torch.Generator().manual_seed(5), 0.3)[0]
    b = augment_pairs(x, y, torch.Generator().manual_seed(5), 0.3, style=False)[0]
    assert torch.equal(a, b)


def test_two_source_run_from_init_and_cli(two_sources, tmp_path):
    lm, inf = two_sources
    init = tmp_path / "init.safetensors"
    torch.manual_seed(1)
    save_segmenter(build_segmenter(TINY), SegmenterInfo(features=list(TINY), input_size=64,
                                                        training={"data": "tiny"}), init)
    out = tmp_path / "run"
    cfg = SegTrainConfig(data_dir=str(lm), out_dir=str(out), epochs=1, batch_size=4, size=64, features=list(TINY),
                         threads=1, extra_data=[str(inf)], split_files=[str(LUNG_SPLIT), str(V2_SPLIT)],
                         samples_per_epoch=8, init=str(init))
    m = run_seg_training(cfg)
    assert m["test_pairs"] == 4 and set(m["per_source"]) == {"cxr-lung-masks-600", "cxr-infection-3class"}
    for r in m["per_source"].values():
        assert r["test_pairs"] == 2 and 0.0 <= r["dice_mean"] <= 1.0 and "dice_inverted_mean" in r
        assert r["dice_below_0_80"] in (0, 1, 2)
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 1 and "val_dice[cxr-infection-3class]" in hist[0]
    assert hist[0]["val_dice"] == pytest.approx(np.mean([hist[0]["val_dice[cxr-lung-masks-600]"],
                                                         hist[0]["val_dice[cxr-infection-3class]"]]))
    info = read_segmenter_info(out / "lung_segmenter.safetensors")
    assert info.training["data"] == "cxr-lung-masks-600 + cxr-infection-3class"
    assert info.training["init"].startswith("fine-tuned from init.safetensors")
    assert [s["split"] for s in info.training["sources"]] == ["fixed: split.csv", "fixed: split.csv"]
    assert "CLAHE" in info.training["augmentation"]
    split = _rows(out / "split.csv")
    assert {r["dataset"] for r in split} == {"cxr-lung-masks-600", "cxr-infection-3class"} and len(split) == 20
    report = (out / "report.md").read_text()
    assert "`cxr-infection-3class` held-out pairs" in report
    # config.json round-trips (what --resume reads)
    assert SegTrainConfig(**json.loads((out / "config.json").read_text())) == cfg


def test_init_must_match_the_network(two_sources, tmp_path):
    lm, _ = two_sources
    init = tmp_path / "other.safetensors"
    save_segmenter(build_segmenter([4, 4, 8, 8, 8, 4]), SegmenterInfo(features=[4, 4, 8, 8, 8, 4]), init)
    cfg = SegTrainConfig(data_dir=str(lm), out_dir=str(tmp_path / "r"), epochs=1, size=64, features=list(TINY),
                         threads=1, split_files=[str(LUNG_SPLIT)], init=str(init))
    with pytest.raises(DataError, match="same network"):
        run_seg_training(cfg)


def test_cli_two_sources_with_init(two_sources, tmp_path, capsys):
    """The CLI end to end with the shipped-size network (8-8-16-32-64-8) at 32 px, 4 pairs, 1 epoch."""
    lm, inf = two_sources
    init = tmp_path / "init.safetensors"
    save_segmenter(build_segmenter(), SegmenterInfo(input_size=32), init)
    out = tmp_path / "cli"
    rc = train_lungs(["--data", str(lm), "--split", str(LUNG_SPLIT), "--data", str(inf), "--split", str(V2_SPLIT),
                      "--init", str(init), "--samples-per-epoch", "4", "--epochs", "1", "--batch-size", "4",
                      "--size", "32", "--threads", "1", "--lr", "1e-4", "--out", str(out), "--quiet"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["extra_data"] == [str(inf)] and cfg["split_files"] == [str(LUNG_SPLIT), str(V2_SPLIT)]
    assert cfg["init"] == str(init) and cfg["samples_per_epoch"] == 4 and cfg["style_aug"] is True
    assert "test Dice" in capsys.readouterr().out
    # a split file naming no source is a usage error, not a silent re-split
    assert train_lungs(["--data", str(inf), "--split", str(LUNG_SPLIT), "--out", str(tmp_path / "bad"),
                        "--epochs", "1", "--size", "32", "--quiet"]) == 2


def test_resume_of_a_run_from_before_the_options_keeps_its_recipe(data_dir, tmp_path):
    """A run folder whose config.json predates the new options resumes as it was: one source,
    no fixed split, no init, every training pair once per epoch, no source-style augmentation."""
    src = data_dir / "cxr-lung-masks-600"
    by_label: dict[str, list[dict]] = {}
    for r in _rows(src / "manifest.csv"):
        by_label.setdefault(r["label"], []).append(r)
    lm = tmp_path / "pairs"
    _copy_subset(src, lm, [r for lab in sorted(by_label) for r in by_label[lab][:5]], "mask")  # 5 per label
    run = tmp_path / "old"
    run.mkdir()
    old = {"data_dir": str(lm), "out_dir": str(run), "epochs": 1, "batch_size": 4, "lr": 1e-3, "seed": 0, "size": 32,
           "features": TINY, "threads": 1, "invert_p": 0.3, "device": "cpu"}
    (run / "config.json").write_text(json.dumps(old))
    assert train_lungs(["--resume", str(run), "--quiet"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["style_aug"] is False and cfg["extra_data"] == [] and cfg["init"] == "" and cfg["samples_per_epoch"] == 0
    assert read_segmenter_info(run / "lung_segmenter.safetensors").training["init"] == "scratch"
