"""Decoders that hang or crash, and files too large to read (issue 13, item 1).

The hanging input is fault-corpus case d78 (a JPEG 2000 frame whose JP2 box
has length 0: pydicom's box walk loops for ever), rebuilt here in a few bytes.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DICOM_DIR, REPO
from tests.synthetic import chest_phantom, make_dicom, write_dicom
from training.common.errors import ImageRefused
from training.imaging import decode_guard
from training.imaging.j2k_header import codestream_problem
from training.imaging.loading import MAX_FILE_BYTES, load_image

D78_FRAME = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 300  # the fault corpus' garbage codestream


def _j2k_dicom(path: Path, frame: bytes, rows: int = 299, cols: int = 299) -> Path:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    ds = make_dicom((chest_phantom(rows, cols) * 4095).astype(np.uint16), bits_stored=12)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return write_dicom(path, ds)


def _siz(width: int, height: int, *, tile: tuple[int, int] | None = None, comps: int = 1) -> bytes:
    tw, th = tile or (width, height)
    body = struct.pack(">HIIIIIIIIH", 0, width, height, 0, 0, tw, th, 0, 0, comps) + b"\x0b\x01\x01" * comps
    return b"\xff\x4f\xff\x51" + struct.pack(">H", 2 + len(body)) + body


@pytest.fixture
def guard_pool():
    """A decode pool that is shut down afterwards (no worker outlives a test)."""
    decode_guard.reset_for_tests()
    yield decode_guard
    decode_guard.reset_for_tests()


# ------------------------------------------------------------------ the JPEG 2000 pre-check


def test_garbage_jpeg2000_is_refused_at_once_without_decoding(tmp_path, guard_pool):
    path = _j2k_dicom(tmp_path / "d78.dcm", D78_FRAME)
    t0 = time.monotonic()
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert time.monotonic() - t0 < 5.0
    assert info.value.code == "corrupt"
    assert "JPEG 2000" in info.value.reason and "length 0" in info.value.reason
    assert "not decoded" in info.value.reason
    assert guard_pool.pool_size() == 0  # refused before any decoder (or worker) was involved


@pytest.mark.parametrize("frame, words", [
    (D78_FRAME, "length 0"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + struct.pack(">I4s", 4, b"ftyp"), "impossible length"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + struct.pack(">I4s", 20, b"ftyp") + b"\x00" * 12, "no image codestream"),
    (b"\x00" * 64, "start-of-codestream"),
    (b"\xff\x4f\xff\x52" + b"\x00" * 60, "SIZ"),
    (_siz(299, 299)[:30], "cut short"),
    (_siz(0, 299), "empty image"),
    (_siz(299, 299, tile=(0, 0)), "tile layout"),
    (_siz(60000, 60000, tile=(1, 1)), "tiles"),
    (_siz(299, 299, comps=9), "components"),
    (_siz(300, 200), "300 x 200 pixels but the DICOM header says 299 x 299"),
])
def test_codestream_problems_are_named(frame, words):
    assert words in codestream_problem(frame, 299, 299)


def test_sound_codestream_headers_pass():
    assert codestream_problem(_siz(299, 299), 299, 299) == ""
    jp2 = (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + struct.pack(">I4s", 20, b"ftyp") + b"jp2 " + b"\x00" * 8
           + struct.pack(">I4s", 0, b"jp2c") + _siz(299, 299))
    assert codestream_problem(jp2, 299, 299) == ""


def test_real_jpeg2000_dicoms_pass_the_check_and_decode(guard_pool):
    files = sorted(DICOM_DIR.glob("*j2k*")) + sorted(DICOM_DIR.glob("*J2K*"))
    if not files:
        pytest.skip("no JPEG 2000 samples in dicom-samples")
    for f in files:
        img = load_image(f)
        assert img.pixels.shape == img.meta.original_size
        assert "JPEG 2000" in img.meta.transfer_syntax


# ------------------------------------------------------------------ the worker process


def test_a_hanging_decode_is_stopped_at_its_time_limit(tmp_path, guard_pool):
    """d78 with the pre-check skipped: pydicom loops for ever in the worker, the
    caller gets DecodeTimeout after the limit, and the next job works."""
    path = _j2k_dicom(tmp_path / "d78.dcm", D78_FRAME)
    t0 = time.monotonic()
    with pytest.raises(decode_guard.DecodeTimeout):
        guard_pool.run(decode_guard.dicom_pixel_array, str(path), timeout=3)
    assert 2.5 < time.monotonic() - t0 < 10.0
    assert guard_pool.pool_size() == 0  # the stuck worker was killed
    assert guard_pool.run(pow, 2, 10, timeout=60) == 1024  # a fresh worker serves the next job


def test_loader_turns_a_decode_timeout_into_a_refusal(tmp_path, guard_pool, monkeypatch):
    import training.imaging.j2k_header

    monkeypatch.setattr(training.imaging.j2k_header, "codestream_problem", lambda *a, **k: "")
    monkeypatch.setattr(decode_guard, "DECODE_TIMEOUT_S", 3.0)
    path = _j2k_dicom(tmp_path / "d78.dcm", D78_FRAME)
    t0 = time.monotonic()
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert time.monotonic() - t0 < 15.0
    assert info.value.code == "timeout"
    assert "did not finish within 3 seconds" in info.value.reason
    assert "JPEG 2000" in info.value.reason


def test_a_crashing_decoder_costs_a_refusal_not_the_program(guard_pool):
    with pytest.raises(decode_guard.DecodeCrashed):
        guard_pool.run(os._exit, 3, timeout=60)
    with pytest.raises(decode_guard.DecodeFailed) as info:
        guard_pool.run(int, "not a number", timeout=60)
    assert info.value.type_name == "ValueError"


def test_abandon_releases_a_thread_waiting_on_a_stuck_decode(guard_pool):
    outcome: list[BaseException] = []

    def wait():
        try:
            guard_pool.run(time.sleep, 120, timeout=120)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    deadline = time.monotonic() + 30
    while guard_pool.pool_size() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    t0 = time.monotonic()
    guard_pool.abandon()
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 3.0
    assert isinstance(outcome[0], decode_guard.DecodeAbandoned)
    assert guard_pool.run(abs, -5, timeout=60) == 5  # abandon() is not the end: shutdown() is


def test_worker_does_not_reimport_the_callers_main_script(tmp_path):
    """A script without an ``if __name__ == '__main__'`` guard must work (with
    multiprocessing's spawn the worker would run the script again)."""
    script = tmp_path / "noguard.py"
    script.write_text("from training.imaging import decode_guard\nprint(decode_guard.run(abs, -7, timeout=60))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7"


# ------------------------------------------------------------------ huge files


@pytest.mark.parametrize("name", ["sparse_4g.dcm", "sparse_4g_nosuffix", "sparse_4g.png"])
def test_a_4gb_file_of_zeros_is_refused_unread_with_its_size(tmp_path, name):
    path = tmp_path / name
    with open(path, "wb") as fh:
        fh.truncate(4 << 30)  # sparse: no disk space used
    t0 = time.monotonic()
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert time.monotonic() - t0 < 1.0
    assert info.value.code == "too_large"
    assert "4.3 GB (4,294,967,296 bytes)" in info.value.reason
    assert "600 MB" in info.value.reason


def test_a_file_of_zeros_under_the_limit_is_refused_quickly(tmp_path):
    path = tmp_path / "zeros.dcm"
    with open(path, "wb") as fh:
        fh.truncate(min(200 << 20, MAX_FILE_BYTES - 1))  # pydicom alone would parse it for a minute
    t0 = time.monotonic()
    with pytest.raises(ImageRefused) as info:
        load_image(path)
    assert time.monotonic() - t0 < 2.0
    assert info.value.code == "not_image"


# ------------------------------------------------------------------ Ctrl-C during a hang


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_is_prompt_while_a_decode_hangs(tmp_path):
    """xray-classify over a file whose decode hangs (d78 with the pre-check
    switched off): Ctrl-C ends the program at once with exit code 130."""
    model = REPO / "resources" / "models" / "covid_resnet50_lstm_interim.safetensors"  # small: 112 px
    if not model.is_file():
        pytest.skip("shipped model not installed")
    hang = _j2k_dicom(tmp_path / "d78.dcm", D78_FRAME)
    code = ("import sys, training.imaging.j2k_header as j\n"
            "j.codestream_problem = lambda *a, **k: ''\n"
            "from training.cli.classify import main\n"
            f"sys.exit(main([{str(hang)!r}, '--no-progress', '--no-lung-attention', '--device', 'cpu']))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    kids: list[str] = []
    try:
        # wait until the decode worker is running (the model, the gate and the orientation check load
        # first: minutes on a loaded 2-core machine)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            kids = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "decode_guard"], capture_output=True,
                                  text=True).stdout.split()
            if kids:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(1.0)  # the worker is inside the endless loop now
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert elapsed < 5.0, f"took {elapsed:.1f} s after Ctrl-C"
    assert "interrupted" in err and "Traceback" not in err
    for pid in kids:  # the stuck worker did not outlive the program
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists()


def test_without_worker_processes_compressed_files_still_load(guard_pool, monkeypatch):
    """Where no worker can start (not POSIX, or the start fails) the loader
    decodes in its own process, still behind the JPEG 2000 header check."""
    sample = DICOM_DIR / "cxr01_rsna_normal-2_jpegbaseline.dcm"
    if not sample.is_file():
        pytest.skip("sample missing")

    def no_worker():
        raise OSError("no python here")

    monkeypatch.setattr(decode_guard, "_Worker", no_worker)
    with pytest.raises(decode_guard.GuardUnavailable):
        guard_pool.run(abs, -1, timeout=10)
    assert load_image(sample).pixels.shape == (1024, 1024)


def test_the_packaged_app_entry_serves_as_a_decode_worker(guard_pool, monkeypatch):
    """A frozen app starts its own executable with WORKER_FLAG: the entry
    script must then serve decode jobs instead of opening a window."""
    entry = REPO / "packaging" / "xray_assistant.py"
    monkeypatch.setattr(decode_guard, "worker_command",
                        lambda: [sys.executable, str(entry), decode_guard.WORKER_FLAG])
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert guard_pool.run(abs, -3, timeout=60) == 3


def test_a_worker_that_cannot_start_means_in_process_decoding_not_a_crash(guard_pool, monkeypatch):
    """E.g. an interpreter that cannot import the package: the loader must not
    report every compressed file as 'the decoder crashed'."""
    monkeypatch.setattr(decode_guard, "worker_command", lambda: [sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(decode_guard.GuardUnavailable):
        guard_pool.run(abs, -1, timeout=10)
    sample = DICOM_DIR / "cxr01_rsna_normal-2_jpegbaseline.dcm"
    if sample.is_file():
        assert load_image(sample).pixels.shape == (1024, 1024)
