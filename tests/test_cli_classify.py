"""``xray-classify`` end to end on a folder mixing good and broken files."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.cli.classify import main
from training.model.modelfile import ModelInfo, save_model
from training.model.networks import build_model

REPO = Path(__file__).resolve().parents[1]
GOOD_DICOM = "cxr07_nih_udacity_test1_nofinding.dcm"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("resnet50", "scratch", input_size=64)
    return save_model(model, ModelInfo(arch="resnet50", input_size=64, threshold=0.5),
                      tmp_path_factory.mktemp("model") / "tiny.safetensors")


@pytest.fixture()
def mixed_folder(tmp_path, cxr1000, dicom_dir):
    root = tmp_path / "scans"
    (root / "sub").mkdir(parents=True)
    good = [sorted((cxr1000 / "COVID").glob("*.png"))[0], sorted((cxr1000 / "Normal").glob("*.png"))[0]]
    shutil.copy(good[0], root / "a.png")
    shutil.copy(good[1], root / "sub" / "a.png")  # same name in another folder: heatmap names must not collide
    shutil.copy(dicom_dir / GOOD_DICOM, root / "chest.dcm")
    shutil.copy(dicom_dir / GOOD_DICOM, root / "sub" / "IM0001")  # DICOM without a suffix
    (root / "zero.png").write_bytes(b"")
    (root / "text.png").write_text("I am a text file wearing a .png name\n")
    (root / "readme.txt").write_text("not an image; skipped and reported\n")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cli_mixed_folder(mixed_folder, model_file, tmp_path, capsys):
    out_csv = tmp_path / "out" / "results.csv"
    heat = tmp_path / "heat"
    rc = main([str(mixed_folder), "--model", str(model_file), "--csv", str(out_csv), "--heatmaps", str(heat),
               "--device", "cpu", "--batch-size", "4"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    rows = _rows(out_csv)
    skipped = [r for r in rows if r["status"] == "skipped"]  # found in the folder, not an image: a row too
    assert [(Path(r["path"]).name, r["reason"]) for r in skipped] == [("readme.txt", "not an image file (.txt)")]
    rows = [r for r in rows if r["status"] != "skipped"]
    names = sorted(Path(r["path"]).relative_to(mixed_folder).as_posix() for r in rows)
    assert names == sorted(["a.png", "sub/a.png", "chest.dcm", "sub/IM0001", "zero.png", "text.png"])
    assert list(rows[0]) == ["path", "result", "label", "p_covid", "p_normal", "p_pneumonia", "threshold", "status",
                             "reason", "warnings", "suitability", "heatmap_in_lungs", "lung_involvement", "model",
                             "model_sha256", "app_version", "result_time", "heatmap"]
    by_name = {Path(r["path"]).relative_to(mixed_folder).as_posix(): r for r in rows}
    for name in ("a.png", "sub/a.png", "chest.dcm", "sub/IM0001"):
        r = by_name[name]
        assert r["status"] == "ok" and 0.0 <= float(r["p_covid"]) <= 1.0 and r["label"] in ("COVID", "Normal")
        assert float(r["threshold"]) == 0.5
        assert Path(r["heatmap"]).is_file()
    for name in ("zero.png", "text.png"):
        r = by_name[name]
        assert r["status"] == "refused" and r["reason"] and r["p_covid"] == "" and r["heatmap"] == ""
    assert "empty" in by_name["zero.png"]["reason"]
    pngs = sorted(p.name for p in heat.glob("*.png"))
    assert len(pngs) == 4 and [re.sub(r"_[0-9a-f]{12}_", "_", n) for n in pngs] == [
        "IM0001_heatmap.png", "a_heatmap.png", "a_heatmap.png", "chest_heatmap.png"]
    assert len({by_name[n]["heatmap"] for n in ("a.png", "sub/a.png", "chest.dcm", "sub/IM0001")}) == 4
    # stdout: a header and one row per input; stderr: skipped file, failure count, no traceback
    lines = [ln for ln in cap.out.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 6
    assert "readme.txt" in cap.err and "1 skipped" in cap.err
    assert "2 failed" in cap.err
    assert "Traceback" not in cap.err


def test_cli_threshold_and_allow_any_header(model_file, dicom_dir, tmp_path, capsys):
    ct = dicom_dir / "cxr11_nih_udacity_test5_modality-CT.dcm"
    out_csv = tmp_path / "r.csv"
    assert main([str(ct), "--model", str(model_file), "--csv", str(out_csv), "--no-progress"]) == 0
    assert _rows(out_csv)[0]["status"] == "refused"
    assert main([str(ct), "--model", str(model_file), "--csv", str(out_csv), "--allow-any-header",
                 "--threshold", "0.01", "--no-progress"]) == 0
    row = _rows(out_csv)[0]
    assert row["status"] == "ok" and float(row["threshold"]) == 0.01
    # a header refusal overridden gives a score but never a valid verdict (issue 13: forced results)
    verdict = "COVID" if float(row["p_covid"]) >= 0.01 else "Normal"
    assert row["label"] == f"not valid ({verdict})" and row["result"] == f"not valid ({verdict})"
    assert "header says this is not a frontal chest radiograph" in row["reason"] and "CT" in row["reason"]
    assert row["warnings"].count("header check overridden") == 0  # said once, in the reason
    capsys.readouterr()


@pytest.mark.parametrize("argv_extra, needle", [
    (["--threshold", "1.5"], "between 0 and 1"),
    (["--batch-size", "0"], "at least 1"),
])
def test_cli_bad_options_exit_2(model_file, cxr1000, capsys, argv_extra, needle):
    png = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    assert main([str(png), "--model", str(model_file), *argv_extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cli_bad_model_exit_2(tmp_path, cxr1000, capsys):
    png = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    bad = tmp_path / "model.safetensors"
    bad.write_text("definitely not a model")
    assert main([str(png), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a readable model file" in err and "Traceback" not in err
    assert main([str(png), "--model", str(tmp_path / "nope.safetensors")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_no_default_model(tmp_path, cxr1000, capsys, monkeypatch):
    monkeypatch.setenv("XRAY_RESOURCES", str(tmp_path / "no_resources"))
    png = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    assert main([str(png)]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "no default model" in err


def test_cli_empty_folder_exit_2(tmp_path, model_file, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--model", str(model_file)]) == 2
    assert "no image files" in capsys.readouterr().err


def _script() -> list[str]:
    exe = Path(sys.executable).with_name("xray-classify")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "training.cli.classify"]


def test_console_script_subprocess(mixed_folder, model_file, tmp_path):
    out_csv = tmp_path / "sub.csv"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([*_script(), str(mixed_folder), "--model", str(model_file), "--csv", str(out_csv),
                           "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(_rows(out_csv)) == 7  # 6 inputs + the skipped readme.txt
    assert proc.stdout.count("\n") == 7  # header + 6 rows
    assert "Traceback" not in proc.stderr
    # the bad-model path through the real entry point, via python -m
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    proc = subprocess.run([sys.executable, "-m", "training.cli.classify", str(mixed_folder), "--model", str(bad)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert "bad.safetensors" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- results are never lost (fault corpus, item 2)


def test_csv_path_is_checked_before_any_image(tmp_path, mixed_folder, model_file, capsys):
    folder_target = tmp_path / "a_folder"
    folder_target.mkdir()
    rc = main([str(mixed_folder), "--model", str(model_file), "--csv", str(folder_target), "--no-progress"])
    err = capsys.readouterr()
    assert rc == 2 and "is a folder" in err.err and err.out == ""  # no image was classified
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    rc = main([str(mixed_folder), "--model", str(model_file), "--csv", str(a_file / "r.csv")])
    assert rc == 2 and "Cannot create the folder" in capsys.readouterr().err


def test_csv_keeps_rows_when_interrupted(tmp_path, mixed_folder, model_file, monkeypatch, capsys):
    """Ctrl-C / SIGTERM after two results: the CSV holds those two rows."""
    from training.inference import classifier as predict

    real = predict.Classifier.classify_paths

    def two_then_interrupt(self, *a, **kw):
        for i, pred in enumerate(real(self, *a, **kw)):
            if i == 2:
                raise KeyboardInterrupt
            yield pred

    monkeypatch.setattr(predict.Classifier, "classify_paths", two_then_interrupt)
    out = tmp_path / "r.csv"
    rc = main([str(mixed_folder), "--model", str(model_file), "--csv", str(out), "--no-progress", "--batch-size", "2"])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert [r["status"] for r in _rows(out)] == ["skipped", "ok", "ok"]  # readme.txt, then the two done
    assert not list(tmp_path.glob(".*.partial"))


def test_csv_cells_are_safe(tmp_path, model_file, cxr1000):
    """A file name with invalid UTF-8 and one that starts like a formula: the CSV stays valid UTF-8."""
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    src = sorted((cxr1000 / "COVID").glob("*.png"))[0].read_bytes()
    (folder / "=cmd.png").write_bytes(src)
    bad = os.fsencode(str(folder)) + b"/caf\xe9.png"
    with open(bad, "wb") as fh:
        fh.write(src)
    out = tmp_path / "r.csv"
    assert main([str(folder), "--model", str(model_file), "--csv", str(out), "--no-progress"]) == 0
    text = out.read_bytes().decode("utf-8")  # strict: valid UTF-8
    rows = _rows(out)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert any(r["path"].endswith("caf\\xe9.png") for r in rows)
    assert not any(r["path"].startswith("=") for r in rows) and "=cmd.png" in text


def test_heatmaps_of_two_runs_never_collide(tmp_path, model_file, cxr1000):
    """Fault corpus item 6: two runs, same heatmap folder, same file stem, different images."""
    heat = tmp_path / "heat"
    rows = []
    for i, cls in enumerate(("COVID", "Normal")):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "scan.png").write_bytes(sorted((cxr1000 / cls).glob("*.png"))[0].read_bytes())
        out = tmp_path / f"r{i}.csv"
        assert main([str(d), "--model", str(model_file), "--csv", str(out), "--heatmaps", str(heat),
                     "--no-progress"]) == 0
        rows += _rows(out)
    assert rows[0]["heatmap"] != rows[1]["heatmap"] and all(Path(r["heatmap"]).is_file() for r in rows)
    long = tmp_path / "long"
    long.mkdir()
    (long / ("x" * 240 + ".png")).write_bytes(sorted((cxr1000 / "COVID").glob("*.png"))[1].read_bytes())
    out = tmp_path / "long.csv"
    assert main([str(long), "--model", str(model_file), "--csv", str(out), "--heatmaps", str(heat),
                 "--no-progress"]) == 0
    assert Path(_rows(out)[0]["heatmap"]).is_file()


def test_no_pydicom_warnings_on_stderr(tmp_path, model_file, dicom_dir):
    """Fault corpus item 7: pydicom's header-validation warnings (with site-packages paths)
    do not reach the user for the shipped sample DICOMs."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([*_script(), str(dicom_dir / "cxr15_dx_966fixed_j2kr_mono1.dcm"), "--model",
                           str(model_file), "--device", "cpu", "--no-progress", "--no-lung-attention"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "site-packages" not in proc.stderr, proc.stderr


def test_cli_dicom_out_writes_valid_sr_and_sc_equal_to_the_csv(tmp_path, model_file, dicom_dir, cxr1000, capsys):
    """``--dicom-out``: an SR per DICOM (+ SC per classified one), validated by
    dciodvfy, whose values equal the CSV row; a PNG gets the note instead."""
    import hashlib

    import pydicom
    from dicom_tools import dciodvfy, make_studies

    from training.dicom_out.sr import read_sr_values

    studies = tmp_path / "studies"
    files = make_studies(studies, dicom_dir)
    shutil.copy(sorted((cxr1000 / "COVID").glob("*.png"))[0], studies / "photo.png")
    ct = dicom_dir / "cxr11_nih_udacity_test5_modality-CT.dcm"  # refused by its header: an SR saying so
    out_csv, dicom_out = tmp_path / "r.csv", tmp_path / "dicom"
    rc = main([str(studies), str(ct), "--model", str(model_file), "--csv", str(out_csv),
               "--dicom-out", str(dicom_out), "--no-progress", "--device", "cpu"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "1 x DICOM export needs a DICOM source" in cap.err and "Traceback" not in cap.err
    rows = {Path(r["path"]).resolve(): r for r in _rows(out_csv)}
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert {r["model_sha256"] for r in rows.values()} == {digest}
    assert rows[(studies / "photo.png").resolve()]["dicom_sr"] == ""
    srs = sorted(dicom_out.glob("*_SR.dcm"))
    scs = sorted(dicom_out.glob("*_SC.dcm"))
    n_ok = sum(rows[f.resolve()]["status"] == "ok" for f in files)
    assert len(srs) == len(files) + 1 and len(scs) == n_ok >= 1
    for path in srs + scs:
        errors, report = dciodvfy(path)
        assert errors == [], report
    for f in files + [ct]:
        row = rows[f.resolve()]
        sr = pydicom.dcmread(row["dicom_sr"])
        src = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        assert (sr.StudyInstanceUID, sr.PatientID) == (src.StudyInstanceUID, src.PatientID)
        back = read_sr_values(sr)
        assert back.model_sha256 == digest
        if row["status"] == "ok":
            assert back.p_covid == pytest.approx(float(row["p_covid"]), abs=1e-6)
            assert back.threshold == pytest.approx(float(row["threshold"]))
            assert back.category == {"COVID": "COVID-19", "Normal": "Normal"}[row["label"]]
        else:
            assert back.category == "Refused" and back.reason == row["reason"] and back.p_covid is None


def test_cli_precision_fast_falls_back_to_fp32_and_says_why(model_file, cxr1000, tmp_path, capsys, monkeypatch):
    """--precision fast on a CPU without VNNI / AMX (simulated): classified in fp32, and the Engine line says
    why; an unknown precision is a usage error."""
    from training.inference import engine_fast

    monkeypatch.setattr(engine_fast, "cpu_flags", lambda: {"sse4_2", "avx2"})
    png = sorted((cxr1000 / "COVID").glob("*.png"))[0]
    out_csv = tmp_path / "fast.csv"
    assert main([str(png), "--model", str(model_file), "--csv", str(out_csv), "--no-progress",
                 "--precision", "fast"]) == 0
    err = capsys.readouterr().err
    line = next(ln for ln in err.splitlines() if ln.startswith("Engine: "))
    assert "fp32" in line and "none of AMX, AVX-512 VNNI" in line, line
    assert _rows(out_csv)[0]["status"] == "ok"
    with pytest.raises(SystemExit) as exc:
        main([str(png), "--model", str(model_file), "--precision", "int4"])
    assert exc.value.code == 2
