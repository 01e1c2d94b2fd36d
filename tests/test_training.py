"""The training engine end to end on a tiny real data set (covid-cxr-1000
images, 32 x 32, 2 epochs): outputs, metrics consistency, cancel + resume,
split, broken images, both entry points (function and CLI) and a 2-process
DDP run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.common.errors import DataError, TrainingCancelled
from training.model.metrics import confusion, point_metrics
from training.model.modelfile import load_model
from training.train.config import make_config
from training.train.data import read_manifest, scan_folders, stratified_split
from training.train.trainer import run_training, train_events

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, cxr1000) -> Path:
    """12 COVID + 12 Normal real images, plus one broken file."""
    root = tmp_path_factory.mktemp("tinydata")
    for cls in ("COVID", "Normal"):
        (root / cls).mkdir()
        for p in sorted((cxr1000 / cls).glob("*.png"))[:12]:
            shutil.copy(p, root / cls / p.name)
    (root / "COVID" / "broken.png").write_text("this is not a png\n")
    return root


def tiny_config(data: Path, out: Path, **kw):
    base = dict(input_size=32, epochs=2, batch_size=8, threads=1)
    base.update(kw)
    return make_config([data], out, "paper", **base)


def test_end_to_end_outputs_and_metrics(tiny_data, tmp_path):
    out = tmp_path / "run"
    events = []
    result = run_training(tiny_config(tiny_data, out), on_event=events.append)
    kinds = {e.kind for e in events}
    assert {"log", "data", "batch", "epoch", "model_done", "done"} <= kinds
    for f in ("config.json", "split.csv", "data.json", "report.md", "report.json", "confusion_all.png"):
        assert (out / f).is_file(), f
    for arch in ("resnet50", "lstm", "resnet50_lstm"):
        for f in ("history.csv", "history.json", "metrics.json", "curves.png", "confusion.png", "reliability.png",
                  "predictions.json"):
            assert (out / arch / f).is_file(), (arch, f)
        model_file = out / "models" / f"{arch}.safetensors"
        assert Path(result["models"][arch]) == model_file
        loaded = load_model(model_file)
        assert loaded.info.arch == arch and loaded.info.input_size == 32 and loaded.info.threshold == 0.5
        m = json.loads((out / arch / "metrics.json").read_text())
        hist = json.loads((out / arch / "history.json").read_text())
        assert [h["epoch"] for h in hist] == [1, 2]
        # the chosen epoch follows the rule: best val acc, ties by lower val loss
        best = max(hist, key=lambda h: (h["val_acc"], -h["val_loss"]))
        assert m["best_epoch"] == best["epoch"]
        # metrics agree with the confusion matrix and with the stored predictions
        preds = json.loads((out / arch / "predictions.json").read_text())["test"]
        test = m["evaluations"]["test"]["at_0.5"]
        cm = confusion(preds["label"], (np.array(preds["p_covid"]) >= 0.5).astype(int))
        assert cm == test["confusion"]
        assert sum(cm.values()) == test["n"] == len(preds["label"])
        pm = point_metrics(cm)
        for k in ("accuracy", "precision", "recall", "f1"):
            assert test[k] == pytest.approx(pm[k])
            lo, hi = test["ci95"][k]
            if not np.isnan(lo):  # NaN when undefined (e.g. precision with no positive prediction)
                assert lo <= test[k] + 1e-9 and test[k] <= hi + 1e-9
    # the model card is generated from the model file and its metrics, not typed by hand
    from training.release.model_card import render

    card = render(out / "models" / "resnet50_lstm.safetensors", out / "resnet50_lstm" / "metrics.json")
    t = json.loads((out / "resnet50_lstm" / "metrics.json").read_text())["evaluations"]["test"]["at_0.5"]
    assert "ResNet50-LSTM" in card and "Not a medical device" in card
    assert f"{t['accuracy']:.3f}" in card and f"{t['confusion']['tp']}/{t['confusion']['fn']}/" in card
    report = (out / "report.md").read_text()
    assert "Table 2" in report and "Table 6" in report and "47/3/2/48" in report
    data = json.loads((out / "data.json").read_text())
    assert data["images_used"] == 24 and any("broken.png" in s["path"] for s in data["skipped"])
    assert data["split_counts"]["test"] == {"Normal": 1, "COVID": 1}
    assert data["split_counts"]["val"] == {"Normal": 1, "COVID": 1}


def test_cancel_leaves_no_partial_model_and_resume_completes(tiny_data, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(tiny_data, out, models=["resnet50", "lstm"])
    seen = {"epochs": 0}

    def stop():
        return seen["epochs"] >= 1

    with pytest.raises(TrainingCancelled):
        for ev in train_events(cfg, should_stop=stop):
            if ev.kind == "epoch":
                seen["epochs"] += 1
    assert (out / "checkpoints" / "resnet50_last.pt").is_file()
    assert not (out / "models").exists() or not list((out / "models").iterdir())
    assert not list(out.rglob("*.tmp"))
    # resume the same run (what `xray-train --resume` does)
    from training.train.config import TrainConfig

    cfg2 = TrainConfig.load(out / "config.json")
    events = []
    run_training(cfg2, on_event=events.append)
    assert any("resuming after epoch 1" in e.message for e in events)
    for arch in ("resnet50", "lstm"):
        hist = json.loads((out / arch / "history.json").read_text())
        assert [h["epoch"] for h in hist] == [1, 2]
        assert (out / "models" / f"{arch}.safetensors").is_file()


def test_split_is_stratified_and_reproducible(tiny_data, tmp_path):
    labels = [0] * 50 + [1] * 30
    a = stratified_split(labels, seed=7)
    b = stratified_split(labels, seed=7)
    c = stratified_split(labels, seed=8)
    assert a == b and a != c
    for cls, n in ((0, 50), (1, 30)):
        got = [s for s, lab in zip(a, labels) if lab == cls]
        assert got.count("val") == round(0.1 * n) and got.count("test") == round(0.1 * n)
    with pytest.raises(DataError, match="at least 5"):
        stratified_split([0] * 20 + [1] * 3)


def test_data_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        scan_folders([tmp_path / "nope"])
    (tmp_path / "COVID").mkdir()
    with pytest.raises(DataError, match="Normal"):
        scan_folders([tmp_path])


def test_cli_reuses_split_file(tiny_data, tmp_path):
    from training.cli.train import main

    out1, out2 = tmp_path / "a", tmp_path / "b"
    assert main(["--data", str(tiny_data), "--out", str(out1), "--models", "lstm", "--input-size", "32",
                 "--epochs", "1", "--batch-size", "8", "--quiet"]) == 0
    assert main(["--data", str(tiny_data), "--out", str(out2), "--models", "lstm", "--input-size", "32",
                 "--epochs", "1", "--batch-size", "8", "--seed", "99", "--split", str(out1 / "split.csv"),
                 "--quiet"]) == 0
    assert read_manifest(out1 / "split.csv") == read_manifest(out2 / "split.csv")
    assert main(["--resume", str(tmp_path / "missing")]) == 2


def test_torchrun_two_processes_gloo(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "training.cli.train", "--data", str(tiny_data), "--out", str(out), "--models", "lstm", "resnet50",
           "--input-size", "32", "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for arch in ("lstm", "resnet50"):
        m = json.loads((out / arch / "metrics.json").read_text())
        assert m["world_size"] == 2
        assert m["evaluations"]["test"]["at_0.5"]["n"] == 2  # gathered from both ranks
        hist = json.loads((out / arch / "history.json").read_text())
        assert [h["epoch"] for h in hist] == [1, 2]
    # only rank 0 writes: each event was logged once, and the epoch lines were printed once
    lines = (out / "events.jsonl").read_text().splitlines()
    assert sum("Reading images" in line for line in lines) == 1
    assert proc.stdout.count("LSTM epoch 1/2") == 1


def test_holdout_split_keeps_paper_test_images_out_of_training(tiny_data, tmp_path):
    """The shipped recipe keeps the reproduction's test images out of training
    and reports them as the extra set 'paper_test'."""
    from training.cli.train import main

    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--data", str(tiny_data), "--models", "lstm", "--input-size", "32", "--epochs", "1",
              "--batch-size", "8", "--quiet"]
    assert main(common + ["--out", str(first)]) == 0
    assert main(common + ["--out", str(second), "--holdout-split", str(first / "split.csv"), "--seed", "5"]) == 0
    a, b = read_manifest(first / "split.csv"), read_manifest(second / "split.csv")
    held = {k for k, (_, s) in a.items() if s == "test"}
    assert held and {k for k, (_, s) in b.items() if s == "paper_test"} == held
    m = json.loads((second / "lstm" / "metrics.json").read_text())
    assert m["evaluations"]["paper_test"]["at_0.5"]["n"] == len(held)
    assert "paper_test" in (second / "report.md").read_text()


def test_freeze_backbone_epochs_train_only_the_head(tiny_data, tmp_path):
    """With --freeze-backbone-epochs 1 the first epoch leaves the backbone's
    weights (and BatchNorm statistics) exactly as they started."""
    import torch

    from training.cli.train import main
    from training.model.modelfile import load_model

    first = tmp_path / "r50"
    common = ["--data", str(tiny_data), "--input-size", "32", "--batch-size", "8", "--quiet"]
    assert main(common + ["--out", str(first), "--models", "resnet50", "--epochs", "1"]) == 0
    start = load_model(first / "models" / "resnet50.safetensors").model.backbone.state_dict()
    second = tmp_path / "lstm"
    assert main(common + ["--out", str(second), "--models", "resnet50_lstm", "--epochs", "1", "--split",
                          str(first / "split.csv"), "--lstm-init", str(first / "models" / "resnet50.safetensors"),
                          "--freeze-backbone-epochs", "1"]) == 0
    after = torch.load(second / "checkpoints" / "resnet50_lstm_last.pt", weights_only=True)["model"]
    for k, v in start.items():
        assert torch.equal(after[f"backbone.{k}"].float(), v.float()), k
    assert (second / "models" / "resnet50_lstm.safetensors").is_file()


def test_config_rules_live_in_the_core_and_refuse_before_any_image_is_read(tmp_path):
    """The two-stage recipe needs its ResNet50, and a run folder holding another
    run is refused - by the core, so xray-train and the wizard say the same."""
    from training.common.errors import DataError
    from training.train.config import make_config

    with pytest.raises(DataError, match="train ResNet50 too"):
        make_config([str(tmp_path / "nowhere")], str(tmp_path / "run"), "shipped", models=["resnet50_lstm"])
    cfg = make_config([str(tmp_path / "nowhere")], str(tmp_path / "run"), "paper", models=["resnet50"])
    assert cfg.check_run_folder() is False
    (tmp_path / "run").mkdir()
    cfg.save(tmp_path / "run" / "config.json")
    assert cfg.check_run_folder() is True  # the same run: a resume
    other = make_config([str(tmp_path / "nowhere")], str(tmp_path / "run"), "paper", models=["resnet50"], epochs=3)
    with pytest.raises(DataError, match="already holds a run with other settings"):
        other.check_run_folder()
    moved = make_config([str(tmp_path / "nowhere")], str(tmp_path / "run"), "paper", models=["resnet50"],
                        threads=1, device="cpu")
    assert moved.same_run_as(cfg)
