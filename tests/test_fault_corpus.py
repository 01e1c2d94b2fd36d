"""The shared fault corpus as one suite (issue 13, item 5).

``../shared/fault-corpus/gen_inputs.py`` writes 138 hostile inputs and a
manifest saying, for each, whether a correct program loads it ("ok"), refuses
it with a clear reason ("refuse") or may do either ("either").  The corpus is
generated once per session into a temporary folder; every file is then loaded
in a ``training.imaging.decode_guard`` worker process with a per-file time limit, so a
case that hangs (as d78 did) fails its test instead of hanging the run.  The
file-system cases of ``gen_fs.sh`` (FIFOs, 4 GB sparse files, devices, link
loops) are checked the same way.  The slowest case is d92 (a 7999 x 7999
16-bit DICOM, 128 MB): a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CXR1000, REPO, SHARED
from training.imaging import decode_guard

CORPUS = SHARED / "fault-corpus"
CASE_LIMIT_S = 30.0  # per file; the slowest real case takes a few seconds
SECRETS = ("ZZTESTPATIENT", "ZZSECRETID4711", "19010203", "ZZSECRET HOSPITAL", "ZZACC998877")

# cases whose wording issue 13 fixed: words the reason must contain
WORDING = {
    "d17_truncated_header.dcm": "cut short",
    "d87_huge_length_field.dcm": "more than the whole file",
    "d88_dicm_only.dcm": "holds nothing after its DICOM signature",
    "d78_j2k_garbage.dcm": "JPEG 2000 box before the image data has length 0",
    "d12_pixeldata_half.dcm": "bytes its header announces",
    "n11_csv_injection_desc.dcm": "\u201c=cmd|' /C calc'!A0 HIP\u201d",
    "p13_bomb_9000.png": "megapixels",
    "d15_pixeldata_empty.dcm": "image data is empty",
    "d34_palette_no_lut.dcm": "colour palette",
    "d41_frames_abc.dcm": "\u201cabc\u201d where a number is needed",
    "d73_unknown_ts.dcm": "transfer syntax this program does not know",
    "p29_ztxt_bomb.png": "decompression bomb",
}


def _run_probe(path: Path) -> dict:
    try:
        return decode_guard.run(_probe(), str(path), timeout=CASE_LIMIT_S)
    except decode_guard.DecodeTimeout:
        return {"status": "hang", "code": "", "reason": f"no answer within {CASE_LIMIT_S:.0f} s", "seconds": CASE_LIMIT_S}
    except (decode_guard.DecodeCrashed, decode_guard.DecodeFailed) as exc:
        return {"status": "crash", "code": "", "reason": str(exc), "seconds": 0.0}


def _probe():
    from tests.fault_corpus_probe import probe

    return probe


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, list[dict], dict[str, dict]]:
    """(case folder, manifest, {file: outcome}) - generated and probed once."""
    if not (CORPUS / "gen_inputs.py").is_file():
        pytest.skip(f"fault corpus not found at {CORPUS}")
    source = next(iter(sorted((CXR1000 / "COVID").glob("*.png"))), None)
    if source is None:
        pytest.skip("no chest PNG to build the corpus from")
    root = tmp_path_factory.mktemp("fault_corpus")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(CORPUS / "gen_inputs.py"), str(root / "bad"), str(source)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=str(REPO))
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((root / "manifest_inputs.json").read_text())
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the worker processes must find tests/fault_corpus_probe.py
    decode_guard.reset_for_tests()
    try:
        outcomes = {case["file"]: _run_probe(root / "bad" / case["file"]) for case in manifest}
    finally:
        decode_guard.reset_for_tests()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    return root, manifest, outcomes


def _readable(reason: str) -> bool:
    return (15 <= len(reason) <= 400 and reason[0].isupper() and reason.rstrip().endswith((".", "\u201d."))
            and "\n" not in reason and "Traceback" not in reason and "Errno" not in reason
            and not re.search(r"<[a-z_.]+ object at 0x", reason)
            and not re.search(r"\b[A-Z][A-Za-z]*(Error|Exception)\b", reason))  # no Python exception names


def test_the_corpus_is_complete(corpus):
    _, manifest, outcomes = corpus
    assert len(manifest) >= 130
    assert set(outcomes) == {c["file"] for c in manifest}


def test_no_case_hangs_or_crashes(corpus):
    _, _, outcomes = corpus
    bad = {f: o for f, o in outcomes.items() if o["status"] in ("hang", "crash", "error")}
    assert not bad, "\n".join(f"{f}: {o['status']} {o['reason']}" for f, o in bad.items())


def test_every_case_gets_the_expected_outcome(corpus):
    _, manifest, outcomes = corpus
    wrong = []
    for case in manifest:
        got = outcomes[case["file"]]["status"]
        if case["expect"] == "ok" and got != "ok" or case["expect"] == "refuse" and got != "refused":
            wrong.append(f"{case['file']} ({case['what']}): expected {case['expect']}, got {got}: "
                         f"{outcomes[case['file']]['reason']}")
        elif case["expect"] == "either" and got not in ("ok", "refused"):
            wrong.append(f"{case['file']}: got {got}")
    assert not wrong, "\n".join(wrong)


def test_every_refusal_reason_is_readable_and_leaks_no_identifier(corpus):
    _, _, outcomes = corpus
    unreadable = [f"{f}: {o['reason']!r}" for f, o in outcomes.items()
                  if o["status"] == "refused" and not _readable(o["reason"])]
    assert not unreadable, "\n".join(unreadable)
    leaks = [f for f, o in outcomes.items()
             if any(s in o["reason"] or any(s in w for w in o.get("warnings", [])) for s in SECRETS)]
    assert not leaks


def test_each_case_answers_within_its_time_limit(corpus):
    _, _, outcomes = corpus
    slow = {f: round(o["seconds"], 1) for f, o in outcomes.items() if o["seconds"] > 15.0}
    assert not slow


@pytest.mark.parametrize("name, words", sorted(WORDING.items()))
def test_wording_of_the_cases_issue_13_fixed(corpus, name, words):
    _, _, outcomes = corpus
    assert words in outcomes[name]["reason"]


def test_metadata_of_loaded_cases_is_one_line(corpus):
    _, _, outcomes = corpus
    multi = [f for f, o in outcomes.items() for v in o.get("extra", {}).values() if "\n" in v or "\r" in v]
    assert not multi


# ------------------------------------------------------------------ file-system cases (gen_fs.sh)


@pytest.fixture(scope="module")
def fs_cases(tmp_path_factory):
    if not (CORPUS / "gen_fs.sh").is_file() or shutil.which("mkfifo") is None:
        pytest.skip("gen_fs.sh or mkfifo not available")
    work = tmp_path_factory.mktemp("fault_fs")
    shutil.copy(next(iter(sorted((CXR1000 / "COVID").glob("*.png")))), work / "covid1.png")
    done = subprocess.run(["bash", str(CORPUS / "gen_fs.sh"), str(work)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    yield work / "fs"
    subprocess.run(["chmod", "-R", "u+rwx", str(work)], check=False)


@pytest.mark.parametrize("name, code", [
    ("pipe.dcm", "unreadable"), ("x.dcm", "unreadable"), ("loopA", "unreadable"), ("dangling.png", "unreadable"),
    ("devzero.png", "unreadable"), ("devurandom.dcm", "unreadable"),
    ("sparse_4g.dcm", "too_large"), ("sparse_4g_nosuffix", "too_large"),
])
def test_file_system_oddities_are_refused_at_once(fs_cases, name, code):
    from training.common.errors import ImageRefused
    from training.imaging.loading import load_image

    t0 = time.monotonic()
    with pytest.raises(ImageRefused) as info:
        load_image(fs_cases / name)
    assert time.monotonic() - t0 < 2.0
    assert info.value.code == code and _readable(info.value.reason)


def test_folder_scans_skip_pipes_and_survive_link_loops(fs_cases):
    from training.imaging.loading import find_images

    t0 = time.monotonic()
    files, skipped = find_images([fs_cases / "folder_fifo_png", fs_cases / "folder_fifo_txt",
                                  fs_cases / "folder_loop", fs_cases / "folder_dirdcm"])
    assert time.monotonic() - t0 < 5.0
    names = sorted(f.name for f in files)
    assert names.count("good.png") == 4
    assert any("named pipe" in why for _, why in skipped)
